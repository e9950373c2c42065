//! verbs: `ferry inspect`, `digest`, `tags`, `login`/`logout` and the one-off `--creds` flags
//! against real registries (plain, Basic, token) and OCI layouts, checked with skopeo: the raw
//! bytes and digests agree byte for byte, tag lists follow `Link` pages, logins are checked with
//! the registry before anything is stored, and no password is ever printed.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use base64::Engine as _;
use ferry::sample::{ImageSpec, LayerSpec, Layout, Written};
use serde_json::Value;

use crate::support::bed::{json, said, Bed};
use crate::support::faultproxy::FaultProxy;
use crate::support::registry::{Mode, TestRegistry};
use crate::support::skopeo::{self, sha256_hex};

/// A multi-arch OCI index (with BuildKit attestations), a Docker manifest list, and a single
/// OCI image, all written with odd whitespace, in the bed's "images" layout.
fn images(bed: &Bed) -> Vec<Written> {
    let layout = Layout::create(&bed.layout("images")).unwrap();
    let base = vec![LayerSpec {
        seed: 7,
        size: 40 << 10,
    }];
    let spec = |tag: &str, seed| ImageSpec {
        tag: tag.into(),
        seed,
        base_layers: base.clone(),
        ..ImageSpec::default()
    };
    vec![
        layout.add_image(&spec("multi", 1)).unwrap(),
        layout
            .add_image(&ImageSpec {
                docker_media_types: true,
                attestation: false,
                ..spec("docker", 2)
            })
            .unwrap(),
        layout
            .add_image(&ImageSpec {
                platforms: vec![],
                attestation: false,
                ..spec("single", 3)
            })
            .unwrap(),
    ]
}

fn ocidir(bed: &Bed, tag: &str) -> String {
    format!("ocidir://{}:{tag}", bed.layout("images").display())
}

/// ferry's stdout, asserting success.
fn stdout_ok(bed: &Bed, args: &[&str]) -> Vec<u8> {
    let out = bed.ferry(args);
    assert!(out.status.success(), "ferry {args:?}: {}", said(&out));
    out.stdout
}

fn platform_of(e: &Value) -> String {
    let p = &e["platform"];
    match p["variant"].as_str() {
        Some(v) => format!(
            "{}/{}/{v}",
            p["os"].as_str().unwrap(),
            p["architecture"].as_str().unwrap()
        ),
        None => format!(
            "{}/{}",
            p["os"].as_str().unwrap(),
            p["architecture"].as_str().unwrap()
        ),
    }
}

