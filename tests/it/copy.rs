//! Integration tests for `ferry copy` against real registries (Debian's docker-registry) started on loopback, checked with skopeo.

use crate::support;

use std::path::Path;
use std::process::Output;

use ferry::sample::{ImageSpec, LayerSpec, Layout, Written};
use serde_json::Value;
use support::bed::{said, stderr, Bed};
use support::registry::{Mode, TestRegistry};
use support::skopeo::manifest_digest;

/// Every manifest digest of a written sample image: the root and its children.
fn all_manifests(w: &Written) -> Vec<String> {
    std::iter::once(w.digest.clone())
        .chain(w.children.iter().cloned())
        .collect()
}

/// Asserts, with skopeo, that every manifest of `w` at `host/repo` hashes to its digest.
fn assert_byte_exact(r: &TestRegistry, repo: &str, tag: Option<&str>, w: &Written) {
    for d in all_manifests(w) {
        assert_eq!(
            manifest_digest(&format!("{}/{repo}@{d}", r.host()), r.creds(), r.tls()),
            d,
            "manifest {d} at {}/{repo}",
            r.host()
        );
    }
    if let Some(tag) = tag {
        assert_eq!(
            manifest_digest(&format!("{}/{repo}:{tag}", r.host()), r.creds(), r.tls()),
            w.digest,
            "tag {tag} at {}/{repo}",
            r.host()
        );
    }
}

fn small_images(layout: &Layout) -> Vec<Written> {
    let base = vec![LayerSpec {
        seed: 1,
        size: 300 << 10,
    }];
    vec![
        layout
            .add_image(&ImageSpec {
                tag: "oci-multi".into(),
                seed: 10,
                base_layers: base.clone(),
                ..ImageSpec::default()
            })
            .unwrap(),
        layout
            .add_image(&ImageSpec {
                tag: "docker-list".into(),
                seed: 20,
                docker_media_types: true,
                attestation: false,
                base_layers: base.clone(),
                ..ImageSpec::default()
            })
            .unwrap(),
        layout
            .add_image(&ImageSpec {
                tag: "single".into(),
                seed: 30,
                platforms: vec![],
                attestation: false,
                base_layers: base,
                ..ImageSpec::default()
            })
            .unwrap(),
        layout
            .add_artifact("artifact", "application/vnd.acme.rocket.v1+json", 40)
            .unwrap(),
    ]
}

fn dest_reports(report: &Value) -> &Vec<Value> {
    report["destinations"]
        .as_array()
        .expect("destinations array")
}

#[test]
fn fans_out_byte_exact_to_three_registries_reading_each_blob_once() {
    let src = TestRegistry::start(Mode::Plain);
    let dests = [
        TestRegistry::start(Mode::Plain),
        TestRegistry::start(Mode::Basic),
        TestRegistry::start(Mode::Token),
    ];
    let bed = Bed::new(&[&src, &dests[0], &dests[1], &dests[2]]);
    let layout = Layout::create(&bed.layout("images")).unwrap();
    let images = small_images(&layout);

    for w in &images {
        let tag = &w.tag;
        let from = format!("ocidir://{}:{tag}", bed.layout("images").display());
        let source = format!("{}/acme/api:{tag}", src.host());
        bed.ferry_ok(&["copy", &from, &source, "--output", "json"]);
        assert_byte_exact(&src, "acme/api", Some(tag), w);

        let before: u64 = src
            .access_log()
            .iter()
            .filter(|e| e.method == "GET" && e.path.contains("/blobs/"))
            .map(|e| e.bytes)
            .sum();
        let targets: Vec<String> = dests
            .iter()
            .map(|d| format!("{}/mirror/api:{tag}", d.host()))
            .collect();
        let mut args = vec!["copy", &source];
        args.extend(targets.iter().map(String::as_str));
        args.extend(["--output", "json"]);
        let report = bed.ferry_ok(&args);
        for d in dest_reports(&report) {
            assert_eq!(d["status"], "copied", "{d}");
            assert_eq!(d["digest"], w.digest.as_str());
        }
        for d in &dests {
            assert_byte_exact(d, "mirror/api", Some(tag), w);
        }
        // Read once: blob bytes served by the source for this copy vs the image's unique blob bytes.
        let after: u64 = src
            .access_log()
            .iter()
            .filter(|e| e.method == "GET" && e.path.contains("/blobs/"))
            .map(|e| e.bytes)
            .sum();
        let read = after - before;
        eprintln!(
            "{tag}: source served {read} blob bytes for {} unique ({:.3}x)",
            w.blob_bytes,
            read as f64 / w.blob_bytes.max(1) as f64
        );
        assert!(
            read as f64 <= 1.05 * w.blob_bytes as f64,
            "{tag}: read {read} bytes for {} unique",
            w.blob_bytes
        );

        // Re-running uploads nothing and costs at most 2 requests per destination.
        let again = bed.ferry_ok(&args);
        for d in dest_reports(&again) {
            assert_eq!(d["status"], "up-to-date", "{d}");
            assert_eq!(d["blobs_uploaded"], 0);
            assert!(d["requests"].as_u64().unwrap() <= 2, "{d}");
        }
    }
    // skopeo can pull what ferry wrote.
    for d in &dests {
        let out = tempfile::tempdir().unwrap();
        support::skopeo::copy(
            &format!("docker://{}/mirror/api:oci-multi", d.host()),
            d.creds(),
            d.tls(),
            &format!("oci:{}:x", out.path().display()),
            None,
            support::skopeo::TlsOpt::None,
        )
        .unwrap();
    }
}

