//! Integration tests for promote, status, history and rollback against real registries (plain, Basic and token auth), checked with skopeo and the registries' access logs.

use crate::support;

use std::time::{Duration, Instant};

use ferry::sample::{ImageSpec, LayerSpec, Written};
use serde_json::Value;
use support::bed::{stderr, Bed};
use support::registry::{AccessEntry, Mode, TestRegistry};
use support::skopeo::{pulls_completely, tag_digest};

/// A source registry (reached as `ghcr.io` through an endpoint override) and three targets with mixed auth.
struct World {
    src: TestRegistry,
    plain: TestRegistry,
    basic: TestRegistry,
    token: TestRegistry,
    bed: Bed,
}

impl World {
    fn new() -> World {
        let src = TestRegistry::start(Mode::Plain);
        let plain = TestRegistry::start(Mode::Plain);
        let basic = TestRegistry::start(Mode::Basic);
        let token = TestRegistry::start(Mode::Token);
        let bed = Bed::new(&[&basic, &token]);
        let w = World {
            src,
            plain,
            basic,
            token,
            bed,
        };
        w.write_policies("[staging]", "[prod, \"{source_tag}\"]");
        w
    }

    /// staging → the plain registry; prod (from staging) → all three.
    fn write_policies(&self, staging_tags: &str, prod_tags: &str) {
        self.bed.policies(&[
            (
                "registries.yaml",
                format!(
                    "version: 1\nregistries:\n  ghcr.io:\n    endpoint: http://{}\n",
                    self.src.host()
                ),
            ),
            (
                "staging.yaml",
                format!(
                    "version: 1\nenvironment: staging\nsource: ghcr.io/acme/api\ntargets:\n  - registry: {}\n    repository: staging/api\ntags: {staging_tags}\nprotect: [\"sha-*\"]\n",
                    self.plain.host()
                ),
            ),
            (
                "prod.yaml",
                format!(
                    "version: 1\nenvironment: prod\nsource: ghcr.io/acme/api\npromote_from: staging\ntargets:\n  - registry: {}\n    repository: acme/api\n  - registry: {}\n    repository: acme/api\n  - registry: {}\n    repository: prod/api\ntags: {prod_tags}\nprotect: [\"v*\", \"sha-*\"]\n",
                    self.basic.host(),
                    self.token.host(),
                    self.plain.host()
                ),
            ),
        ]);
    }

    /// Generates an image and pushes it to the source under `tag`.
    fn push(&self, tag: &str, seed: u64) -> Written {
        let (w, from) = self.bed.image(tag, seed);
        self.bed.ferry_ok(&[
            "copy",
            &from,
            &format!("{}/acme/api:{tag}", self.src.host()),
        ]);
        w
    }

    fn pushed_big(&self, tag: &str, seed: u64) -> Written {
        let layout = ferry::sample::Layout::create(&self.bed.layout("images")).unwrap();
        let w = layout
            .add_image(&ImageSpec {
                tag: tag.into(),
                seed,
                own_layers: (0..3)
                    .map(|i| LayerSpec {
                        seed: seed * 10 + i,
                        size: 3 << 20,
                    })
                    .collect(),
                ..ImageSpec::default()
            })
            .unwrap();
        let from = format!("ocidir://{}:{tag}", self.bed.layout("images").display());
        self.bed.ferry_ok(&[
            "copy",
            &from,
            &format!("{}/acme/api:{tag}", self.src.host()),
        ]);
        w
    }

    fn args(&self, args: &[&str]) -> Vec<String> {
        self.bed.with_policies(args)
    }

    fn ferry(&self, args: &[&str]) -> std::process::Output {
        self.bed.ferry_policies(args)
    }

    fn ferry_ok(&self, args: &[&str]) -> Value {
        self.bed.ferry_policies_ok(args)
    }

