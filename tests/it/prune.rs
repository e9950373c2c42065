//! Integration tests for `ferry prune` against real registries, with staging and prod and their histories in place: the dry run sends no DELETE, the prune leaves exactly the expected tags and manifests (children, signatures and fallback entries go with their image), status and rollback still work, skopeo pulls every kept image in full.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support;

use ferry::sample::{signing_key, ImageSpec, Layout, Written};
use serde_json::Value;
use support::bed::{said, Bed};
use support::moto::{ecr_password, MotoServer, ECR_HOST};
use support::registry::{Mode, TestRegistry};
use support::skopeo::{pulls_completely, tag_digest};
use support::standin::StandIn;

/// CI's repository, staging on a plain registry, prod on a Basic one.
struct World {
    src: TestRegistry,
    staging: TestRegistry,
    prod: TestRegistry,
    bed: Bed,
}

impl World {
    fn new(retention: &str) -> World {
        let src = TestRegistry::start(Mode::Plain);
        let staging = TestRegistry::start(Mode::Plain);
        let prod = TestRegistry::start(Mode::Basic);
        let bed = Bed::new(&[&prod]);
        let ci = format!("{}/acme/api", src.host());
        bed.policies(&[
            (
                "staging.yaml",
                format!(
                    "version: 1\nsource: {ci}\ntargets:\n  - registry: {}\n    repository: staging/api\ntags: [staging]\n",
                    staging.host()
                ),
            ),
            (
                "prod.yaml",
                format!(
                    "version: 1\nsource: {ci}\ntargets:\n  - registry: {}\n    repository: acme/api\ntags: [prod, \"{{source_tag}}\"]\nprotect: [\"v*\"]\n",
                    prod.host()
                ),
            ),
            (
                "retention.yaml",
                retention.replace("PROD", &prod.host()).replace("CI", &ci),
            ),
        ]);
        World {
            src,
            staging,
            prod,
            bed,
        }
    }

    /// Pushes `v1.0.N` for each N (multi-arch, with attestations) to CI's repository, with a
    /// cosign signature on those in `signed` and an OCI referrer (fallback index) on those in
    /// `sbom`.
    fn push(&self, versions: &[u64], signed: &[u64], sbom: &[u64]) -> Vec<Written> {
        let dir = self.bed.layout("ci");
        let layout = Layout::create(&dir).unwrap();
        versions
            .iter()
            .map(|n| {
                let tag = format!("v1.0.{n}");
                let w = layout
                    .add_image(&ImageSpec {
                        tag: tag.clone(),
                        seed: 40 + n,
                        ..ImageSpec::default()
                    })
                    .unwrap();
                if signed.contains(n) {
                    layout
                        .add_signature(&w.digest, "ci/acme/api", &signing_key(1))
                        .unwrap();
                }
                if sbom.contains(n) {
                    layout
                        .add_referrer(&w.digest, "application/spdx+json", *n)
                        .unwrap();
                }
                self.bed.ferry_ok(&[
                    "copy",
                    &format!("ocidir://{}:{tag}", dir.display()),
                    &format!("{}/acme/api:{tag}", self.src.host()),
                ]);
                w
            })
            .collect()
    }

    fn ferry(&self, args: &[&str]) -> std::process::Output {
        self.bed.ferry_policies(args)
    }

    fn ferry_ok(&self, args: &[&str]) -> Value {
        self.bed.ferry_policies_ok(args)
    }
}

