//! mirror::orchestration: in-process tests of mirror runs against in-memory registries — content before each tag at every target, incremental re-runs that write nothing, and a failing target that leaves the others whole.

use std::sync::Arc;

use crate::auth::CredentialStore;
use crate::copy::progress::Quiet as CopyQuiet;
use crate::copy::{Client, CopyOptions, Engine};
use crate::digest::Digest;
use crate::policy::{Overrides, Policies};
use crate::reference::ImageRef;
use crate::registry::memory::{MemoryRegistry, Write, WriteKind};
use crate::sample::{ImageSpec, Layout, Platform};
use crate::transport::TransportOptions;

use super::progress::Quiet;
use super::select::Request;

struct World {
    _dir: tempfile::TempDir,
    src: Arc<MemoryRegistry>,
    a: Arc<MemoryRegistry>,
    b: Arc<MemoryRegistry>,
    policies: Policies,
    client: Arc<Client>,
    options: CopyOptions,
    /// (tag, digest) of the images at the source.
    images: Vec<(String, Digest)>,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

impl World {
    /// Three tags of `acme/api` at src.example, mirrored to a and b.
    fn new() -> World {
        Self::with_repositories(&["api"])
    }

    /// Three tags in each of `repositories` under src.example/acme, every image on the same
    /// base layer, mirrored to a and b.
    fn with_repositories(repositories: &[&str]) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::create(&dir.path().join("ci")).expect("layout");
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).expect("policies dir");
        std::fs::write(
            policies.join("nightly.yaml"),
            format!("version: 1\nkind: mirror\nname: nightly\nsource: src.example/acme\nrepositories: [{}]\ntargets:\n  - registry: a.example\n    prefix: mirror/\n  - registry: b.example\n    prefix: mirror/\n", repositories.join(", ")),
        )
        .expect("policy");
        let loaded = Policies::load(&policies, &Overrides::default()).expect("policies");
        let options = CopyOptions::from_registries(&loaded, TransportOptions::default());
        let src = MemoryRegistry::new("src.example");
        let (a, b) = (
            MemoryRegistry::new("a.example"),
            MemoryRegistry::new("b.example"),
        );
        let client = Arc::new(
            Client::new(&options, CredentialStore::from_files(Vec::new()))
                .with_memory(src.clone())
                .with_memory(a.clone())
                .with_memory(b.clone()),
        );
        let seed = Engine::with_client(client.clone(), options.clone());
        let mut images = Vec::new();
        for (r, repository) in repositories.iter().enumerate() {
            for (i, tag) in ["v1.0.0", "v1.1.0", "latest"].into_iter().enumerate() {
                let tagged = format!("{repository}-{tag}");
                let w = layout
                    .add_image(&ImageSpec {
                        tag: tagged.clone(),
                        seed: (r * 10 + i) as u64 + 1,
                        platforms: ["linux/amd64", "linux/arm64"]
                            .iter()
                            .filter_map(|p| Platform::parse(p))
                            .collect(),
                        base_layers: vec![crate::sample::LayerSpec {
                            seed: 99,
                            size: 64 << 10,
                        }],
                        ..ImageSpec::default()
                    })
                    .expect("image");
                let from = ImageRef::parse(&format!(
                    "ocidir://{}:{tagged}",
                    dir.path().join("ci").display()
                ))
                .expect("ref");
                let to =
                    ImageRef::parse(&format!("src.example/acme/{repository}:{tag}")).expect("ref");
                let r = rt()
                    .block_on(seed.copy(&from, &[to], &CopyQuiet))
                    .expect("seed the source");
                assert_eq!(r.failed(), 0);
                if *repository == "api" {
                    images.push((tag.to_owned(), Digest::parse(&w.digest).expect("digest")));
                }
            }
        }
        World {
            _dir: dir,
            src,
            a,
            b,
            policies: loaded,
            client,
            options,
            images,
        }
    }

    fn mirror(&self) -> super::MirrorReport {
        let run = Request {
            names: &[],
            shard: None,
            job_index: None,
            shard_count: None,
            dry_run: false,
            fail_fast: false,
            parallel: 2,
        }
        .resolve(&self.policies)
        .expect("a mirror run");
        let engine = Engine::with_client(self.client.clone(), run.copy_options(&self.options));
        rt().block_on(super::run(&run.policies, &engine, &run.options, &Quiet))
            .expect("mirror")
    }
}