    fn targets(&self) -> [(&TestRegistry, &'static str); 3] {
        [
            (&self.basic, "acme/api"),
            (&self.token, "acme/api"),
            (&self.plain, "prod/api"),
        ]
    }

    fn all(&self) -> [&TestRegistry; 4] {
        [&self.src, &self.plain, &self.basic, &self.token]
    }

    fn log_marks(&self) -> Vec<usize> {
        self.all().iter().map(|r| r.access_log().len()).collect()
    }

    /// Requests each registry got since the marks.
    fn since(&self, marks: &[usize]) -> Vec<Vec<AccessEntry>> {
        self.all()
            .iter()
            .zip(marks)
            .map(|(r, &m)| r.access_log().into_iter().skip(m).collect())
            .collect()
    }
}

fn writes(entries: &[AccessEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.is_write())
        .map(|e| format!("{} {}", e.method, e.path))
        .collect()
}

/// Promote to staging then prod; a digest that is not staging's is refused (exit 3, nothing
/// written); `--force --reason` goes through and the reason lands in history; a dry run writes
/// nothing; status notices a tag moved by hand.
#[test]
fn promote_through_gates_with_force_dry_run_and_drift() {
    let w = World::new();
    let one = w.push("sha-1111111", 1);
    let two = w.push("sha-2222222", 2);

    let r = w.ferry_ok(&[
        "promote",
        "staging",
        "ghcr.io/acme/api:sha-1111111",
        "--output",
        "json",
    ]);
    assert_eq!(r["digest"], one.digest.as_str());
    let r = w.ferry_ok(&["promote", "prod", ":sha-1111111", "--output", "json"]);
    assert_eq!(r["digest"], one.digest.as_str());
    assert_eq!(r["record"]["digest"], one.digest.as_str());
    for (reg, repo) in w.targets() {
        for tag in ["prod", "sha-1111111"] {
            assert_eq!(
                tag_digest(reg, repo, tag).as_deref(),
                Some(one.digest.as_str()),
                "{tag} at {}/{repo}",
                reg.host()
            );
        }
    }

    // The gate: sha-2 is not staging's.
    let marks = w.log_marks();
    let out = w.ferry(&["promote", "prod", ":sha-2222222"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains(&two.digest) && msg.contains(&one.digest),
        "{msg}"
    );
    assert_eq!(msg.trim().lines().count(), 1, "one line: {msg}");
    for (reg, log) in w.all().iter().zip(w.since(&marks)) {
        assert_eq!(
            writes(&log),
            Vec::<String>::new(),
            "a refused gate wrote to {}",
            reg.host()
        );
    }

    // A dry run sends no write request anywhere, and shows each tag's move.
    let marks = w.log_marks();
    let plan = w.ferry_ok(&[
        "promote",
        "staging",
        ":sha-2222222",
        "--dry-run",
        "--output",
        "json",
    ]);
    assert_eq!(plan["dry_run"], true);
    let staging_tag = &plan["targets"][0]["tags"][0];
    assert_eq!(staging_tag["tag"], "staging");
    assert_eq!(staging_tag["from"], one.digest.as_str());
    assert_eq!(staging_tag["to"], two.digest.as_str());
    for (reg, log) in w.all().iter().zip(w.since(&marks)) {
        assert_eq!(
            writes(&log),
            Vec::<String>::new(),
            "--dry-run wrote to {}",
            reg.host()
        );
    }

    // Forced, with a reason: goes through and is recorded.
    let out = w.ferry(&["promote", "prod", ":sha-2222222", "--force"]);
    assert_eq!(out.status.code(), Some(2), "--force needs --reason");
    w.ferry_ok(&[
        "promote",
        "prod",
        ":sha-2222222",
        "--force",
        "--reason",
        "hotfix for CVE-2026-1",
    ]);
    for (reg, repo) in w.targets() {
        assert_eq!(
            tag_digest(reg, repo, "prod").as_deref(),
            Some(two.digest.as_str())
        );
        pulls_completely(reg, repo, "prod").unwrap();
    }
    let history = w.ferry_ok(&["history", "prod", "--output", "json"]);
    assert_eq!(history[0]["digest"], two.digest.as_str());
    assert_eq!(history[0]["forced"], "hotfix for CVE-2026-1");
    assert_eq!(history[0]["previous"].as_object().unwrap().len(), 3);
    assert_eq!(history[1]["digest"], one.digest.as_str());
    assert!(history[1].get("forced").is_none());

    // Status: in sync, then drift when one target's tag is moved by hand.
    let s = w.ferry_ok(&["status", "prod", "--output", "json"]);
    assert_eq!(s["agree"], true);
    w.bed.ferry_ok(&[
        "copy",
        &format!("{}/acme/api:sha-1111111", w.src.host()),
        &format!("{}/acme/api:prod", w.basic.host()),
    ]);
    let out = w.ferry(&["status", "prod"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DRIFT") && text.contains(&w.basic.host()),
        "{text}"
    );
}

/// After two promotions, rollback puts the first digest back on every target with no blob
/// upload, while the source registry is down.
#[test]
fn rollback_restores_the_previous_digest_without_the_source() {
    let mut w = World::new();
    let one = w.push("sha-1111111", 1);
    let two = w.push("sha-2222222", 2);
    for tag in [":sha-1111111", ":sha-2222222"] {
        w.ferry_ok(&["promote", "staging", tag]);
        w.ferry_ok(&["promote", "prod", tag]);
    }
    for (reg, repo) in w.targets() {
        assert_eq!(
            tag_digest(reg, repo, "prod").as_deref(),
            Some(two.digest.as_str())
        );
    }
    w.src.stop();

    let marks = w.log_marks();
    let started = Instant::now();
    let r = w.ferry_ok(&["rollback", "prod", "--output", "json"]);
    let took = started.elapsed();
    assert_eq!(r["digest"], one.digest.as_str());
    for (reg, repo) in w.targets() {
        assert_eq!(
            tag_digest(reg, repo, "prod").as_deref(),
            Some(one.digest.as_str())
        );
        // Protected tags stay where they were.
        assert_eq!(
            tag_digest(reg, repo, "sha-2222222").as_deref(),
            Some(two.digest.as_str())
        );
    }
    for (reg, log) in w.all().iter().zip(w.since(&marks)) {
        let uploads: Vec<String> = writes(&log)
            .into_iter()
            .filter(|l| l.contains("/blobs/"))
            .collect();
        assert_eq!(
            uploads,
            Vec::<String>::new(),
            "rollback uploaded blobs to {}",
            reg.host()
        );
    }
    eprintln!("rollback of 3 targets took {took:?}");
    let history = w.ferry_ok(&["history", "prod", "--output", "json"]);
    assert_eq!(history[0]["kind"], "rollback");
    assert_eq!(history[0]["digest"], one.digest.as_str());
    let s = w.ferry_ok(&["status", "prod", "--output", "json"]);
    assert_eq!(s["agree"], true);
    assert_eq!(s["drift"], serde_json::json!([]));
}

/// SIGKILL at several points of a promotion: no target's tag ever points at incomplete content,
/// and the next run completes.
#[test]
fn sigkill_never_leaves_a_tag_on_incomplete_content() {
    let w = World::new();
    w.write_policies("[staging, \"{source_tag}\"]", "[prod]");
    // Each round promotes a new image to staging (one target) and kills at another point.
    type Point = fn(&[String]) -> bool;
    let points: [(&str, Point); 4] = [
        ("first upload", |ws| {
            ws.iter()
                .any(|l| l.starts_with("POST") && l.contains("/blobs/uploads"))
        }),
        ("third blob", |ws| {
            ws.iter()
                .filter(|l| l.starts_with("PUT") && l.contains("/blobs/uploads"))
                .count()
                >= 3
        }),
        ("first manifest", |ws| {
            ws.iter()
                .any(|l| l.starts_with("PUT") && l.contains("/manifests/sha256:"))
        }),
        ("first tag", |ws| {
            ws.iter()
                .any(|l| l.starts_with("PUT") && l.ends_with("/manifests/staging"))
        }),
    ];
    let mut killed_at = Vec::new();
    for (round, (name, point)) in points.iter().enumerate() {
        let tag = format!("sha-{round}{round}{round}{round}{round}{round}{round}");
        let img = w.pushed_big(&tag, 100 + round as u64);
        let marks = w.log_marks();
        let a = w.args(&["promote", "staging", &format!(":{tag}"), "--output", "json"]);
        let mut child = w
            .bed
            .command(&a)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut hit = false;
        while Instant::now() < deadline {
            let ws = writes(&w.since(&marks)[1]);
            if point(&ws) {
                child.kill().unwrap();
                hit = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.wait();
        killed_at.push(format!(
            "{name}: {}",
            if hit { "killed" } else { "finished first" }
        ));

        // Whatever the tag points at is complete there.
        for t in ["staging", tag.as_str()] {
            if let Some(d) = tag_digest(&w.plain, "staging/api", t) {
                pulls_completely(&w.plain, "staging/api", t).unwrap_or_else(|e| {
                    panic!("after a kill at {name}, {t} -> {d} is incomplete: {e}")
                });
            }
        }
        // The next run completes.
        w.ferry_ok(&["promote", "staging", &format!(":{tag}")]);
        assert_eq!(
            tag_digest(&w.plain, "staging/api", "staging").as_deref(),
            Some(img.digest.as_str())
        );
        pulls_completely(&w.plain, "staging/api", "staging").unwrap();
    }
    eprintln!("kill points: {killed_at:?}");
    assert!(
        killed_at.iter().filter(|k| k.ends_with("killed")).count() >= 3,
        "{killed_at:?}"
    );
}

/// Two promotions to one environment at once: every one that reports success is in history.
#[test]
fn concurrent_promotions_lose_no_record_silently() {
    let w = World::new();
    w.push("sha-1111111", 1);
    w.push("sha-2222222", 2);
    w.push("sha-3333333", 3);
    w.ferry_ok(&["promote", "staging", ":sha-1111111"]);
    let spawn = |tag: &str| {
        let a = w.args(&["promote", "staging", tag, "--output", "json"]);
        w.bed.command(&a).output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn(":sha-2222222"));
        let b = s.spawn(|| spawn(":sha-3333333"));
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    let history = w.ferry_ok(&["history", "staging", "--output", "json"]);
    let ids: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut recorded = 0;
    for out in [&a, &b] {
        if out.status.success() {
            recorded += 1;
            let r: Value = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(id) = r["record"]["id"].as_str() {
                assert!(ids.contains(&id), "record {id} lost: {ids:?}");
            }
        } else {
            assert!(
                stderr(out).contains("history") || stderr(out).contains("tag"),
                "{}",
                stderr(out)
            );
        }
    }
    eprintln!(
        "{recorded} of 2 concurrent promotions succeeded; history holds {} records",
        ids.len()
    );
    assert_eq!(ids.len(), 1 + recorded, "{ids:?}");
}

/// `ferry policy check` prints the resolved policies; a bad key fails with exit 2 naming file and key.
#[test]
fn policy_check_names_file_and_key() {
    let w = World::new();
    let ok = w.ferry(&["policy", "check"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("environment prod"));
    let prod = w.bed.policies_dir().join("prod.yaml");
    let text = std::fs::read_to_string(&prod).unwrap();
    std::fs::write(
        &prod,
        text.replace("repository: prod/api", "repo: prod/api"),
    )
    .unwrap();
    let bad = w.ferry(&["policy", "check"]);
    assert_eq!(bad.status.code(), Some(2));
    let msg = stderr(&bad);
    assert!(
        msg.contains("prod.yaml: targets[2].repo: unknown field `repo`"),
        "{msg}"
    );
}

/// `status` tells apart what it knows from what it could not read: an unreachable target is
/// UNKNOWN (exit 1, its own wording, never DRIFT), and an environment nobody promoted to yet says
/// so instead of "in sync".
#[test]
fn status_says_unknown_for_an_unreachable_target_and_never_promoted_before_the_first_promotion() {
    let reg = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[]);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_, from) = bed.image("v1", 61);
    let source = from.trim_end_matches(":v1");
    let dir = bed.policies(&[
        (
            "prod.yaml",
            format!(
                "version: 1\nsource: {source}\ntargets:\n  - registry: {}\n    repository: acme/api\n  - registry: 127.0.0.1:{closed}\n    repository: acme/api\ntags: [prod]\n",
                reg.host()
            ),
        ),
        (
            "fresh.yaml",
            format!(
                "version: 1\nsource: {source}\ntargets:\n  - registry: {}\n    repository: acme/fresh\ntags: [fresh, \"{{source_tag}}\"]\n",
                reg.host()
            ),
        ),
        (
            "registries.yaml",
            format!("version: 1\nregistries:\n  127.0.0.1:{closed}:\n    retries: 1\n"),
        ),
    ]);
    let run = |args: &[&str]| {
        bed.command(args)
            .env("FERRY_POLICIES", &dir)
            .output()
            .unwrap()
    };

    let out = run(&["status", "fresh"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.starts_with("fresh (fresh): never promoted"), "{text}");

    // Once promoted: short digests, with the tags that point at each.
    let out = run(&["promote", "fresh", ":v1", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = serde_json::from_slice::<Value>(&out.stdout).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = run(&["status", "fresh"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.starts_with("fresh (fresh): in sync"), "{text}");
    assert!(
        text.contains(&format!("{} (fresh, v1)", &digest[..19])),
        "{text}"
    );
    assert!(!text.contains(&digest), "a long digest: {text}");
    assert!(text.lines().all(|l| l.len() < 120), "{text}");
    let out = run(&["history", "fresh"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("promote   {}  by ", &digest[..19])),
        "{text}"
    );
    assert!(text.trim_end().ends_with(&format!("from {from}")), "{text}");

    let out = run(&["status", "prod"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    eprintln!("{text}{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        text.starts_with("prod (prod): UNKNOWN (1 of 2 targets unreadable)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{closed}/acme/api")) && text.contains("UNKNOWN: "),
        "{text}"
    );
    assert!(
        !text.contains("DRIFT") && !err.contains("drift"),
        "{text}{err}"
    );
    assert!(err.contains("prod is unknown at 1 target: "), "{err}");
    let out = run(&["status", "prod", "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "unknown", "{v}");
}

/// A promotion builds one client: the token a check fetched is the one the copy, the tag flip
/// and the history record reuse, so a token registry sees each scope asked for once.
#[test]
fn a_promotion_asks_a_token_registry_for_each_scope_once() {
    let w = World::new();
    w.push("sha-1111111", 1);
    w.ferry_ok(&["promote", "staging", ":sha-1111111"]);
    let server = w.token.token.as_ref().expect("a token server");
    let before = server.token_requests();
    let scopes_before = server.scopes_seen().len();
    w.ferry_ok(&["promote", "prod", ":sha-1111111"]);
    let asked = server.token_requests() - before;
    let mut scopes: Vec<String> = server.scopes_seen().split_off(scopes_before);
    eprintln!("promote prod: {asked} token requests, scopes {scopes:?}");
    scopes.sort();
    let distinct = {
        let mut d = scopes.clone();
        d.dedup();
        d.len()
    };
    assert!(
        asked <= distinct,
        "{asked} token requests for {distinct} scopes: {scopes:?}"
    );
}
