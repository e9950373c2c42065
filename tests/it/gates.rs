//! gates: Sigstore evidence at a real registry, made by a test Sigstore instance (`ferry::sigstore::instance`: a Fulcio-like CA with SCTs, a Rekor log with real inclusion proofs and checkpoints, a TSA): what GitHub's attest-build-provenance, cosign 3 and cosign 2 keyless push is verified and promoted; every forgery is refused with exit 3 before a single write.

use crate::support;

use ferry::gate::COSIGN_SIGN_PREDICATE;
use ferry::sample::{provenance_statement, ImageSpec, Layout, Written, SLSA_PROVENANCE_V1};
use ferry::sigstore::instance::{BundleVersion, Credential, Identity, Instance, Options};
use serde_json::Value;
use support::bed::{stderr, Bed};
use support::registry::{Mode, TestRegistry};

const WORKFLOW: &str = ".github/workflows/release.yml";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const IN_TOTO: &str = "application/vnd.in-toto+json";

fn release(repo: &str, workflow: &str) -> Identity {
    Identity::github_workflow(repo, workflow, "refs/tags/v1.0.0", SHA)
}

/// A DSSE bundle of `statement`, signed by `by`.
fn bundle(inst: &mut Instance, by: &Credential, statement: &[u8], opts: &Options) -> String {
    inst.sign_dsse(by, IN_TOTO, statement, opts)
}

/// A cosign 3 signature statement for `digest`.
fn cosign_statement(digest: &str) -> Vec<u8> {
    let hex = digest.trim_start_matches("sha256:");
    serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "ghcr.io/acme/api", "digest": {"sha256": hex}}],
        "predicateType": COSIGN_SIGN_PREDICATE, "predicate": {}}))
    .unwrap()
}

/// One image per case in one layout, each carrying its own evidence.
struct Images {
    layout: Layout,
    next: u64,
}

impl Images {
    fn add(&mut self, tag: &str) -> Written {
        self.next += 1;
        self.layout
            .add_image(&ImageSpec {
                tag: tag.into(),
                seed: 700 + self.next,
                ..ImageSpec::default()
            })
            .unwrap()
    }
}