#[test]
fn platform_subset_is_a_new_index() {
    let src = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[&src]);
    let (w, from) = bed.image("multi", 3);
    let dest = format!("{}/only/arm:v1", src.host());
    let report = bed.ferry_ok(&[
        "copy",
        &from,
        &dest,
        "--platform",
        "linux/arm64",
        "--output",
        "json",
    ]);
    assert_eq!(report["filtered_from"], w.digest.as_str());
    let new_digest = report["digest"].as_str().unwrap().to_owned();
    assert_ne!(new_digest, w.digest);
    let raw = support::skopeo::inspect_raw(&dest, None, src.tls());
    assert_eq!(
        format!("sha256:{}", support::skopeo::sha256_hex(&raw)),
        new_digest
    );
    let index: Value = serde_json::from_slice(&raw).unwrap();
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        platforms,
        ["linux/arm64", "unknown/unknown"],
        "arm64 and its attestation"
    );
}

#[test]
fn mounts_within_a_registry_instead_of_uploading() {
    let reg = TestRegistry::start(Mode::Token);
    let bed = Bed::new(&[&reg]);
    let (w, from) = bed.image("m", 5);
    let source = format!("{}/team-a/app:m", reg.host());
    bed.ferry_ok(&["copy", &from, &source]);
    let report = bed.ferry_ok(&[
        "copy",
        &source,
        &format!("{}/team-b/app:m", reg.host()),
        "--output",
        "json",
    ]);
    let d = &dest_reports(&report)[0];
    assert_eq!(d["blobs_uploaded"], 0, "{d}");
    assert!(d["blobs_mounted"].as_u64().unwrap() > 0, "{d}");
    assert_byte_exact(&reg, "team-b/app", Some("m"), &w);
}

#[test]
fn tls_registry_needs_its_ca() {
    let reg = TestRegistry::start(Mode::Tls);
    let bed = Bed::new(&[&reg]);
    let (w, from) = bed.image("t", 6);
    let dest = format!("{}/secure/app:t", reg.host());
    let ca = format!("{}={}", reg.host(), reg.ca_cert_path().display());
    // Without the CA: a clear failure at once (not retried), nothing written, and never a
    // fallback to plain HTTP.
    let started = std::time::Instant::now();
    let out = bed.ferry(&["copy", &from, &dest, "--https", &reg.host()]);
    let said = said(&out);
    eprintln!("unknown CA ({:?}): {said}", started.elapsed());
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("not signed by a trusted CA") && said.contains("--ca-file"),
        "{said}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "retried?"
    );
    assert!(reg.access_log().is_empty(), "nothing reached the registry");
    assert!(
        !reg.log_text().contains("HTTP request to an HTTPS server"),
        "no plain-HTTP attempt"
    );
    bed.ferry_ok(&[
        "copy",
        &from,
        &dest,
        "--https",
        &reg.host(),
        "--ca-file",
        &ca,
    ]);
    assert_byte_exact(&reg, "secure/app", Some("t"), &w);
}