/// Tags of `repo` at `r`, through the registry's own API.
fn tags(r: &TestRegistry, repo: &str) -> BTreeSet<String> {
    let out = support::ferry()
        .args(["tags", &format!("{}/{repo}", r.host()), "--output", "json"])
        .env("DOCKER_CONFIG", "/nonexistent")
        .args(
            r.creds()
                .map(|(u, p)| vec!["--creds".to_owned(), format!("{}={u}:{p}", r.host())])
                .unwrap_or_default(),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

/// Whether `repo@digest` is still stored at `r` (a plain registry).
fn has_manifest(r: &TestRegistry, repo: &str, digest: &str) -> bool {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-I",
            "-H",
            "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
            &format!("http://{}/v2/{repo}/manifests/{digest}", r.host()),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout) == "200"
}

fn deletes(r: &TestRegistry) -> usize {
    r.access_log()
        .iter()
        .filter(|e| e.method == "DELETE")
        .count()
}

#[test]
fn prune_keeps_what_environments_run_and_could_roll_back_to_and_deletes_the_rest_whole() {
    let w = World::new(
        "version: 1\nkind: retention\nname: ci\nrepositories: [CI, PROD/acme/api]\ntags:\n  consider: [\"v*\"]\n  keep_last: 1\n",
    );
    // v1.0.0 (signed) and v1.0.3 (with an SBOM referrer) will go; v1.0.5 is the newest.
    let images = w.push(&[0, 1, 2, 3, 4, 5], &[0, 5], &[3]);
    // staging: v1.0.1 then v1.0.4; prod: v1.0.1 then v1.0.2 (its rollback target is v1.0.1).
    for (env, v) in [("staging", 1), ("staging", 4), ("prod", 1), ("prod", 2)] {
        w.ferry_ok(&[
            "promote",
            env,
            &format!("{}/acme/api:v1.0.{v}", w.src.host()),
            "--output",
            "json",
        ]);
    }
    let before_src = tags(&w.src, "acme/api");

    // A dry run decides and sends no DELETE anywhere.
    let plan = w.ferry_ok(&["prune", "--dry-run", "--output", "json"]);
    for r in [&w.src, &w.staging, &w.prod] {
        assert_eq!(deletes(r), 0, "a dry run sent a DELETE");
    }
    let src_plan = &plan["repositories"][0];
    assert_eq!(src_plan["repository"], format!("{}/acme/api", w.src.host()));
    let going: BTreeSet<&str> = src_plan["plan"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["delete"] == true)
        .map(|t| t["what"].as_str().unwrap())
        .collect();
    let sig0 = format!("sha256-{}.sig", &images[0].digest[7..]);
    let fallback3 = format!("sha256-{}", &images[3].digest[7..]);
    let want: BTreeSet<&str> = ["v1.0.0", "v1.0.3", sig0.as_str(), fallback3.as_str()].into();
    assert_eq!(going, want, "{src_plan:#}");
    // Each kept image says why.
    let why = |digest: &str| -> String {
        src_plan["plan"]["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["what"] == digest)
            .map(|m| m["detail"].to_string())
            .unwrap_or_default()
    };
    assert!(
        why(&images[4].digest).contains("staging runs it"),
        "{}",
        why(&images[4].digest)
    );
    assert!(why(&images[2].digest).contains("prod runs it"));
    assert!(why(&images[1].digest).contains("rollback window"));
    assert_eq!(before_src, tags(&w.src, "acme/api"));

    // The prune.
    let out = w.ferry(&["prune"]);
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("prune ci: {}/acme/api", w.src.host())),
        "{text}"
    );
    let after: BTreeSet<String> = tags(&w.src, "acme/api");
    let want: BTreeSet<String> = before_src
        .iter()
        .filter(|t| !going.contains(t.as_str()))
        .cloned()
        .collect();
    assert_eq!(after, want);
    // What went, went whole: roots, platform and attestation manifests, signatures, referrers.
    for (n, img) in images.iter().enumerate() {
        let gone = n == 0 || n == 3;
        assert_eq!(
            has_manifest(&w.src, "acme/api", &img.digest),
            !gone,
            "v1.0.{n}"
        );
        for c in &img.children {
            assert_eq!(
                has_manifest(&w.src, "acme/api", c),
                !gone,
                "v1.0.{n} child {c}"
            );
        }
    }
    assert!(!after.iter().any(|t| t.contains(&images[0].digest[7..])));
    assert!(!after.iter().any(|t| t.contains(&images[3].digest[7..])));
    // The signature of the newest stays with it.
    assert!(after.contains(&format!("sha256-{}.sig", &images[5].digest[7..])));
    // Every kept image pulls in full.
    for v in [1, 2, 4, 5] {
        pulls_completely(&w.src, "acme/api", &format!("v1.0.{v}")).unwrap();
    }
    // prod's repository: everything is protected (what prod runs, its window, protected tags).
    let prod_report = &String::from_utf8_lossy(&out.stdout);
    assert!(prod_report.contains(&format!("prune ci: {}/acme/api", w.prod.host())));
    assert!(tags(&w.prod, "acme/api").contains("v1.0.1"));

    // A rerun finds nothing left to delete.
    let again = w.ferry_ok(&["prune", "--output", "json"]);
    for r in again["repositories"].as_array().unwrap() {
        assert_eq!(r["deleted"].as_array().unwrap().len(), 0, "{r:#}");
    }

    // Status and rollback still work, and what they point at pulls.
    w.ferry_ok(&["status", "prod", "--output", "json"]);
    w.ferry_ok(&["rollback", "prod", "--output", "json"]);
    assert_eq!(
        tag_digest(&w.prod, "acme/api", "prod").as_deref(),
        Some(images[1].digest.as_str())
    );
    pulls_completely(&w.prod, "acme/api", "prod").unwrap();
    pulls_completely(&w.staging, "staging/api", "staging").unwrap();
}