#[test]
fn inspect_raw_and_digest_agree_with_skopeo_byte_for_byte() {
    let reg = TestRegistry::start(Mode::Token);
    let bed = Bed::new(&[&reg]);
    let written = images(&bed);
    for w in &written {
        let at = format!("{}/acme/api:{}", reg.host(), w.tag);
        bed.ferry_ok(&["copy", &ocidir(&bed, &w.tag), &at, "--output", "json"]);

        let theirs = skopeo::inspect_raw(&at, reg.creds(), reg.tls());
        let ours = stdout_ok(&bed, &["inspect", "--raw", &at]);
        assert_eq!(
            ours, theirs,
            "{}: inspect --raw differs from skopeo's",
            w.tag
        );
        let digest = format!("sha256:{}", sha256_hex(&theirs));
        assert_eq!(digest, w.digest);

        // digest: one HEAD that succeeds (after the 401 that learns the challenge), no GET.
        let before = reg.access_log().len();
        let printed = stdout_ok(&bed, &["digest", &at]);
        assert_eq!(String::from_utf8(printed).unwrap(), format!("{digest}\n"));
        let log = reg.access_log()[before..].to_vec();
        let manifest_requests: Vec<_> = log
            .iter()
            .filter(|e| e.path.contains("/manifests/"))
            .collect();
        assert_eq!(
            manifest_requests.iter().filter(|e| e.status == 200).count(),
            1,
            "{manifest_requests:?}"
        );
        assert!(
            manifest_requests.iter().all(|e| e.method == "HEAD"),
            "digest of a tag must not GET: {manifest_requests:?}"
        );
        eprintln!(
            "{}: ferry digest sent {} registry requests ({} to manifests)",
            w.tag,
            log.len(),
            manifest_requests.len()
        );

        // JSON: the same digest, size and media type; an index's platforms are its entries'.
        let report = bed.ferry_ok(&["inspect", &at, "--output", "json"]);
        assert_eq!(report["digest"], digest.as_str());
        assert_eq!(report["size"], theirs.len() as u64);
        assert_eq!(report["media_type"], w.media_type.as_str());
        let doc: Value = serde_json::from_slice(&theirs).unwrap();
        match doc["manifests"].as_array() {
            Some(entries) => {
                let want: Vec<(String, String)> = entries
                    .iter()
                    .filter(|e| e["platform"]["os"] != "unknown")
                    .map(|e| (platform_of(e), e["digest"].as_str().unwrap().to_owned()))
                    .collect();
                let got: Vec<(String, String)> = report["platforms"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["platform"].as_str().unwrap().to_owned(),
                            p["digest"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                assert_eq!(got, want, "{}", w.tag);
                let attestations = entries.len() - want.len();
                let buildkit = report["attachments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["kind"] == "buildkit-attestation")
                    .count();
                assert_eq!(buildkit, attestations, "{report}");

                // Every child by digest (Docker v2 manifests under the Docker list), and
                // --platform, print what skopeo reads.
                for e in entries {
                    let child =
                        format!("{}/acme/api@{}", reg.host(), e["digest"].as_str().unwrap());
                    let theirs = skopeo::inspect_raw(&child, reg.creds(), reg.tls());
                    assert_eq!(stdout_ok(&bed, &["inspect", "--raw", &child]), theirs);
                    assert_eq!(
                        String::from_utf8(stdout_ok(&bed, &["digest", &child])).unwrap(),
                        format!("sha256:{}\n", sha256_hex(&theirs))
                    );
                }
                let first = &want[0];
                let chosen = stdout_ok(&bed, &["inspect", "--raw", "--platform", &first.0, &at]);
                assert_eq!(format!("sha256:{}", sha256_hex(&chosen)), first.1);
                let picked =
                    bed.ferry_ok(&["inspect", "--platform", &first.0, &at, "--output", "json"]);
                assert_eq!(picked["digest"], first.1.as_str());
                assert_eq!(picked["index"], digest.as_str());
                assert!(picked["config"]["digest"].is_string(), "{picked}");
            }
            None => {
                assert!(report.get("platforms").is_none(), "{report}");
                let layers: u64 = doc["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["size"].as_u64().unwrap())
                    .sum();
                assert_eq!(report["layers_size"], layers);
                assert_eq!(report["config"]["digest"], doc["config"]["digest"]);
                let out = bed.ferry(&["inspect", "--platform", "linux/amd64", &at]);
                assert_eq!(out.status.code(), Some(2), "{}", said(&out));
                assert!(said(&out).contains("is a single image"), "{}", said(&out));
            }
        }
        // Text output names the digest.
        let text = String::from_utf8(stdout_ok(&bed, &["inspect", &at])).unwrap();
        assert!(text.contains(&digest), "{text}");
    }
    // A tag that is not there: exit 1, one line naming the image.
    let missing = format!("{}/acme/api:nope", reg.host());
    for verb in ["digest", "inspect"] {
        let out = bed.ferry(&[verb, &missing]);
        assert_eq!(out.status.code(), Some(1), "{}", said(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&missing) && err.contains("not found"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

#[test]
fn inspect_lists_cosign_signatures_and_referrers() {
    let reg = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[&reg]);
    let layout = Layout::create(&bed.layout("images")).unwrap();
    let w = layout
        .add_image(&ImageSpec {
            tag: "signed".into(),
            platforms: vec![],
            attestation: false,
            ..ImageSpec::default()
        })
        .unwrap();
    let key = ferry::sample::signing_key(9);
    let sig = layout.add_signature(&w.digest, "acme/api", &key).unwrap();
    let sbom = layout
        .add_referrer(&w.digest, "application/spdx+json", 5)
        .unwrap();
    let at = format!("{}/acme/api:signed", reg.host());
    bed.ferry_ok(&["copy", &ocidir(&bed, "signed"), &at]);
    for place in [at.as_str(), &ocidir(&bed, "signed")] {
        let report = bed.ferry_ok(&["inspect", place, "--output", "json"]);
        let mut found: Vec<(String, String)> = report["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["kind"].as_str().unwrap().to_owned(),
                    a["digest"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        found.sort();
        let mut want = vec![
            ("cosign-tag".to_owned(), sig.digest.clone()),
            ("referrer".to_owned(), sbom.digest.clone()),
        ];
        want.sort();
        assert_eq!(found, want, "{place}: {report}");
    }
}

#[test]
fn tags_follow_every_page_and_match_skopeo() {
    let reg = TestRegistry::start(Mode::Plain);
    // Debian's docker-registry (distribution 2.8) answers a tag list whole, whatever `?n=`
    // says; the proxy in front pages it as registries that honour `n` do.
    let pager = FaultProxy::start(&reg.host());
    pager.paginate_tags();
    let bed = Bed::new(&[&reg]);
    let layout = Layout::create(&bed.layout("images")).unwrap();
    layout
        .add_image(&ImageSpec {
            tag: "v".into(),
            platforms: vec![],
            attestation: false,
            ..ImageSpec::default()
        })
        .unwrap();
    let repo = format!("{}/acme/many", reg.host());
    let dests: Vec<String> = (0..120).map(|i| format!("{repo}:t{i:03}")).collect();
    let mut args = vec!["copy".to_owned(), ocidir(&bed, "v")];
    args.extend(dests);
    let out = bed.ferry(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", said(&out));

    let theirs = skopeo::list_tags(&repo, reg.creds(), reg.tls());
    assert_eq!(theirs.len(), 120);
    let paged = format!("{}/acme/many", pager.host());
    assert_eq!(
        skopeo::list_tags(&paged, None, reg.tls()),
        theirs,
        "skopeo through the pager"
    );
    let pages = |from: usize| -> Vec<String> {
        pager.log()[from..]
            .iter()
            .filter(|e| e.method == "GET" && e.path.starts_with("/v2/acme/many/tags/list"))
            .map(|e| e.path.clone())
            .collect()
    };

    let before = pager.log().len();
    let text = String::from_utf8(stdout_ok(&bed, &["tags", &paged, "--page-size", "50"])).unwrap();
    let ours: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(ours, theirs);
    let seen = pages(before);
    eprintln!(
        "ferry tags --page-size 50: {} requests: {seen:?}",
        seen.len()
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen[0].contains("n=50") && !seen[0].contains("last="),
        "{seen:?}"
    );
    assert!(
        seen[1].contains("last=t049") && seen[2].contains("last=t099"),
        "{seen:?}"
    );

    // The default page size takes one request; JSON is skopeo's shape.
    let before = pager.log().len();
    let doc = bed.ferry_ok(&["tags", &paged, "--output", "json"]);
    assert_eq!(pages(before).len(), 1);
    assert_eq!(doc["Repository"], paged.as_str());
    let tags: Vec<&str> = doc["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, theirs);

    // Straight from the registry (one answer, whatever n), the same list.
    let text = String::from_utf8(stdout_ok(&bed, &["tags", &repo, "--page-size", "7"])).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), theirs);

    let out = bed.ferry(&["tags", &format!("{repo}:t000")]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
}

#[test]
fn ocidir_layouts_inspect_digest_and_list_tags() {
    let bed = Bed::new(&[]);
    let written = images(&bed);
    let path = bed.layout("images");
    let index: Value =
        serde_json::from_slice(&std::fs::read(path.join("index.json")).unwrap()).unwrap();
    let mut want: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_owned)
        .collect();
    want.sort();
    let root = format!("ocidir://{}", path.display());
    let text = String::from_utf8(stdout_ok(&bed, &["tags", &root])).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), want);
    let doc = bed.ferry_ok(&["tags", &root, "--output", "json"]);
    assert_eq!(doc["Repository"], root.as_str());

    for w in &written {
        let at = ocidir(&bed, &w.tag);
        let hex = w.digest.strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(path.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(stdout_ok(&bed, &["inspect", "--raw", &at]), bytes);
        assert_eq!(
            String::from_utf8(stdout_ok(&bed, &["digest", &at])).unwrap(),
            format!("{}\n", w.digest)
        );
        let report = bed.ferry_ok(&["inspect", &at, "--output", "json"]);
        assert_eq!(report["digest"], w.digest.as_str());
        let children: Vec<&str> = report["platforms"]
            .as_array()
            .map(|p| p.iter().map(|e| e["digest"].as_str().unwrap()).collect())
            .unwrap_or_default();
        let buildkit: Vec<&str> = report["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "buildkit-attestation")
            .map(|a| a["digest"].as_str().unwrap())
            .collect();
        let mut all: Vec<&str> = children.into_iter().chain(buildkit).collect();
        let mut expected: Vec<&str> = w.children.iter().map(String::as_str).collect();
        all.sort();
        expected.sort();
        assert_eq!(all, expected, "{}", w.tag);
    }
}

/// A scratch Docker config directory holding `config.json` with these bytes.
fn docker_config(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    dir
}

/// `ferry login HOST -u USER --password-stdin` with `password` on stdin and this Docker config.
fn login(
    bed: &Bed,
    config: &Path,
    host: &str,
    user: &str,
    password: &str,
    path: Option<&str>,
) -> Output {
    let mut cmd = bed.command(&["login", host, "-u", user, "--password-stdin"]);
    cmd.env("DOCKER_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

const EXISTING: &str = "{\n\t\"psFormat\": \"table {{.ID}}\",\n\t\"auths\": {\n\t\t\"other.example\": {\"auth\": \"b3RoZXI6b3RoZXI=\"}\n\t}\n}\n";

#[test]
fn login_checks_with_basic_and_token_registries_then_copy_uses_the_stored_login() {
    use std::os::unix::fs::PermissionsExt;
    for mode in [Mode::Basic, Mode::Token] {
        let reg = TestRegistry::start(mode);
        let bed = Bed::new(&[]);
        let (user, password) = reg.creds().unwrap();
        let (w, src) = bed.image("v1", 11);
        let config = docker_config(EXISTING);
        let file = config.path().join("config.json");

        // A wrong password: exit 1, one line naming the registry, nothing written.
        let out = login(
            &bed,
            config.path(),
            &reg.host(),
            user,
            "wrong-password",
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {}", said(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("cannot log in to {}", reg.host())),
            "{err}"
        );
        assert!(!said(&out).contains("wrong-password"), "{}", said(&out));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), EXISTING);

        let out = login(&bed, config.path(), &reg.host(), user, password, None);
        assert!(out.status.success(), "{mode:?}: {}", said(&out));
        assert!(!said(&out).contains(password), "{}", said(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("login succeeded"));
        let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["psFormat", "auths"]);
        assert_eq!(doc["psFormat"], "table {{.ID}}");
        assert_eq!(doc["auths"]["other.example"]["auth"], "b3RoZXI6b3RoZXI=");
        assert_eq!(
            doc["auths"][reg.host()]["auth"],
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let mode_bits = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode_bits, 0o600);

        // A copy with nothing but that config.
        let dest = format!("{}/acme/api:v1", reg.host());
        let out = bed
            .command(&["copy", &src, &dest])
            .env("DOCKER_CONFIG", config.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode:?}: {}", said(&out));
        assert_eq!(
            skopeo::manifest_digest(&dest, reg.creds(), reg.tls()),
            w.digest
        );

        // Logout removes it, and only it.
        let out = bed
            .command(&["logout", &reg.host()])
            .env("DOCKER_CONFIG", config.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", said(&out));
        let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert!(doc["auths"].get(reg.host()).is_none(), "{doc}");
        assert_eq!(doc["auths"]["other.example"]["auth"], "b3RoZXI6b3RoZXI=");
    }
}

#[test]
fn login_without_a_password_or_terminal_is_a_usage_error() {
    let reg = TestRegistry::start(Mode::Basic);
    let bed = Bed::new(&[]);
    let config = docker_config(EXISTING);
    let out = bed
        .command(&["login", &reg.host(), "-u", "ferry"])
        .env("DOCKER_CONFIG", config.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("--password-stdin"), "{}", said(&out));
    assert_eq!(
        std::fs::read_to_string(config.path().join("config.json")).unwrap(),
        EXISTING
    );
}

#[test]
fn login_stores_through_the_credential_helper_the_config_names() {
    use std::os::unix::fs::PermissionsExt;
    let reg = TestRegistry::start(Mode::Basic);
    let bed = Bed::new(&[]);
    let (user, password) = reg.creds().unwrap();
    let helpers = tempfile::tempdir().unwrap();
    let stored = helpers.path().join("stored.json");
    let calls = helpers.path().join("calls.log");
    let script = helpers.path().join("docker-credential-fake");
    // store: keep the JSON; get: answer with it (same keys); erase: forget it.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{calls}'\ncase \"$1\" in\n  store) cat > '{stored}';;\n  get) cat > /dev/null; if [ -s '{stored}' ]; then cat '{stored}'; else echo 'credentials not found in native keychain'; exit 1; fi;;\n  erase) cat > /dev/null; rm -f '{stored}';;\nesac\n",
            calls = calls.display(),
            stored = stored.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        helpers.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config = docker_config(r#"{"credsStore": "fake", "experimental": "enabled"}"#);

    let out = login(
        &bed,
        config.path(),
        &reg.host(),
        user,
        password,
        Some(&path),
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("docker-credential-fake"));
    let got: Value = serde_json::from_slice(&std::fs::read(&stored).unwrap()).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"ServerURL": reg.host(), "Username": user, "Secret": password})
    );
    // The file holds no password: the helper does.
    let file = std::fs::read_to_string(config.path().join("config.json")).unwrap();
    assert!(!file.contains("auths"), "{file}");

    let (w, src) = bed.image("v1", 12);
    let dest = format!("{}/acme/api:v1", reg.host());
    let out = bed
        .command(&["copy", &src, &dest])
        .env("DOCKER_CONFIG", config.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        skopeo::manifest_digest(&dest, reg.creds(), reg.tls()),
        w.digest
    );

    let out = bed
        .command(&["logout", &reg.host()])
        .env("DOCKER_CONFIG", config.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert!(!stored.exists());
    let verbs = std::fs::read_to_string(&calls).unwrap();
    assert!(
        verbs.starts_with("store\n") && verbs.ends_with("erase\n"),
        "{verbs}"
    );
}

#[test]
fn one_off_creds_on_copy_win_and_are_never_printed() {
    const ALICE_PW: &str = "alice-Pw-7f3a9c";
    const BOB_PW: &str = "bob-Pw-e41b2d";
    let a = TestRegistry::start_basic_with("alice", ALICE_PW);
    let b = TestRegistry::start_basic_with("bob", BOB_PW);
    // An empty Docker config: only the flags can log in.
    let bed = Bed::with_logins(&[]);
    let (w, src) = bed.image("v1", 13);
    let at_a = format!("{}/acme/api:v1", a.host());
    let at_b = format!("{}/mirror/api:v1", b.host());
    let secrets = [
        ALICE_PW.to_owned(),
        BOB_PW.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{ALICE_PW}")),
        base64::engine::general_purpose::STANDARD.encode(format!("bob:{BOB_PW}")),
    ];
    let run = |args: &[&str]| -> Output {
        let out = bed
            .command(args)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let all = said(&out);
        for s in &secrets {
            assert!(
                !all.contains(s.as_str()),
                "a secret was printed by {args:?}:\n{all}"
            );
        }
        out
    };

    // Without a login the push is refused.
    let out = run(&["copy", &src, &at_a]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));

    let dest_creds = format!("alice:{ALICE_PW}");
    let out = run(&["-vvv", "copy", &src, &at_a, "--dest-creds", &dest_creds]);
    assert!(out.status.success(), "{}", said(&out));

    let src_creds = format!("alice:{ALICE_PW}");
    let dest_creds = format!("bob:{BOB_PW}");
    let out = run(&[
        "-vvv",
        "copy",
        &at_a,
        &at_b,
        "--src-creds",
        &src_creds,
        "--dest-creds",
        &dest_creds,
    ]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("TRACE") || said(&out).contains("trace"),
        "RUST_LOG=trace logs"
    );
    assert_eq!(skopeo::manifest_digest(&at_b, b.creds(), b.tls()), w.digest);

    // --creds HOST=USER:PASS, repeated, on copy and on the read-only verbs.
    let at_b2 = format!("{}/mirror/api:v2", b.host());
    let ca = format!("{}=alice:{ALICE_PW}", a.host());
    let cb = format!("{}=bob:{BOB_PW}", b.host());
    let out = run(&[
        "-vvv", "copy", &at_a, &at_b2, "--creds", &ca, "--creds", &cb,
    ]);
    assert!(out.status.success(), "{}", said(&out));
    let out = run(&["-vvv", "digest", &at_b2, "--creds", &cb]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", w.digest)
    );
    let out = run(&["inspect", &at_b2, "--creds", &cb, "--output", "json"]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(json(&out)["digest"], w.digest.as_str());
    let out = run(&["tags", &format!("{}/mirror/api", b.host()), "--creds", &cb]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v1\nv2\n");

    // A wrong one-off password wins over nothing: refused, and not printed either.
    let out = run(&[
        "digest",
        &at_b2,
        "--creds",
        &format!("{}=bob:{ALICE_PW}", b.host()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));

    // A password left out with no terminal to ask on: a usage error before any request.
    let before = b.access_log().len();
    let out = run(&["digest", &at_b2, "--creds", &format!("{}=bob", b.host())]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("no password for bob"), "{}", said(&out));
    assert_eq!(b.access_log().len(), before);
}