#[test]
fn dry_run_writes_nothing() {
    let src = TestRegistry::start(Mode::Plain);
    let dst = TestRegistry::start(Mode::Basic);
    let bed = Bed::new(&[&src, &dst]);
    let (_, from) = bed.image("d", 7);
    let source = format!("{}/a/b:d", src.host());
    bed.ferry_ok(&["copy", &from, &source]);
    let out = bed.ferry(&[
        "copy",
        &source,
        &format!("{}/x/y:d", dst.host()),
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("planned"), "{text}");
    let writes: Vec<_> = dst
        .access_log()
        .into_iter()
        .filter(|e| !matches!(e.method.as_str(), "GET" | "HEAD"))
        .collect();
    assert!(writes.is_empty(), "dry run wrote: {writes:?}");
}

#[test]
fn ocidir_to_ocidir_and_schema1_refused() {
    let bed = Bed::new(&[]);
    let (w, from) = bed.image("x", 8);
    Layout::create(&bed.layout("images"))
        .unwrap()
        .add_schema1("old")
        .unwrap();
    let to = format!("ocidir://{}:y", bed.layout("copy").display());
    bed.ferry_ok(&["copy", &from, &to]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(bed.layout("copy").join("index.json")).unwrap())
            .unwrap();
    assert_eq!(index["manifests"][0]["digest"], w.digest.as_str());
    let out = bed.ferry(&[
        "copy",
        &format!("ocidir://{}:old", bed.layout("images").display()),
        &to,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("schema 1"), "{}", stderr(&out));
}

/// Bad input: one line on stderr, the right exit code, no tag written anywhere.
#[test]
fn bad_input_fails_cleanly() {
    let src = TestRegistry::start(Mode::Plain);
    let dst = TestRegistry::start(Mode::Basic);
    let bed = Bed::with_logins(&[(dst.host(), "ferry".into(), "not-the-password".into())]);
    let (w, from) = bed.image("ok", 9);
    let source = format!("{}/good/img:ok", src.host());
    bed.ferry_ok(&["copy", &from, &source]);
    let dest = format!("{}/never/tagged:t", dst.host());

    let one_line = |o: &Output| {
        let e = stderr(o);
        assert_eq!(
            e.trim_end().lines().count(),
            1,
            "expected one line, got: {e}"
        );
        e
    };
    // Malformed reference: usage error, exit 2, nothing sent.
    let o = bed.ferry(&[
        "copy",
        &format!("{}/good/img@sha256:../../x", src.host()),
        &dest,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line(&o).contains("invalid reference"));
    // Unknown host.
    let o = bed.ferry(&["copy", "nonexistent.invalid/a/b:c", &dest]);
    assert_eq!(o.status.code(), Some(1));
    assert!(one_line(&o).contains("nonexistent.invalid"));
    // Wrong password at the destination.
    let o = bed.ferry(&["copy", &source, &dest]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("unauthorized") && text.contains(&dst.host()),
        "{text}"
    );
    // Missing manifest.
    let o = bed.ferry(&["copy", &format!("{}/good/img:nope", src.host()), &dest]);
    assert_eq!(o.status.code(), Some(1));
    assert!(one_line(&o).contains("not found"));
    // A source serving bytes that do not match their digest.
    let plain = TestRegistry::start(Mode::Plain);
    let target = format!("{}/never/tagged:t", plain.host());
    let child = &w.children[0];
    let m: Value = serde_json::from_slice(
        &std::fs::read(bed.layout("images").join("blobs/sha256").join(&child[7..])).unwrap(),
    )
    .unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    let data = src.storage_dir().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}/data",
        &layer[7..9],
        &layer[7..]
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let o = bed.ferry(&["copy", &source, &target, "--output", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let err = dest_reports(&report)[0]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(err.contains("digest mismatch"), "{err}");
    for (reg, repo) in [(&dst, "never/tagged"), (&plain, "never/tagged")] {
        let tags: Vec<_> = reg
            .access_log()
            .into_iter()
            .filter(|e| e.method == "PUT" && e.path.contains(&format!("/v2/{repo}/manifests/")))
            .collect();
        assert!(tags.is_empty(), "no manifest may be written: {tags:?}");
    }
}

#[test]
fn demo_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::ferry()
        .args(["demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(Path::new(&dir.path().join("registry-c/index.json")).exists());
    // As JSON: one document, every step in it, the two refusals with their reasons.
    let out = support::ferry()
        .args(["demo", "--output", "json", "--dir"])
        .arg(dir.path().join("json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 11, "{doc}");
    let refused: Vec<&Value> = steps.iter().filter(|s| s["exit"] == 3).collect();
    assert_eq!(refused.len(), 2, "{doc}");
    assert!(refused
        .iter()
        .all(|s| s["refused"].as_str().is_some_and(|r| !r.is_empty())));
    assert_eq!(steps[0]["report"]["kind"], "promote", "{doc}");
}

/// Token auth honours scopes: anonymous users may pull `public/*` and nothing else, and may not push.
#[test]
fn token_scopes_anonymous_pull_only_public() {
    let reg = TestRegistry::start(Mode::Token);
    let owner = Bed::new(&[&reg]);
    let (w, from) = owner.image("p", 11);
    owner.ferry_ok(&["copy", &from, &format!("{}/public/tool:p", reg.host())]);
    owner.ferry_ok(&["copy", &from, &format!("{}/private/tool:p", reg.host())]);

    let anonymous = Bed::with_logins(&[]);
    let out = anonymous.layout("pulled");
    anonymous.ferry_ok(&[
        "copy",
        &format!("{}/public/tool:p", reg.host()),
        &format!("ocidir://{}:p", out.display()),
    ]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], w.digest.as_str());

    let o = anonymous.ferry(&[
        "copy",
        &format!("{}/private/tool:p", reg.host()),
        &format!("ocidir://{}:q", out.display()),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unauthorized") || stderr(&o).contains("denied"),
        "{}",
        stderr(&o)
    );

    let o = anonymous.ferry(&[
        "copy",
        &format!("{}/public/tool:p", reg.host()),
        &format!("{}/public/copy:p", reg.host()),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "anonymous push must fail: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let scopes = reg.token.as_ref().unwrap().scopes_seen();
    assert!(
        scopes
            .iter()
            .any(|s| s == "repository:public/copy:pull,push"),
        "{scopes:?}"
    );
}

/// Wrong credentials and missing ones get different messages: a refusal names where the refused
/// credentials came from (the config file, the helper, the variable), a miss lists where ferry
/// looked. Both as Basic auth and behind a token server.
#[test]
fn refused_and_missing_credentials_are_told_apart() {
    for mode in [Mode::Basic, Mode::Token] {
        let reg = TestRegistry::start(mode);
        let (user, _) = reg.creds().unwrap();
        let to = format!("{}/acme/api:v1", reg.host());
        // None: an empty docker config.
        let bed = Bed::with_logins(&[]);
        let (_, from) = bed.image("v1", 1);
        let out = bed.ferry(&["copy", &from, &to]);
        let text = said(&out);
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {text}");
        let config = bed.dir.path().join("docker/config.json");
        assert!(
            text.contains(&format!("no credentials found in {}", config.display())),
            "{mode:?}, none: {text}"
        );
        assert!(!text.contains("refused"), "{mode:?}, none: {text}");
        // Wrong: the config file's password is refused, and the file is named.
        let bed = Bed::with_logins(&[(reg.host(), user.to_owned(), "wrong".into())]);
        let (_, from) = bed.image("v1", 1);
        let out = bed.ferry(&["copy", &from, &to]);
        let text = said(&out);
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {text}");
        assert!(
            text.contains(&format!(
                "the credentials from docker config {} were refused",
                bed.dir.path().join("docker/config.json").display()
            )),
            "{mode:?}, wrong: {text}"
        );
        assert!(!text.contains("no credentials found"), "{mode:?}: {text}");
        assert!(!text.contains("wrong"), "the password is printed: {text}");
        eprintln!("{mode:?}: {text}");
    }
}

/// An `ocidir://` source that is not there says what is (no directory, no layout, the tags it
/// has); a destination without a tag is reported as untagged, and an OCI layout still lists it.
#[test]
fn layouts_say_what_is_there_and_untagged_destinations_say_so() {
    let bed = Bed::new(&[]);
    let (w, from) = bed.image("v1", 1);
    let cases = [
        (
            format!("ocidir://{}:v1", bed.layout("nowhere").display()),
            "(no such directory)".to_owned(),
        ),
        (
            format!("ocidir://{}:v1", bed.dir.path().join("docker").display()),
            "(not an OCI image layout: it has no index.json)".to_owned(),
        ),
        (
            format!("ocidir://{}:v2", bed.layout("images").display()),
            "(its tags: v1)".to_owned(),
        ),
    ];
    for (source, says) in cases {
        let to = format!("ocidir://{}:v1", bed.layout("out").display());
        let out = bed.ferry(&["copy", &source, &to]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{source}: {text}");
        assert!(text.contains(&says), "{source}: {text}");
        assert_eq!(text.lines().count(), 1, "one line: {text}");
    }
    let untagged = format!("ocidir://{}", bed.layout("untagged").display());
    let out = bed.ferry(&["copy", &from, &untagged]);
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!(
            "{untagged} (untagged: by digest only; add :TAG to tag it)"
        )),
        "{text}"
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(bed.layout("untagged").join("index.json")).unwrap())
            .unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        w.digest.as_str(),
        "{index}"
    );
    assert!(index["manifests"][0]["annotations"].is_null(), "{index}");
    let out = bed.ferry(&["copy", &from, &untagged, "--output", "json"]);
    assert_eq!(
        support::bed::json(&out)["destinations"][0]["untagged"],
        true
    );
}
