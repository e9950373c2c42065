//! promote::orchestration: in-process tests of promote and rollback against in-memory registries — the order of writes, all-or-nothing tag flips, and what a failure leaves behind.

use std::path::Path;
use std::sync::Arc;

use crate::auth::CredentialStore;
use crate::copy::progress::Quiet;
use crate::copy::{Client, CopyOptions};
use crate::digest::Digest;
use crate::policy::{Overrides, Policies};
use crate::promote::{Context, PromoteOptions};
use crate::registry::memory::{MemoryRegistry, Write, WriteKind};
use crate::sample::{ImageSpec, Layout, Platform};
use crate::transport::TransportOptions;

/// Two sample images in a layout, staging on one in-memory registry, prod on two.
struct World {
    _dir: tempfile::TempDir,
    a: Arc<MemoryRegistry>,
    b: Arc<MemoryRegistry>,
    ctx: Context,
    v1: Digest,
    v2: Digest,
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write a policy");
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let ci = dir.path().join("ci");
        let layout = Layout::create(&ci).expect("layout");
        let image = |tag: &str, seed| {
            let w = layout
                .add_image(&ImageSpec {
                    tag: tag.into(),
                    seed,
                    platforms: ["linux/amd64", "linux/arm64"]
                        .iter()
                        .filter_map(|p| Platform::parse(p))
                        .collect(),
                    ..ImageSpec::default()
                })
                .expect("image");
            Digest::parse(&w.digest).expect("digest")
        };
        let (v1, v2) = (image("v1", 1), image("v2", 2));
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).expect("policies dir");
        let source = format!("ocidir://{}", ci.display());
        write(
            &policies,
            "staging.yaml",
            &format!("version: 1\nsource: {source}\ntargets:\n  - registry: a.example\n    repository: staging/api\ntags: [staging]\n"),
        );
        write(
            &policies,
            "prod.yaml",
            &format!("version: 1\nsource: {source}\npromote_from: staging\ntargets:\n  - registry: a.example\n    repository: prod/api\n  - registry: b.example\n    repository: prod/api\ntags: [prod, \"{{source_tag}}\"]\n"),
        );
        let (a, b, ctx) = two_registries(&policies);
        World {
            _dir: dir,
            a,
            b,
            ctx,
            v1,
            v2,
        }
    }

    async fn promote(&self, env: &str, image: &str) -> crate::Result<super::PromoteReport> {
        let quiet = |_: &[String]| Quiet;
        self.ctx
            .promote(env, image, &PromoteOptions::default(), &quiet)
            .await
    }
}

