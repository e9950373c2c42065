//! Integration tests for attached artifacts against real registries: a BuildKit attestation, a cosign signature and attestation under their tags, and OCI 1.1 referrers through the fallback tag travel with `ferry copy` and `ferry promote`, byte-exact (checked with skopeo); an existing fallback index is merged; a registry with the referrers API gets no fallback tag; prod gates refuse images without provenance or with a signature by another key.

use crate::support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use ferry::sample::{public_key_pem, signing_key, ImageSpec, Layout, Written};
use serde_json::{json, Value};
use support::bed::{stderr, Bed};
use support::faultproxy::FaultProxy;
use support::registry::{Mode, TestRegistry};
use support::skopeo::{inspect_raw, manifest_digest, sha256_hex, TlsOpt};

const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
const SBOM: &str = "application/spdx+json";
const BUILDER: &str = "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main";

/// What was attached to a sample image.
struct Decorated {
    image: Written,
    from: String,
    signature: Written,
    attestation: Written,
    /// Referrers on the index, and one per platform child (amd64, arm64).
    on_index: Written,
    on_children: Vec<Written>,
}

/// A multi-arch sample (with BuildKit attestations) in `layout`, signed with `key_seed`, with a
/// cosign SLSA v1 attestation and SBOM referrers on the index and on each platform child.
fn decorated(bed: &Bed, layout: &str, tag: &str, seed: u64, key_seed: u8) -> Decorated {
    let l = Layout::create(&bed.layout(layout)).unwrap();
    let image = l
        .add_image(&ImageSpec {
            tag: tag.into(),
            seed,
            ..ImageSpec::default()
        })
        .unwrap();
    let key = signing_key(key_seed);
    let signature = l
        .add_signature(&image.digest, "ghcr.io/acme/api", &key)
        .unwrap();
    let attestation = l
        .add_cosign_attestation(
            &image.digest,
            SLSA_V1,
            json!({"runDetails": {"builder": {"id": BUILDER}}}),
            &key,
        )
        .unwrap();
    let own = seed * 1000 + key_seed as u64;
    let on_index = l.add_referrer(&image.digest, SBOM, own).unwrap();
    // Platform children are image.children[0] (amd64) and [2] (arm64); [1] and [3] are BuildKit's.
    let on_children = [0, 2]
        .iter()
        .map(|&i| {
            l.add_referrer(&image.children[i], SBOM, own + 100 + i as u64)
                .unwrap()
        })
        .collect();
    Decorated {
        image,
        from: format!("ocidir://{}:{tag}", bed.layout(layout).display()),
        signature,
        attestation,
        on_index,
        on_children,
    }
}

fn raw(r: &TestRegistry, reference: &str) -> Vec<u8> {
    inspect_raw(&format!("{}/{reference}", r.host()), None, TlsOpt::Insecure)
}

/// A plain HTTP request: status and body.
fn http(method: reqwest::Method, url: String) -> (u16, Vec<u8>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let r = reqwest::Client::new()
                .request(method, url)
                .header(
                    "accept",
                    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
                )
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        })
}

/// Whether `repo` has a manifest under this tag or digest.
fn has(r: &TestRegistry, repo: &str, reference: &str) -> bool {
    let url = format!("http://{}/v2/{repo}/manifests/{reference}", r.host());
    http(reqwest::Method::HEAD, url).0 == 200
}

/// The manifest at `repo@digest`, read by skopeo, hashes to `digest`.
fn byte_exact(r: &TestRegistry, repo: &str, digest: &str) {
    let reference = format!("{}/{repo}@{digest}", r.host());
    assert_eq!(
        manifest_digest(&reference, None, TlsOpt::Insecure),
        digest,
        "{repo}@{digest}"
    );
}

fn fallback_tag(digest: &str) -> String {
    digest.replace(':', "-")
}