/// Pushes `v1.0.N` (multi-arch, with attestations) for each N to `dest` (`HOST/REPO`), a
/// cosign signature on those in `signed`; returns them, plus one image pushed by digest only.
fn seed(bed: &Bed, dest: &str, versions: &[u64], signed: &[u64]) -> (Vec<Written>, Written) {
    let dir = bed.layout("seed");
    let layout = Layout::create(&dir).unwrap();
    let mut out = Vec::new();
    for n in versions {
        let tag = format!("v1.0.{n}");
        let w = layout
            .add_image(&ImageSpec {
                tag: tag.clone(),
                seed: 70 + n,
                ..ImageSpec::default()
            })
            .unwrap();
        if signed.contains(n) {
            layout
                .add_signature(&w.digest, dest, &signing_key(1))
                .unwrap();
        }
        bed.ferry_ok(&[
            "copy",
            &format!("ocidir://{}:{tag}", dir.display()),
            &format!("{dest}:{tag}"),
        ]);
        out.push(w);
    }
    let loose = layout
        .add_image(&ImageSpec {
            tag: "loose".into(),
            seed: 99,
            ..ImageSpec::default()
        })
        .unwrap();
    bed.ferry_ok(&[
        "copy",
        &format!("ocidir://{}:loose", dir.display()),
        &format!("{dest}@{}", loose.digest),
    ]);
    (out, loose)
}