/// The policies in `dir` on a client whose registries `a.example` and `b.example` are in memory.
fn two_registries(dir: &Path) -> (Arc<MemoryRegistry>, Arc<MemoryRegistry>, Context) {
    let loaded = Policies::load(dir, &Overrides::default()).expect("policies");
    let options = CopyOptions::from_registries(&loaded, TransportOptions::default());
    let (a, b) = (
        MemoryRegistry::new("a.example"),
        MemoryRegistry::new("b.example"),
    );
    let client = Client::new(&options, CredentialStore::from_files(Vec::new()))
        .with_memory(a.clone())
        .with_memory(b.clone());
    let ctx = Context::with_client(loaded, options, Arc::new(client));
    (a, b, ctx)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The writes to one repository, content ones only (no history ledger).
fn content(writes: &[Write], repository: &str) -> Vec<Write> {
    writes
        .iter()
        .filter(|w| w.repository == repository && !w.what.starts_with("ferry-history"))
        .cloned()
        .collect()
}

#[test]
fn content_goes_before_tags_and_tags_move_only_after_every_target_is_complete() {
    let w = World::new();
    rt().block_on(async {
        w.promote("staging", ":v1").await.expect("staging");
        w.promote("prod", ":v1").await.expect("prod");
    });
    for reg in [&w.a, &w.b] {
        let writes = content(&reg.writes(), "prod/api");
        let first_tag = writes
            .iter()
            .position(|x| x.kind == WriteKind::Tag)
            .expect("tags written");
        // After the first tag, nothing of the image is written (only tags, and the ledger).
        let image = reg.graph("prod/api", &w.v1).expect("complete");
        assert!(
            writes[first_tag..]
                .iter()
                .all(|x| Digest::parse(&x.what).map_or(true, |d| !image.contains(&d))),
            "image content after a tag at {}: {writes:#?}",
            reg.host()
        );
        assert!(writes[..first_tag]
            .iter()
            .filter_map(|x| Digest::parse(&x.what).ok())
            .collect::<std::collections::HashSet<_>>()
            .is_superset(&image));
        // The index is put after its children.
        let index = writes
            .iter()
            .position(|x| x.what == w.v1.as_str())
            .expect("the index put by digest");
        assert!(writes[..index]
            .iter()
            .any(|x| x.kind == WriteKind::Manifest));
        assert_eq!(reg.tag("prod/api", "prod"), Some(w.v1.clone()));
        assert_eq!(reg.tag("prod/api", "v1"), Some(w.v1.clone()));
        assert!(reg.complete("prod/api", &w.v1));
    }
}

#[test]
fn a_target_that_fails_mid_copy_moves_no_tag_anywhere() {
    let w = World::new();
    rt().block_on(async {
        w.promote("staging", ":v1").await.expect("staging v1");
        w.promote("prod", ":v1").await.expect("prod v1");
        w.promote("staging", ":v2").await.expect("staging v2");
    });
    // b refuses v2's index: its content cannot complete.
    let v2 = w.v2.clone();
    w.b.fail(move |x| x.kind == WriteKind::Manifest && x.what == v2.as_str());
    let before_a = w.a.writes().len();
    let r = rt().block_on(w.promote("prod", ":v2"));
    let failed = match r {
        Ok(report) => report.failed(),
        Err(e) => {
            assert_eq!(e.exit_code(), 1, "{e}");
            1
        }
    };
    assert!(failed > 0, "a failed target is reported");
    for reg in [&w.a, &w.b] {
        assert_eq!(
            reg.tag("prod/api", "prod"),
            Some(w.v1.clone()),
            "prod moved at {}",
            reg.host()
        );
        assert_eq!(
            reg.tag("prod/api", "v2"),
            None,
            "v2 tagged at {}",
            reg.host()
        );
    }
    // a got v2's content (it did not fail), but no tag write.
    let later: Vec<Write> = w.a.writes().split_off(before_a);
    assert!(
        later
            .iter()
            .all(|x| x.kind != WriteKind::Tag || x.what.starts_with("ferry-history")),
        "a tag written at a.example: {later:#?}"
    );
}

#[test]
fn a_refused_gate_writes_nothing_at_all() {
    let w = World::new();
    rt().block_on(async {
        w.promote("staging", ":v1").await.expect("staging");
        // v2 is not what staging runs: promote_from refuses it.
        let e = w.promote("prod", ":v2").await.expect_err("refused");
        assert_eq!(e.exit_code(), 3, "{e}");
    });
    assert!(
        content(&w.a.writes(), "prod/api").is_empty() && w.b.writes().is_empty(),
        "writes after a refusal: {:#?} {:#?}",
        w.a.writes(),
        w.b.writes()
    );
}

#[test]
fn rollback_moves_tags_only() {
    let w = World::new();
    rt().block_on(async {
        for tag in [":v1", ":v2"] {
            w.promote("staging", tag).await.expect("staging");
            w.promote("prod", tag).await.expect("prod");
        }
    });
    let before = [w.a.writes().len(), w.b.writes().len()];
    let quiet = |_: &[String]| Quiet;
    let r = rt()
        .block_on(w.ctx.rollback("prod", None, 1, false, &quiet))
        .expect("rollback");
    assert_eq!(r.digest, w.v1);
    for (reg, n) in [&w.a, &w.b].into_iter().zip(before) {
        let later = reg.writes().split_off(n);
        assert!(
            later.iter().all(|x| x.kind == WriteKind::Tag),
            "rollback wrote content at {}: {later:#?}",
            reg.host()
        );
        assert_eq!(reg.tag("prod/api", "prod"), Some(w.v1.clone()));
        // Protected and template tags stay where the last promotion put them.
        assert_eq!(reg.tag("prod/api", "v2"), Some(w.v2.clone()));
    }
}

/// Three images (api, worker, web), each with v1 and v2 in its own layout; staging and prod are
/// releases of all three, staging on a, prod on a and b.
struct Release {
    _dir: tempfile::TempDir,
    a: Arc<MemoryRegistry>,
    b: Arc<MemoryRegistry>,
    ctx: Context,
    /// Per image, in policy order: (name, v1, v2).
    images: Vec<(&'static str, Digest, Digest)>,
}

impl Release {
    fn new() -> Release {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut images = Vec::new();
        let mut list = String::new();
        for (k, name) in ["api", "worker", "web"].into_iter().enumerate() {
            let path = dir.path().join(format!("ci-{name}"));
            let layout = Layout::create(&path).expect("layout");
            let image = |tag: &str, seed| {
                let w = layout
                    .add_image(&ImageSpec {
                        tag: tag.into(),
                        seed,
                        ..ImageSpec::default()
                    })
                    .expect("image");
                Digest::parse(&w.digest).expect("digest")
            };
            let k = k as u64 * 10;
            images.push((name, image("v1", k + 1), image("v2", k + 2)));
            list += &format!(
                "  - name: {name}\n    source: ocidir://{}\n",
                path.display()
            );
        }
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).expect("policies dir");
        write(
            &policies,
            "staging.yaml",
            &format!("version: 1\nimages:\n{list}targets:\n  - registry: a.example\n    prefix: staging/\ntags: [staging]\n"),
        );
        write(
            &policies,
            "prod.yaml",
            &format!("version: 1\nimages:\n{list}promote_from: staging\ntargets:\n  - registry: a.example\n    prefix: prod/\n  - registry: b.example\n    prefix: prod/\ntags: [prod, \"{{source_tag}}\"]\n"),
        );
        let (a, b, ctx) = two_registries(&policies);
        Release {
            _dir: dir,
            a,
            b,
            ctx,
            images,
        }
    }

    async fn promote(&self, env: &str, pick: super::Pick) -> crate::Result<super::PromoteReport> {
        let quiet = |_: &[String]| Quiet;
        self.ctx
            .promote_release(env, &pick, &PromoteOptions::default(), &quiet)
            .await
    }

    fn tag(tag: &str) -> super::Pick {
        super::Pick::Tag(crate::reference::Tag::parse(tag).expect("tag"))
    }

    /// Where `tag` points for each image at `reg`'s `prefix`.
    fn tags(reg: &MemoryRegistry, prefix: &str, tag: &str) -> Vec<Option<Digest>> {
        ["api", "worker", "web"]
            .iter()
            .map(|n| reg.tag(&format!("{prefix}{n}"), tag))
            .collect()
    }

    fn v(&self, which: usize) -> Vec<Option<Digest>> {
        self.images
            .iter()
            .map(|(_, v1, v2)| Some(if which == 1 { v1 } else { v2 }.clone()))
            .collect()
    }
}

#[test]
fn a_release_moves_every_image_or_none() {
    let w = Release::new();
    rt().block_on(async {
        w.promote("staging", Release::tag("v1"))
            .await
            .expect("staging v1");
        let r = w
            .promote("prod", super::Pick::From("staging".into()))
            .await
            .expect("prod --from staging");
        assert_eq!(r.images.len(), 3);
        assert_eq!(r.failed(), 0);
        w.promote("staging", Release::tag("v2"))
            .await
            .expect("staging v2");
    });
    for reg in [&w.a, &w.b] {
        assert_eq!(Release::tags(reg, "prod/", "prod"), w.v(1));
    }
    // b refuses worker's v2 manifest: that image cannot complete there, so nothing moves.
    let worker_v2 = w.images[1].2.clone();
    w.b.fail(move |x| x.kind == WriteKind::Manifest && x.what == worker_v2.as_str());
    let r = rt().block_on(w.promote(
        "prod",
        super::Pick::Images(vec!["api:v2".into(), "worker:v2".into(), "web:v2".into()]),
    ));
    assert!(
        r.map_or(true, |r| r.failed() > 0),
        "a failed target is reported"
    );
    for reg in [&w.a, &w.b] {
        assert_eq!(
            Release::tags(reg, "prod/", "prod"),
            w.v(1),
            "{}",
            reg.host()
        );
        assert_eq!(
            Release::tags(reg, "prod/", "v2"),
            vec![None, None, None],
            "{}",
            reg.host()
        );
    }
    // Without the fault, the same release goes through; history has it as one record.
    w.b.heal();
    let r = rt()
        .block_on(w.promote("prod", Release::tag("v2")))
        .expect("prod v2");
    assert_eq!(r.failed(), 0);
    for reg in [&w.a, &w.b] {
        assert_eq!(Release::tags(reg, "prod/", "prod"), w.v(2));
    }
    let history = rt().block_on(w.ctx.history("prod")).expect("history");
    assert_eq!(history.len(), 2, "{history:#?}");
    let names: Vec<&String> = history[1].images.keys().collect();
    assert_eq!(names, ["api", "web", "worker"]);
    assert_eq!(history[1].images["worker"], w.images[1].2);

    // Rollback moves the whole release back, and status sees every image in sync.
    let quiet = |_: &[String]| Quiet;
    let r = rt()
        .block_on(w.ctx.rollback("prod", None, 1, false, &quiet))
        .expect("rollback");
    assert_eq!(r.failed(), 0);
    for reg in [&w.a, &w.b] {
        assert_eq!(Release::tags(reg, "prod/", "prod"), w.v(1));
    }
    let status = rt().block_on(w.ctx.status("prod")).expect("status");
    assert_eq!(status.state, super::State::InSync, "{:?}", status.drift);
    assert_eq!(status.targets.len(), 6);
}

#[test]
fn a_gate_refusing_one_image_of_a_release_writes_nothing_for_any() {
    let w = Release::new();
    rt().block_on(async {
        w.promote("staging", Release::tag("v1"))
            .await
            .expect("staging v1");
    });
    let before = w.a.writes().len();
    // worker v2 is not what staging runs.
    let e = rt()
        .block_on(w.promote(
            "prod",
            super::Pick::Images(vec!["api:v1".into(), "worker:v2".into(), "web:v1".into()]),
        ))
        .expect_err("refused");
    assert_eq!(e.exit_code(), 3, "{e}");
    assert!(e.to_string().contains("worker"), "{e}");
    assert_eq!(w.a.writes().len(), before, "{:#?}", w.a.writes());
    assert!(w.b.writes().is_empty(), "{:#?}", w.b.writes());
    // Naming only some images of a release is a usage error, before any read.
    let e = rt()
        .block_on(w.promote("prod", super::Pick::Images(vec!["api:v1".into()])))
        .expect_err("partial");
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("missing: worker, web"), "{e}");
}
