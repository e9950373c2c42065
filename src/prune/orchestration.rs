//! prune::orchestration: in-process tests of `ferry prune` against an in-memory registry — deletes in order (tags, then parents before children), and a promotion that lands mid-prune is respected.

use std::sync::{Arc, Weak};

use crate::auth::CredentialStore;
use crate::copy::progress::Quiet;
use crate::copy::{Client, CopyOptions};
use crate::digest::Digest;
use crate::policy::{Overrides, Policies};
use crate::promote::{Context, PromoteOptions};
use crate::registry::memory::{MemoryRegistry, WriteKind};
use crate::sample::{ImageSpec, Layout};
use crate::transport::TransportOptions;

use super::{run, PruneOptions};

struct World {
    _dir: tempfile::TempDir,
    reg: Arc<MemoryRegistry>,
    ctx: Context,
    /// v1, v2, v3 as CI built them.
    v: Vec<Digest>,
}

impl World {
    /// Staging (rollback window 1) at `a.example/staging/api`, tagged with each source tag, and
    /// a retention policy keeping its newest `v*` tag.
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let ci = dir.path().join("ci");
        let layout = Layout::create(&ci).expect("layout");
        let v = (1..=3)
            .map(|n| {
                let w = layout
                    .add_image(&ImageSpec {
                        tag: format!("v1.0.{n}"),
                        seed: n,
                        ..ImageSpec::default()
                    })
                    .expect("image");
                Digest::parse(&w.digest).expect("digest")
            })
            .collect();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).expect("policies dir");
        let files = [
            (
                "staging.yaml",
                format!("version: 1\nsource: ocidir://{}\ntargets:\n  - registry: a.example\n    repository: staging/api\ntags: [staging, \"{{source_tag}}\"]\nrollback_window: 1\n", ci.display()),
            ),
            (
                "ci.yaml",
                "version: 1\nkind: retention\nrepositories: [a.example/staging/api]\ntags:\n  consider: [\"v*\"]\n  keep_last: 1\n".to_owned(),
            ),
        ];
        for (name, text) in files {
            std::fs::write(policies.join(name), text).expect("policy");
        }
        let loaded = Policies::load(&policies, &Overrides::default()).expect("policies");
        let options = CopyOptions::from_registries(&loaded, TransportOptions::default());
        let reg = MemoryRegistry::new("a.example");
        let client =
            Client::new(&options, CredentialStore::from_files(Vec::new())).with_memory(reg.clone());
        let ctx = Context::with_client(loaded, options, Arc::new(client));
        World {
            _dir: dir,
            reg,
            ctx,
            v,
        }
    }

    async fn promote(&self, tag: &str) {
        let quiet = |_: &[String]| Quiet;
        self.ctx
            .promote("staging", tag, &PromoteOptions::default(), &quiet)
            .await
            .expect("promote");
    }

    async fn prune(&self) -> super::PruneReport {
        let options = PruneOptions {
            names: Vec::new(),
            dry_run: false,
            shard: None,
            parallel: 1,
            now: std::time::SystemTime::now(),
        };
        run(&self.ctx.policies, self.ctx.client(), &options)
            .await
            .expect("prune")
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn tags_go_first_then_each_index_before_its_children() {
    let w = World::new();
    rt().block_on(async {
        for t in [":v1.0.1", ":v1.0.2", ":v1.0.3"] {
            w.promote(t).await;
        }
        let report = w.prune().await;
        assert_eq!(report.failures(), 0, "{report:#?}");
    });
    let deletes: Vec<String> = w
        .reg
        .writes()
        .into_iter()
        .filter(|x| x.kind == WriteKind::Delete)
        .map(|x| x.what)
        .collect();
    // v1 and v2 go (v3 is what staging runs, and its window); tags first.
    let first_manifest = deletes
        .iter()
        .position(|d| d.starts_with("sha256:"))
        .expect("manifests deleted");
    assert_eq!(&deletes[..first_manifest], ["v1.0.1", "v1.0.2"]);
    for gone in &w.v[..2] {
        let at = |d: &Digest| deletes.iter().position(|x| x == d.as_str());
        let root = at(gone).expect("the index is deleted");
        assert!(w.reg.tag("staging/api", "v1.0.1").is_none());
        // Its children come after it.
        let doc: serde_json::Value = serde_json::from_slice(
            &std::fs::read(w._dir.path().join("ci/blobs/sha256").join(gone.hex())).expect("index"),
        )
        .expect("json");
        for c in doc["manifests"].as_array().expect("children") {
            let c = Digest::parse(c["digest"].as_str().expect("digest")).expect("digest");
            assert!(at(&c).expect("child deleted") > root);
        }
    }
    assert!(w.reg.complete("staging/api", &w.v[2]));
    assert_eq!(w.reg.tag("staging/api", "staging").as_ref(), Some(&w.v[2]));
}

#[test]
fn a_promotion_that_lands_mid_prune_is_respected() {
    let w = World::new();
    let (v1, v2) = (w.v[0].clone(), w.v[1].clone());
    rt().block_on(async {
        for t in [":v1.0.1", ":v1.0.2", ":v1.0.3"] {
            w.promote(t).await;
        }
    });
    // When the first manifest is deleted, staging moves (a rollback elsewhere) onto the other
    // image the plan would delete.
    let reg: Weak<MemoryRegistry> = Arc::downgrade(&w.reg);
    w.reg.fail(move |x| {
        if x.kind == WriteKind::Delete {
            let moved_to = if x.what == v1.as_str() {
                Some(&v2)
            } else if x.what == v2.as_str() {
                Some(&v1)
            } else {
                None
            };
            if let (Some(d), Some(r)) = (moved_to, reg.upgrade()) {
                if r.tag("staging/api", "staging").as_ref() != Some(d) {
                    r.set_tag("staging/api", "staging", d);
                }
            }
        }
        false
    });
    let report = rt().block_on(w.prune());
    let r = &report.repositories[0];
    let now = w
        .reg
        .tag("staging/api", "staging")
        .expect("staging is tagged");
    assert!(
        w.reg.complete("staging/api", &now),
        "staging names incomplete content"
    );
    assert!(
        r.skipped
            .iter()
            .any(|s| s.what == now.as_str()
                && s.why.starts_with("staging moved to it during the prune")),
        "{r:#?}"
    );
    // The image staging moved to keeps its children too.
    assert_eq!(r.failed.len(), 0, "{r:#?}");
}