#[test]
fn ghcr_deletes_package_versions_through_the_packages_api_untagged_ones_included() {
    const TOKEN: &str = "ghp_standin_token";
    let reg = TestRegistry::start(Mode::Plain);
    let api = StandIn::ghcr(&reg, TOKEN);
    let bed = Bed::new(&[]);
    bed.policies(&[
        (
            "registries.yaml",
            format!(
                "version: 1\nregistries:\n  ghcr.io:\n    endpoint: http://{}\n    api_endpoint: {}\n",
                reg.host(),
                api.url()
            ),
        ),
        (
            "ci.yaml",
            "version: 1\nkind: retention\nrepositories: [ghcr.io/acme/api]\ntags:\n  keep_last: 1\nuntagged: delete\n".into(),
        ),
    ]);
    let (images, loose) = seed(
        &bed,
        &format!("{}/acme/api", reg.host()),
        &[0, 1, 2],
        &[0, 2],
    );
    let run = |args: &[&str]| {
        let mut c = bed.command(&bed.with_policies(args));
        c.env("GITHUB_TOKEN", TOKEN);
        c.output().unwrap()
    };

    let out = run(&["prune", "--dry-run", "--output", "json"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(!api.calls().iter().any(|c| c.method == "DELETE"));
    assert_eq!(deletes(&reg), 0);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["repositories"][0]["untagged_listed"], true, "{plan:#}");
    assert_eq!(plan["repositories"][0]["deletes_by"], "GitHub Packages API");

    let out = run(&["prune", "--output", "json"]);
    assert!(out.status.success(), "{}", said(&out));
    // Every delete went through the Packages API, a version (a manifest) at a time.
    let api_deletes: Vec<_> = api
        .calls()
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .collect();
    assert!(api_deletes
        .iter()
        .all(|c| c.status == 204 && c.path.contains("/packages/container/api/versions/")));
    // v1.0.0 and v1.0.1 with their platform and attestation manifests, v1.0.0's signature,
    // and the untagged image with its children.
    let gone: Vec<&Written> = vec![&images[0], &images[1], &loose];
    let expected = gone.iter().map(|w| 1 + w.children.len()).sum::<usize>() + 1;
    assert_eq!(api_deletes.len(), expected, "{api_deletes:#?}");
    for w in &gone {
        assert!(!has_manifest(&reg, "acme/api", &w.digest));
    }
    let left = tags(&reg, "acme/api");
    let want: BTreeSet<String> = [
        "v1.0.2".to_owned(),
        format!("sha256-{}.sig", &images[2].digest[7..]),
    ]
    .into();
    assert_eq!(left, want);
    pulls_completely(&reg, "acme/api", "v1.0.2").unwrap();
    // No OCI DELETE: GHCR has none.
    assert_eq!(
        reg.access_log()
            .iter()
            .filter(|e| e.method == "DELETE" && e.user_agent.starts_with("ferry"))
            .count(),
        0
    );
}

#[test]
fn docker_hub_deletes_tags_through_its_api_then_manifests_by_digest() {
    const SECRET: &str = "dckr_pat_standin";
    let reg = TestRegistry::start(Mode::Plain);
    let api = StandIn::hub(&reg, SECRET);
    let bed = Bed::new(&[]);
    bed.policies(&[
        (
            "registries.yaml",
            format!(
                "version: 1\nregistries:\n  docker.io:\n    endpoint: http://{}\n    api_endpoint: {}\n",
                reg.host(),
                api.url()
            ),
        ),
        (
            "ci.yaml",
            "version: 1\nkind: retention\nrepositories: [docker.io/acme/api]\ntags:\n  keep_last: 1\n".into(),
        ),
    ]);
    let (images, _) = seed(&bed, &format!("{}/acme/api", reg.host()), &[0, 1, 2], &[]);
    let out = bed.ferry_policies(&[
        "prune",
        "--creds",
        &format!("docker.io=acme:{SECRET}"),
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(!said(&out).contains(SECRET));
    let calls = api.calls();
    let tag_deletes: BTreeSet<String> = calls
        .iter()
        .filter(|c| c.method == "DELETE" && c.status == 204)
        .map(|c| c.path.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        tag_deletes,
        ["v1.0.0".to_owned(), "v1.0.1".to_owned()].into()
    );
    // Hub's current login route, once for the run.
    let logins: Vec<_> = calls.iter().filter(|c| c.method == "POST").collect();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0].path, "/v2/auth/token");
    // Then each image's manifests, by digest over the registry API, parents first.
    for w in &images[..2] {
        assert!(!has_manifest(&reg, "acme/api", &w.digest));
        for c in &w.children {
            assert!(!has_manifest(&reg, "acme/api", c));
        }
    }
    assert_eq!(tags(&reg, "acme/api"), ["v1.0.2".to_owned()].into());
    pulls_completely(&reg, "acme/api", "v1.0.2").unwrap();
}

#[test]
fn ecr_deletes_through_batch_delete_image_at_moto() {
    let moto = MotoServer::start();
    let ecr = TestRegistry::start_basic_with("AWS", &ecr_password());
    let bed = Bed::new(&[&ecr]);
    bed.policies(&[
        (
            "registries.yaml",
            format!(
                "version: 1\nregistries:\n  {ECR_HOST}:\n    endpoint: http://{}\n",
                ecr.host()
            ),
        ),
        (
            "ci.yaml",
            format!("version: 1\nkind: retention\nrepositories: [{ECR_HOST}/acme/api]\ntags:\n  keep_last: 1\nuntagged: delete\n"),
        ),
    ]);
    moto.create_repository("acme/api", "MUTABLE", &[]);
    // The same images at the registry (what ferry lists) and in ECR's API (what it deletes
    // through): moto keeps image records, not content.
    let dir = bed.layout("seed");
    let layout = Layout::create(&dir).unwrap();
    let put = |w: &Written, tag: Option<&str>| {
        let bytes = std::fs::read(dir.join("blobs/sha256").join(&w.digest[7..])).unwrap();
        let mut body = serde_json::json!({
            "repositoryName": "acme/api",
            "imageManifest": String::from_utf8(bytes).unwrap(),
            "imageManifestMediaType": w.media_type,
            "imageDigest": w.digest,
        });
        if let Some(t) = tag {
            body["imageTag"] = t.into();
        }
        let (status, answer) = moto.call("PutImage", body);
        assert_eq!(status, 200, "PutImage: {answer}");
    };
    for n in 0..3u64 {
        let tag = format!("v1.0.{n}");
        let w = layout
            .add_image(&support::bed::single_platform(
                &tag,
                80 + n,
                &[(1, 4096)],
                &[(80 + n, 4096)],
            ))
            .unwrap();
        bed.ferry_ok(&[
            "copy",
            &format!("ocidir://{}:{tag}", dir.display()),
            &format!("{}/acme/api:{tag}", ecr.host()),
        ]);
        put(&w, Some(&tag));
    }
    let untagged = layout
        .add_image(&support::bed::single_platform(
            "x",
            90,
            &[(1, 4096)],
            &[(90, 4096)],
        ))
        .unwrap();
    put(&untagged, None);

    let out = bed
        .command(&bed.with_policies(&["prune", "--output", "json"]))
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "AKIAFERRYTEST0000001")
        .env("AWS_SECRET_ACCESS_KEY", "aws-test-secret-0b4e5c8d")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["repositories"][0]["deletes_by"],
        "ECR BatchDeleteImage"
    );
    assert_eq!(report["repositories"][0]["untagged_listed"], true);
    // GetAuthorizationToken (to list through the registry API), one DescribeImages for the
    // untagged images, one BatchDeleteImage for all three: tags go with their image at ECR.
    assert_eq!(report["repositories"][0]["api_requests"], 3, "{report:#}");
    assert_eq!(
        report["repositories"][0]["deleted"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (status, listed) = moto.call(
        "ListImages",
        serde_json::json!({"repositoryName": "acme/api"}),
    );
    assert_eq!(status, 200);
    let left: Vec<(String, String)> = listed["imageIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["imageDigest"].as_str().unwrap_or_default().to_owned(),
                i["imageTag"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(left.len(), 1, "{listed:#}");
    assert_eq!(left[0].1, "v1.0.2");
}

/// Writes `n` distinct single-layer images straight into a registry's storage, as pushes would
/// have left them: image `i` tagged `sha-{i:05}`, created `i` minutes after a fixed time.
fn seed_storage(reg: &TestRegistry, repo: &str, n: usize) -> Vec<String> {
    use sha2::Digest as _;
    let root = reg.storage_dir().join("docker/registry/v2");
    let put_blob = |bytes: &[u8]| -> String {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        let dir = root.join("blobs/sha256").join(&hex[..2]).join(&hex);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data"), bytes).unwrap();
        hex
    };
    let repo_dir = root.join("repositories").join(repo);
    let link = |path: std::path::PathBuf, hex: &str| {
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("link"), format!("sha256:{hex}")).unwrap();
    };
    let layer = put_blob(b"one shared layer");
    link(repo_dir.join("_layers/sha256").join(&layer), &layer);
    let mut digests = Vec::with_capacity(n);
    for i in 0..n {
        let created = humantime::format_rfc3339(
            std::time::UNIX_EPOCH + Duration::from_secs(1_790_000_000 + 60 * i as u64),
        );
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"{created}","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let config_hex = put_blob(config.as_bytes());
        link(
            repo_dir.join("_layers/sha256").join(&config_hex),
            &config_hex,
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer}","size":16}}]}}"#,
            config.len()
        );
        let hex = put_blob(manifest.as_bytes());
        link(
            repo_dir.join("_manifests/revisions/sha256").join(&hex),
            &hex,
        );
        let tag = repo_dir.join(format!("_manifests/tags/sha-{i:05}"));
        link(tag.join("current"), &hex);
        link(tag.join("index/sha256").join(&hex), &hex);
        digests.push(format!("sha256:{hex}"));
    }
    digests
}

/// Issue 18: pruning 10,000 tags down to 50 in one repository — wall time and requests,
/// against the tags listed plus the deletes. Ignored in CI (about a minute of registry CPU on
/// two cores); run it with `cargo test --test it -- --ignored prune::ten_thousand --nocapture`.
#[test]
#[ignore = "about a minute on two cores: a measurement, run by hand"]
fn ten_thousand_tags_pruned_to_fifty() {
    const N: usize = 10_000;
    let reg = TestRegistry::start_cached();
    let started = std::time::Instant::now();
    let digests = seed_storage(&reg, "ci/api", N);
    eprintln!("seeded {N} images in {:?}", started.elapsed());
    let bed = Bed::new(&[]);
    bed.policies(&[(
        "ci.yaml",
        format!(
            "version: 1\nkind: retention\nrepositories: [{}/ci/api]\ntags:\n  consider: [\"sha-*\"]\n  keep_last: 50\n",
            reg.host()
        ),
    )]);
    let before = reg.access_log().len();
    let started = std::time::Instant::now();
    let report = w_ok(&bed, &["prune", "--parallel", "16", "--output", "json"]);
    let took = started.elapsed();
    let log = reg.access_log();
    let new = &log[before..];
    let by = |m: &str| new.iter().filter(|e| e.method == m).count();
    let deleted = by("DELETE");
    eprintln!(
        "pruned {N} tags to 50 in {took:?}: {} requests ({} GET, {} HEAD, {deleted} DELETE); tags listed + deletes = {}; ratio {:.2}",
        new.len(),
        by("GET"),
        by("HEAD"),
        N + deleted,
        new.len() as f64 / (N + deleted) as f64
    );
    let r = &report["repositories"][0];
    assert_eq!(r["tags_listed"], N);
    assert_eq!(r["failed"].as_array().unwrap().len(), 0, "{r}");
    let left = tags(&reg, "ci/api");
    let want: BTreeSet<String> = (N - 50..N).map(|i| format!("sha-{i:05}")).collect();
    assert_eq!(left, want);
    assert!(!has_manifest(&reg, "ci/api", &digests[0]));
    assert!(has_manifest(&reg, "ci/api", &digests[N - 1]));
    // Within a small constant of the tags listed plus the deletes.
    assert!(new.len() <= 3 * (N + deleted), "{} requests", new.len());
}

fn w_ok(bed: &Bed, args: &[&str]) -> Value {
    bed.ferry_policies_ok(args)
}

#[test]
fn shards_split_repositories_whole_and_the_step_summary_lists_them() {
    let reg = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[]);
    let repos: Vec<String> = (0..8)
        .map(|i| format!("{}/team/app{i}", reg.host()))
        .collect();
    bed.policies(&[(
        "ci.yaml",
        format!(
            "version: 1\nkind: retention\nrepositories: [{}]\ntags:\n  keep_last: 1\n",
            repos.join(", ")
        ),
    )]);
    let summary = bed.layout("summary.md");
    let mut seen: Vec<String> = Vec::new();
    for k in 1..=3 {
        let out = bed
            .command(&bed.with_policies(&[
                "prune",
                "--dry-run",
                "--shard",
                &format!("{k}/3"),
                "--output",
                "json",
            ]))
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", said(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        seen.extend(
            v["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["repository"].as_str().unwrap().to_owned()),
        );
    }
    // Every repository exactly once, over the three shards.
    seen.sort();
    let mut want = repos.clone();
    want.sort();
    assert_eq!(seen, want);
    let md = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(
        md.matches("### ferry prune (dry run) (shard").count(),
        3,
        "{md}"
    );
    for r in &repos {
        assert!(md.contains(&format!("| `{r}` |")), "{md}");
    }
    assert_eq!(deletes(&reg), 0);
}

#[test]
fn a_registry_that_cannot_delete_is_reported_and_skipped() {
    let mut reg = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[]);
    bed.policies(&[(
        "ci.yaml",
        format!(
            "version: 1\nkind: retention\nrepositories: [{}/ci/api]\ntags:\n  keep_last: 1\n",
            reg.host()
        ),
    )]);
    let (images, _) = seed(&bed, &format!("{}/ci/api", reg.host()), &[0, 1, 2], &[]);
    reg.turn_deletes_off();
    let out = bed.ferry_policies(&["prune"]);
    // Nothing failed: the registry cannot delete, and says so once.
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("cannot delete manifests: DELETE answered 405")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("skipped manifests:"), "{text}");
    // One tag DELETE (405: not a tag alone either), one manifest DELETE, then no more.
    assert_eq!(deletes(&reg), 2);
    for w in &images {
        assert!(has_manifest(&reg, "ci/api", &w.digest));
    }
}