#[test]
fn sigstore_evidence_is_verified_before_anything_is_written() {
    let src = TestRegistry::start(Mode::Plain);
    let target = TestRegistry::start(Mode::Plain);
    let other = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[]);
    let mut inst = Instance::new();
    let mut stranger = Instance::new();
    let mut imgs = Images {
        layout: Layout::create(&bed.layout("ci")).unwrap(),
        next: 0,
    };
    let acme = inst.keyless(&release("acme/api", WORKFLOW));
    let fork = inst.keyless(&release("mallory/api", WORKFLOW));
    let other_workflow = inst.keyless(&release("acme/api", ".github/workflows/nightly.yml"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expired =
        inst.keyless(&release("acme/api", WORKFLOW).valid_between(now - 7200, now - 3600));
    let outsider = stranger.keyless(&release("acme/api", WORKFLOW));
    let managed = inst.managed_key();
    let v3 = Options::default();

    // Provenance as attest-build-provenance pushes it: a bundle in the sha256-HEX fallback index.
    let mut provenance =
        |name: &str, by: &Credential, inst: &mut Instance, tamper: bool, about: Option<&str>| {
            let w = imgs.add(name);
            let statement = provenance_statement(about.unwrap_or(&w.digest), "acme/api", WORKFLOW);
            let mut b = bundle(inst, by, &statement, &v3);
            if tamper {
                // The statement's bytes change after signing: the builder is someone else's.
                let mut doc: Value = serde_json::from_str(&b).unwrap();
                let payload = provenance_statement(&w.digest, "mallory/api", WORKFLOW);
                use base64::Engine as _;
                doc["dsseEnvelope"]["payload"] = base64::engine::general_purpose::STANDARD
                    .encode(payload)
                    .into();
                b = doc.to_string();
            }
            imgs.layout
                .add_bundle(&w.digest, &b, SLSA_PROVENANCE_V1)
                .unwrap();
            w
        };
    let good = provenance("good", &acme, &mut inst, false, None);
    let wrong_repo = provenance("wrong-repo", &fork, &mut inst, false, None);
    let wrong_workflow = provenance("wrong-workflow", &other_workflow, &mut inst, false, None);
    let wrong_subject = provenance("wrong-subject", &acme, &mut inst, false, Some(&good.digest));
    let tampered = provenance("tampered", &acme, &mut inst, true, None);
    let expired_cert = provenance("expired", &expired, &mut inst, false, None);
    let untrusted = provenance("untrusted", &outsider, &mut stranger, false, None);
    // Other bundle shapes that must verify: v0.1 and v0.2 bundles, and Rekor v2 with a TSA timestamp.
    let shapes: Vec<(Written, Options)> = [
        ("v01", Options::v1(BundleVersion::V01)),
        ("v02", Options::v1(BundleVersion::V02)),
        ("rekor2", Options::rekor_v2()),
    ]
    .into_iter()
    .map(|(tag, opts)| {
        let w = imgs.add(tag);
        let b = bundle(
            &mut inst,
            &acme,
            &provenance_statement(&w.digest, "acme/api", WORKFLOW),
            &opts,
        );
        imgs.layout
            .add_bundle(&w.digest, &b, SLSA_PROVENANCE_V1)
            .unwrap();
        (w, opts)
    })
    .collect();
    // Bad input: each a one-line refusal, never a crash.
    let good_bundle = bundle(
        &mut inst,
        &acme,
        &provenance_statement(&good.digest, "acme/api", WORKFLOW),
        &v3,
    );
    let mut bad = |tag: &str, text: String| {
        let w = imgs.add(tag);
        imgs.layout
            .add_bundle(&w.digest, &text, SLSA_PROVENANCE_V1)
            .unwrap();
        w
    };
    let malformed = bad("malformed", good_bundle[..good_bundle.len() / 2].to_owned());
    let unknown_version = bad(
        "unknown-version",
        good_bundle.replace("bundle.v0.3+json", "bundle+json;version=9.9"),
    );
    let bad_base64 = bad("bad-base64", {
        let mut doc: Value = serde_json::from_str(&good_bundle).unwrap();
        doc["dsseEnvelope"]["payload"] = "%%% not base64 %%%".into();
        doc.to_string()
    });
    let oversized = bad(
        "oversized",
        format!("{}{}", good_bundle, " ".repeat(4 << 20)),
    );
    // An unsigned SLSA v1 statement, attached as a referrer.
    let unsigned = imgs.add("unsigned");
    imgs.layout
        .add_statement(
            &unsigned.digest,
            &provenance_statement(&unsigned.digest, "acme/api", WORKFLOW),
        )
        .unwrap();
    // cosign 3 signatures (bundles of a cosign/sign/v1 statement), keyless and by key.
    let sig3 = imgs.add("sig3");
    let b = bundle(&mut inst, &acme, &cosign_statement(&sig3.digest), &v3);
    imgs.layout
        .add_bundle(&sig3.digest, &b, COSIGN_SIGN_PREDICATE)
        .unwrap();
    let sig3_key = imgs.add("sig3-key");
    let b = bundle(
        &mut inst,
        &managed,
        &cosign_statement(&sig3_key.digest),
        &v3,
    );
    imgs.layout
        .add_bundle(&sig3_key.digest, &b, COSIGN_SIGN_PREDICATE)
        .unwrap();
    // A cosign 2 keyless .sig: certificate, chain and Rekor bundle in the layer's annotations.
    let sig2 = imgs.add("sig2");
    imgs.layout
        .add_keyless_signature(&sig2.digest, "ghcr.io/acme/api", |payload| {
            inst.cosign2_sig_annotations(&acme, payload).annotations()
        })
        .unwrap();
    let ci = bed.layout("ci");
    for tag in [
        "good",
        "wrong-repo",
        "wrong-workflow",
        "wrong-subject",
        "tampered",
        "expired",
        "untrusted",
        "unsigned",
        "sig3",
        "sig3-key",
        "sig2",
        "v01",
        "v02",
        "rekor2",
        "malformed",
        "unknown-version",
        "bad-base64",
        "oversized",
    ] {
        let out = bed.ferry(&[
            "copy",
            &format!("ocidir://{}:{tag}", ci.display()),
            &format!("{}/acme/api:{tag}", src.host()),
        ]);
        assert!(out.status.success(), "{tag}: {}", stderr(&out));
    }

    let env = |name: &str, require: &str| {
        (
            format!("{name}.yaml"),
            format!(
                "version: 1\nsource: {}/acme/api\ntargets:\n  - registry: {}\n    repository: acme/{name}\ntags: [{name}]\nrequire:\n  trusted_root: trusted_root.json\n{require}",
                src.host(),
                target.host()
            ),
        )
    };
    let files = [
        env("prov", &format!("  attestation:\n    predicate_type: {SLSA_PROVENANCE_V1}\n    repository: acme/api\n    workflow: {WORKFLOW}\n    ref: refs/tags/v*\n")),
        env("unsigned", &format!("  attestation:\n    predicate_type: {SLSA_PROVENANCE_V1}\n    signed: false\n")),
        env("sig", "  signature:\n    repository: acme/api\n"),
        env("sigkey", "  signature:\n    public_key: managed.pub\n"),
        env(
            "sigexact",
            &format!(
                "  signature:\n    issuer: https://token.actions.githubusercontent.com\n    subject: https://github.com/acme/api/{WORKFLOW}@refs/tags/v1.0.0\n"
            ),
        ),
        ("trusted_root.json".to_owned(), inst.trusted_root_json()),
        ("managed.pub".to_owned(), managed.public_key_pem()),
    ];
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let dir = bed.policies(&files);
    let run = |args: &[&str]| {
        bed.command(args)
            .env("FERRY_POLICIES", &dir)
            .output()
            .unwrap()
    };
    let writes = || target.access_log().iter().filter(|e| e.is_write()).count();
    let out = run(&["policy", "check", "--offline"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Refused: exit 3, one line naming why, and not one write at the target.
    let refusals: [(&Written, &str, &str); 11] = [
        (
            &wrong_repo,
            "prov",
            "signed by \"https://github.com/mallory/api/",
        ),
        (&wrong_workflow, "prov", "nightly.yml"),
        (&wrong_subject, "prov", "name other subjects"),
        (&tampered, "prov", "invalid signature"),
        (&expired_cert, "prov", "certificate"),
        (&untrusted, "prov", "sigstore bundle:"),
        (&unsigned, "prov", "in-toto statement: unsigned"),
        (&malformed, "prov", "unreadable evidence: application/vnd.dev.sigstore.bundle.v0.3+json: not a Sigstore bundle"),
        (&unknown_version, "prov", "unreadable evidence: application/vnd.dev.sigstore.bundle+json;version=9.9: not a Sigstore bundle"),
        (&bad_base64, "prov", "unreadable evidence"),
        (&oversized, "prov", "over the 4194304 byte cap"),
    ];
    for (w, env, why) in refusals {
        let before = writes();
        let out = run(&["promote", env, &format!(":{}", w.tag)]);
        let err = stderr(&out);
        eprintln!("{}: {err}", w.tag);
        assert_eq!(out.status.code(), Some(3), "{}: {err}", w.tag);
        assert!(err.contains(why), "{}: wanted {why:?} in {err}", w.tag);
        assert_eq!(err.trim().lines().count(), 1, "{}: one line: {err}", w.tag);
        assert_eq!(writes(), before, "{}: nothing written", w.tag);
    }
    // With --output json, a refusal is one JSON document on stdout too.
    let out = run(&["promote", "prov", ":wrong-repo", "--output", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["refused"], true, "{doc}");
    assert_eq!(doc["exit_code"], 3, "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("mallory/api"),
        "{doc}"
    );
    for (w, opts) in &shapes {
        let out = run(&["verify", &format!(":{}", w.tag), "--env", "prov"]);
        assert!(
            out.status.success(),
            "{} ({opts:?}): {}",
            w.tag,
            stderr(&out)
        );
    }
    // An unsigned statement counts where the policy says signed: false.
    let out = run(&["verify", ":unsigned", "--env", "unsigned"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Accepted: the attest-build-provenance bundle, promoted; the source reads no more than a
    // plain copy of the same image (one discovery serves the gates and the copy). By digest, as
    // a promotion by tag adds one HEAD after the copy to check the tag did not move meanwhile.
    let at = src.access_log().len();
    let out = bed.ferry(&[
        "copy",
        &format!("{}/acme/api:good", src.host()),
        &format!("{}/acme/api:good", other.host()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let copy_reads = src.access_log().len() - at;
    let at = src.access_log().len();
    let out = bed
        .command(&["-v", "promote", "prov", &format!("@{}", good.digest)])
        .env("FERRY_POLICIES", &dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let promote_reads = src.access_log().len() - at;
    let ms: f64 = err
        .split("verified in ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no verification time in {err}"));
    eprintln!("source requests: copy {copy_reads}, promote with require {promote_reads}; verification {ms} ms");
    if promote_reads > copy_reads {
        let log = src.access_log();
        let n = log.len();
        let lines = |from: usize, to: usize| {
            let mut v: Vec<String> = log[from..to]
                .iter()
                .map(|e| format!("{} {} {}", e.method, e.path, e.status))
                .collect();
            v.sort();
            v
        };
        let (p, c) = (
            lines(n - promote_reads, n),
            lines(n - promote_reads - copy_reads, n - promote_reads),
        );
        panic!(
            "promote {promote_reads} > copy {copy_reads}\npromote only: {:?}\ncopy only: {:?}",
            p.iter().filter(|l| !c.contains(l)).collect::<Vec<_>>(),
            c.iter().filter(|l| !p.contains(l)).collect::<Vec<_>>()
        );
    }
    // The bundle travelled: the destination's fallback index lists it with its type.
    let fallback = format!("sha256-{}", good.digest.trim_start_matches("sha256:"));
    let index = support::skopeo::inspect_raw(
        &format!("{}/acme/prov:{fallback}", target.host()),
        None,
        support::skopeo::TlsOpt::Insecure,
    );
    let index: Value = serde_json::from_slice(&index).unwrap();
    assert!(
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["artifactType"]
                .as_str()
                .is_some_and(|t| t.starts_with("application/vnd.dev.sigstore.bundle"))),
        "{index}"
    );

    // verify --output json: every piece of evidence judged, with who signed and the log index.
    let out = run(&["verify", ":good", "--env", "prov", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let item = &report["evidence"][0];
    assert_eq!(item["kind"], "sigstore bundle", "{report}");
    assert_eq!(item["verdict"], "accepted", "{report}");
    assert_eq!(item["predicate_type"], SLSA_PROVENANCE_V1);
    assert!(
        item["signer"]
            .as_str()
            .unwrap()
            .starts_with("https://github.com/acme/api/"),
        "{report}"
    );
    assert!(item["log_index"].is_number(), "{report}");
    let out = run(&["verify", ":wrong-repo", "--env", "prov"]);
    assert_eq!(out.status.code(), Some(3));

    // Signatures: cosign 3 bundles (keyless, by key) and a cosign 2 keyless .sig.
    for (env, tag) in [
        ("sig", "sig3"),
        ("sigkey", "sig3-key"),
        ("sigexact", "sig2"),
        ("sig", "sig2"),
    ] {
        let out = run(&["promote", env, &format!(":{tag}")]);
        assert!(out.status.success(), "{env} {tag}: {}", stderr(&out));
    }
    // ...and each refused where another signer is required.
    for (env, tag) in [
        ("sigkey", "sig3"),
        ("sig", "sig3-key"),
        ("sigkey", "sig2"),
        ("sig", "good"),
    ] {
        let out = run(&["verify", &format!(":{tag}"), "--env", env]);
        assert_eq!(out.status.code(), Some(3), "{env} {tag}: {}", stderr(&out));
    }
}