/// Digests listed in the fallback index of `subject`.
fn fallback_entries(r: &TestRegistry, repo: &str, subject: &str) -> BTreeSet<String> {
    let doc: Value =
        serde_json::from_slice(&raw(r, &format!("{repo}:{}", fallback_tag(subject)))).unwrap();
    doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn attached_artifacts_travel_byte_exact_and_fallback_indexes_merge() {
    let a = TestRegistry::start(Mode::Plain);
    let b_registry = TestRegistry::start(Mode::Plain);
    let b = FaultProxy::start(&b_registry.host());
    b.serve_referrers();
    let bed = Bed::new(&[]);
    let img = decorated(&bed, "images", "v1", 1, 7);

    // Someone else already attached an artifact at A: its fallback index must survive.
    let other = decorated(&bed, "other", "v1", 1, 9);
    assert_eq!(
        other.image.digest, img.image.digest,
        "same image, other attachments"
    );
    let to_a = format!("{}/acme/api:v1", a.host());
    let out = bed.ferry(&["copy", &other.from, &to_a, "--artifact-type", SBOM]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fallback_entries(&a, "acme/api", &img.image.digest),
        BTreeSet::from([other.on_index.digest.clone()])
    );

    // 1. OCI layout (fallback tags) → A (no referrers API): everything, byte-exact.
    let report = bed.ferry_ok(&["copy", &img.from, &to_a, "--output", "json"]);
    let attached = &report["destinations"][0]["attached"];
    eprintln!("attached at A: {attached}");
    assert_eq!(attached["copied"], 5, "sig, att, 3 referrers");
    assert_eq!(attached["tags"], 2);
    assert_eq!(attached["fallback_indexes"], 3);
    for w in [&img.image, &img.signature, &img.attestation, &img.on_index]
        .into_iter()
        .chain(&img.on_children)
    {
        byte_exact(&a, "acme/api", &w.digest);
    }
    for c in &img.image.children {
        byte_exact(&a, "acme/api", c); // BuildKit's attestation manifests are in the index
    }
    assert_eq!(
        sha256_hex(&raw(&a, &format!("acme/api:{}", img.signature.tag))),
        img.signature.digest["sha256:".len()..]
    );
    assert_eq!(
        sha256_hex(&raw(&a, &format!("acme/api:{}", img.attestation.tag))),
        img.attestation.digest["sha256:".len()..]
    );
    assert_eq!(
        fallback_entries(&a, "acme/api", &img.image.digest),
        BTreeSet::from([other.on_index.digest.clone(), img.on_index.digest.clone()]),
        "merged, not overwritten"
    );
    for (i, c) in [0, 2].iter().zip(&img.on_children) {
        assert!(fallback_entries(&a, "acme/api", &img.image.children[*i]).contains(&c.digest));
    }
    // Again: nothing new to write.
    let again = bed.ferry_ok(&["copy", &img.from, &to_a, "--output", "json"]);
    let attached = &again["destinations"][0]["attached"];
    assert_eq!(attached["copied"], 0, "{attached}");
    assert_eq!(attached["tags"], 0);
    assert_eq!(attached["fallback_indexes"], 0);

    // 2. A (found through the fallback tag over HTTP) → B (referrers API, OCI-Subject): the
    //    artifacts arrive, no fallback tag is written, and B's API lists them.
    let to_b = format!("{}/mirror/api:v1", b.host());
    let report = bed.ferry_ok(&["copy", &to_a, &to_b, "--output", "json"]);
    eprintln!("attached at B: {}", report["destinations"][0]["attached"]);
    assert_eq!(report["destinations"][0]["attached"]["fallback_indexes"], 0);
    for w in [
        &img.signature,
        &img.attestation,
        &img.on_index,
        &other.on_index,
    ]
    .into_iter()
    .chain(&img.on_children)
    {
        byte_exact(&b_registry, "mirror/api", &w.digest);
    }
    assert!(
        !has(&b_registry, "mirror/api", &fallback_tag(&img.image.digest)),
        "no fallback tag where the registry has the API"
    );
    let (status, body) = http(
        reqwest::Method::GET,
        format!(
            "http://{}/v2/mirror/api/referrers/{}",
            b.host(),
            img.image.digest
        ),
    );
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_slice(&body).unwrap();
    let listed: BTreeSet<&str> = listed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([img.on_index.digest.as_str(), other.on_index.digest.as_str()])
    );
    assert!(b.log().iter().all(|e| !(e.method == "PUT"
        && e.path
            .ends_with(&format!("/manifests/{}", fallback_tag(&img.image.digest))))));

    // Again A → B: nothing is written, and what the look costs is printed.
    let (at_a, at_b) = (a.access_log().len(), b.log().len());
    let again = bed.ferry_ok(&["copy", &to_a, &to_b, "--output", "json"]);
    assert_eq!(again["destinations"][0]["status"], "up-to-date", "{again}");
    let b_new = &b.log()[at_b..];
    let writes = b_new
        .iter()
        .filter(|e| matches!(e.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE"))
        .count();
    assert_eq!(writes, 0, "{b_new:?}");
    eprintln!(
        "re-run with 8 attached artifacts: {} requests at the source, {} at the destination",
        a.access_log().len() - at_a,
        b_new.len()
    );

    // 3. A platform subset keeps the referrers of the children it keeps, and only those; the
    //    new index is nobody's subject.
    let c = TestRegistry::start(Mode::Plain);
    let to_c = format!("{}/acme/api:amd64", c.host());
    let out = bed.ferry(&["copy", &img.from, &to_c, "--platform", "linux/amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(has(&c, "acme/api", &img.on_children[0].digest));
    assert!(!has(&c, "acme/api", &img.on_children[1].digest));
    assert!(!has(&c, "acme/api", &img.on_index.digest));

    // 4. Referrers off: only the image.
    let d = TestRegistry::start(Mode::Plain);
    let out = bed.ferry(&[
        "copy",
        &img.from,
        &format!("{}/acme/api:v1", d.host()),
        "--no-referrers",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(has(&d, "acme/api", &img.image.digest));
    assert!(!has(&d, "acme/api", &img.signature.digest));
}

/// The bed's policies: prod from `src` to `targets`, gated on provenance and a signature by `key`.
fn write_prod(bed: &Bed, src: &TestRegistry, targets: &[String], key: &str) -> PathBuf {
    let targets: String = targets
        .iter()
        .map(|t| {
            let (reg, repo) = t.split_once('/').unwrap();
            format!("  - registry: {reg}\n    repository: {repo}\n")
        })
        .collect();
    bed.policies(&[
        ("cosign.pub", key.to_owned()),
        (
            "prod.yaml",
            format!(
                "version: 1\nsource: {}/acme/api\ntargets:\n{targets}tags: [prod]\nrequire:\n  attestation:\n    predicate_type: {SLSA_V1}\n    public_key: cosign.pub\n    fields:\n      predicate.runDetails.builder.id: {BUILDER}\n  signature:\n    public_key: cosign.pub\n",
                src.host()
            ),
        ),
    ])
}

#[test]
fn prod_requires_provenance_and_a_signature_by_its_key() {
    let src = TestRegistry::start(Mode::Plain);
    let t1 = TestRegistry::start(Mode::Plain);
    let t2_registry = TestRegistry::start(Mode::Plain);
    let t2 = FaultProxy::start(&t2_registry.host());
    t2.serve_referrers();
    let bed = Bed::new(&[]);
    // good: signed by key 7 with provenance; forged: the same kind of evidence by key 9;
    // bare: BuildKit's v0.2 provenance only, no signature.
    let good = decorated(&bed, "good", "good", 1, 7);
    let forged = decorated(&bed, "forged", "forged", 2, 9);
    let bare = bed.image("bare", 3);
    for (from, tag) in [
        (&good.from, "good"),
        (&forged.from, "forged"),
        (&bare.1, "bare"),
    ] {
        let out = bed.ferry(&["copy", from, &format!("{}/acme/api:{tag}", src.host())]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let dir = write_prod(
        &bed,
        &src,
        &[
            format!("{}/acme/api", t1.host()),
            format!("{}/acme/api", t2.host()),
        ],
        &public_key_pem(&signing_key(7)),
    );
    let run = |args: &[&str]| {
        bed.command(args)
            .env("FERRY_POLICIES", &dir)
            .output()
            .unwrap()
    };
    let writes = || {
        t1.access_log()
            .iter()
            .chain(t2_registry.access_log().iter())
            .filter(|e| e.is_write())
            .count()
    };
    assert!(run(&["policy", "check", "--offline"]).status.success());

    // No provenance: refused, exit 3, named, nothing written.
    let out = run(&["promote", "prod", ":bare"]);
    let err = stderr(&out);
    eprintln!("bare: {err}");
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("no https://slsa.dev/provenance/v1 attestation")
            && err.contains("found only https://slsa.dev/provenance/v0.2")
            && err.contains("no cosign signature"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(writes(), 0);

    // Signed with another key: refused.
    let out = run(&["promote", "prod", ":forged"]);
    let err = stderr(&out);
    eprintln!("forged: {err}");
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("made with another key"), "{err}");
    assert_eq!(writes(), 0);
    let out = run(&["verify", ":forged", "--env", "prod"]);
    assert_eq!(out.status.code(), Some(3));

    // With both: verify passes, promote goes through with everything attached.
    let out = run(&["verify", ":good", "--env", "prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok  attestation https://slsa.dev/provenance/v1"),
        "{text}"
    );
    let out = run(&["promote", "prod", ":good", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (reg, via) in [(&t1, None), (&t2_registry, Some(&t2))] {
        let prod = format!("{}/acme/api:prod", reg.host());
        assert_eq!(
            manifest_digest(&prod, None, TlsOpt::Insecure),
            good.image.digest
        );
        for w in [&good.signature, &good.attestation, &good.on_index] {
            byte_exact(reg, "acme/api", &w.digest);
        }
        assert_eq!(
            sha256_hex(&raw(reg, &format!("acme/api:{}", good.signature.tag))),
            good.signature.digest["sha256:".len()..]
        );
        // The fallback index only where there is no referrers API.
        assert_eq!(
            has(reg, "acme/api", &fallback_tag(&good.image.digest)),
            via.is_none()
        );
    }
}

#[test]
fn mirror_brings_signatures_added_after_the_image() {
    let src = TestRegistry::start(Mode::Plain);
    let dest = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[]);
    let (w, from) = bed.image("v1.0.0", 4);
    let to_src = format!("{}/acme/svc:v1.0.0", src.host());
    let out = bed.ferry(&["copy", &from, &to_src]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = bed.policies(&[(
        "nightly.yaml",
        format!(
            "version: 1\nkind: mirror\nname: nightly\nsource: {}/acme\nrepositories: [svc]\ntargets:\n  - registry: {}\n    prefix: mirror/\n",
            src.host(),
            dest.host()
        ),
    )]);
    let mirror = || -> Value {
        let out = bed
            .command(&["mirror", "--output", "json"])
            .env("FERRY_POLICIES", &dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(mirror()["totals"]["copied"], 1);

    // CI signs the image after it was pushed (and mirrored): the next night brings the
    // signature, and the night after costs nothing again.
    let l = Layout::create(&bed.layout("images")).unwrap();
    let sig = l
        .add_signature(&w.digest, "ghcr.io/acme/svc", &signing_key(7))
        .unwrap();
    let out = bed.ferry(&["copy", &from, &to_src]);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = mirror();
    let t = &second["images"][0]["targets"][0];
    eprintln!("second night: {t}");
    assert_eq!(t["outcome"], "up-to-date", "{t}");
    assert_eq!(t["attached"]["tags"], 1, "{t}");
    assert_eq!(
        sha256_hex(&raw(&dest, &format!("mirror/svc:{}", sig.tag))),
        sig.digest["sha256:".len()..]
    );
    let third = mirror();
    let t = &third["images"][0]["targets"][0];
    assert_eq!(t["attached"]["tags"], 0, "{t}");
    assert_eq!(t["attached"]["copied"], 0, "{t}");
}

/// `cosign sign --recursive` and `skopeo copy --all --sign-by-…` sign every entry of an index,
/// BuildKit's attestation manifests included: every signature and referrer arrives, byte-exact,
/// at every destination (one with the referrers API, one through fallback tags).
#[test]
fn every_entry_of_an_index_keeps_its_signature_and_referrers() {
    let a = TestRegistry::start(Mode::Plain);
    let b = TestRegistry::start(Mode::Plain);
    let c_registry = TestRegistry::start(Mode::Plain);
    let c = FaultProxy::start(&c_registry.host());
    c.serve_referrers();
    let bed = Bed::new(&[]);
    let l = Layout::create(&bed.layout("recursive")).unwrap();
    let image = l
        .add_image(&ImageSpec {
            tag: "v1".into(),
            seed: 91,
            ..ImageSpec::default()
        })
        .unwrap();
    let key = signing_key(5);
    let mut entries = vec![image.digest.clone()];
    entries.extend(image.children.iter().cloned());
    assert_eq!(
        entries.len(),
        5,
        "the index, two platforms and two attestation manifests"
    );
    let mut attached = Vec::new();
    for (i, d) in entries.iter().enumerate() {
        attached.push(l.add_signature(d, "ghcr.io/acme/api", &key).unwrap());
        attached.push(l.add_referrer(d, SBOM, 9100 + i as u64).unwrap());
    }
    let from = format!("ocidir://{}:v1", bed.layout("recursive").display());
    let out = bed.ferry(&["copy", &from, &format!("{}/acme/api:v1", a.host())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bed.ferry(&[
        "copy",
        &format!("{}/acme/api:v1", a.host()),
        &format!("{}/acme/api:v1", b.host()),
        &format!("{}/acme/api:v1", c.host()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for reg in [&a, &b, &c_registry] {
        for w in &attached {
            assert!(
                has(reg, "acme/api", &w.digest),
                "{} at {}",
                w.digest,
                reg.host()
            );
            byte_exact(reg, "acme/api", &w.digest);
        }
        for d in &entries {
            let sig = format!("{}.sig", fallback_tag(d));
            assert!(has(reg, "acme/api", &sig), "{sig} at {}", reg.host());
        }
    }
}