/// Every tag write at `reg` comes after the whole image it names is there.
fn tags_follow_content(reg: &MemoryRegistry, images: &[(String, Digest)]) {
    let writes: Vec<Write> = reg.writes();
    for (tag, digest) in images {
        let Some(at) = writes
            .iter()
            .position(|w| w.kind == WriteKind::Tag && w.what == *tag && w.done)
        else {
            continue;
        };
        let image = reg
            .graph("mirror/api", digest)
            .expect("tagged content is complete");
        let before: std::collections::HashSet<Digest> = writes[..at]
            .iter()
            .filter(|w| w.done && w.kind != WriteKind::Tag)
            .filter_map(|w| Digest::parse(&w.what).ok())
            .collect();
        assert!(
            image.is_subset(&before),
            "{tag} tagged at {} before its content: {writes:#?}",
            reg.host()
        );
    }
}

#[test]
fn every_tag_follows_its_content_and_a_rerun_writes_nothing() {
    let w = World::new();
    let r = w.mirror();
    assert_eq!(r.totals.failed, 0, "{:?}", r.totals);
    assert_eq!(r.totals.copied, 6, "{:?}", r.totals);
    for reg in [&w.a, &w.b] {
        tags_follow_content(reg, &w.images);
        for (tag, digest) in &w.images {
            assert_eq!(reg.tag("mirror/api", tag).as_ref(), Some(digest));
        }
        // Blobs the images share went to each registry once.
        let blobs: Vec<String> = reg
            .writes()
            .into_iter()
            .filter(|x| x.kind == WriteKind::Blob)
            .map(|x| x.what)
            .collect();
        let mut unique = blobs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            blobs.len(),
            unique.len(),
            "a blob uploaded twice to {}",
            reg.host()
        );
    }
    let before = [w.a.writes().len(), w.b.writes().len()];
    let again = w.mirror();
    assert_eq!(again.totals.up_to_date, 6, "{:?}", again.totals);
    assert_eq!(
        [w.a.writes().len(), w.b.writes().len()],
        before,
        "a no-op re-run wrote"
    );
}

#[test]
fn a_failing_target_leaves_the_other_whole_and_its_own_tags_unwritten() {
    let w = World::new();
    // b refuses every manifest: no image can complete there.
    w.b.fail(|x| x.kind == WriteKind::Manifest);
    let r = w.mirror();
    assert_eq!(r.totals.failed, 3, "{:?}", r.totals);
    assert_eq!(r.totals.copied, 3, "{:?}", r.totals);
    tags_follow_content(&w.a, &w.images);
    for (tag, digest) in &w.images {
        assert_eq!(w.a.tag("mirror/api", tag).as_ref(), Some(digest));
        assert_eq!(
            w.b.tag("mirror/api", tag),
            None,
            "{tag} tagged at the failing target"
        );
    }
    assert!(w.b.writes().iter().all(|x| x.kind != WriteKind::Tag));
}

#[test]
fn a_blob_two_repositories_share_is_read_once_and_mounted_at_each_registry() {
    let w = World::with_repositories(&["api", "worker"]);
    let reads_before = w.src.reads();
    let r = w.mirror();
    assert_eq!(r.totals.failed, 0, "{:?}", r.totals);
    assert_eq!(r.totals.copied, 12, "{:?}", r.totals);
    let reads: Vec<(Digest, usize)> = w
        .src
        .reads()
        .into_iter()
        .map(|(d, n)| (d.clone(), n - reads_before.get(&d).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(
        reads.iter().all(|(_, n)| *n == 1),
        "a blob read from the source more than once: {reads:?}"
    );
    for reg in [&w.a, &w.b] {
        let writes = reg.writes();
        let uploads: Vec<&String> = writes
            .iter()
            .filter(|x| x.kind == WriteKind::Blob)
            .map(|x| &x.what)
            .collect();
        let mut unique = uploads.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            uploads.len(),
            unique.len(),
            "a blob uploaded twice to {}",
            reg.host()
        );
        assert!(
            writes.iter().any(|x| x.kind == WriteKind::Mount),
            "nothing mounted at {}: the shared base layer was uploaded to both repositories",
            reg.host()
        );
    }
}
