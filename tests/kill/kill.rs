//! SIGKILL at random moments of copy, promote, mirror and the promotion of a 3-image release against a real registry, while a watcher polls the destination's tags: no tag ever points at incomplete content, and every rerun completes.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::sample::{ImageSpec, LayerSpec, Layout};
use serde_json::Value;
use support::bed::{stderr, Bed};
use support::registry::{Mode, TestRegistry};

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// How `complete` marks an answer that says nothing about completeness (a registry error).
pub(crate) const UNREADABLE: &str = "unreadable:";

/// Checks that what `repo:tag` names is complete: every manifest under it and every blob.
pub(crate) async fn complete(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
) -> Result<Option<String>, String> {
    let get = |r: String| {
        let url = format!("{base}/v2/{repo}/manifests/{r}");
        async move {
            let resp = client
                .get(&url)
                .header("accept", ACCEPT)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if resp.status() == 404 {
                return Ok(None);
            }
            if !resp.status().is_success() {
                // distribution's filesystem driver answers 500 while a link file is rewritten:
                // the registry could not say, which is not a dangling tag.
                return Err(format!("{UNREADABLE} {url}: {}", resp.status()));
            }
            let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
            let digest = format!("sha256:{}", support::skopeo::sha256_hex(&bytes));
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            Ok(Some((digest, v)))
        }
    };
    let Some((root, doc)) = get(tag.to_owned()).await? else {
        return Ok(None);
    };
    let mut manifests = vec![doc];
    let mut i = 0;
    while i < manifests.len() {
        let m = manifests[i].clone();
        i += 1;
        for child in m["manifests"].as_array().into_iter().flatten() {
            let d = child["digest"].as_str().unwrap_or_default().to_owned();
            match get(d.clone()).await? {
                Some((_, v)) => manifests.push(v),
                None => return Err(format!("{repo}:{tag} -> {root}: manifest {d} missing")),
            }
        }
        let blobs = m["config"]
            .as_object()
            .map(|_| &m["config"])
            .into_iter()
            .chain(m["layers"].as_array().into_iter().flatten());
        for b in blobs {
            let d = b["digest"].as_str().unwrap_or_default();
            let url = format!("{base}/v2/{repo}/blobs/{d}");
            let status = client
                .head(&url)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .status();
            if status == 404 {
                return Err(format!("{repo}:{tag} -> {root}: blob {d} is {status}"));
            }
            if status != 200 {
                return Err(format!("{UNREADABLE} {url}: {status}"));
            }
        }
    }
    Ok(Some(root))
}

/// Polls `watched` (repository, tag) at `base` until stopped; returns every violation seen.
fn watcher(
    base: String,
    watched: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<String>, usize)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = reqwest::Client::new();
            let mut seen = Vec::new();
            let mut polls = 0;
            while !stop.load(Ordering::Relaxed) {
                for (repo, tag) in &watched {
                    match complete(&client, &base, repo, tag).await {
                        Err(e) if !e.starts_with(UNREADABLE) => seen.push(e),
                        _ => {}
                    }
                }
                polls += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (seen, polls)
        })
    })
}

/// `complete`, asked again while the registry cannot say (a link file being rewritten).
async fn complete_retrying(
    base: &str,
    repo: &str,
    reference: &str,
) -> Result<Option<String>, String> {
    let client = reqwest::Client::new();
    let mut tries = 0;
    loop {
        match complete(&client, base, repo, reference).await {
            Err(e) if e.starts_with(UNREADABLE) && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other,
        }
    }
}

/// After a release promotion was killed: when any image's `release` tag names this round's
/// digest, every image of the round is complete at the destination (by digest). Returns 1 when
/// some tag had moved, else 0.
fn release_check(base: &str, release: &[(&str, String)], round: usize) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut moved = false;
        for (name, digest) in release {
            let repo = format!("release/{name}");
            let now = complete_retrying(base, &repo, "release").await;
            moved |= matches!(now, Ok(Some(d)) if &d == digest);
        }
        if moved {
            for (name, digest) in release {
                let repo = format!("release/{name}");
                let at = complete_retrying(base, &repo, digest).await;
                assert!(
                    matches!(&at, Ok(Some(d)) if d == digest),
                    "round {round}: a release tag moved while {repo}@{digest} is not complete: {at:?}"
                );
            }
        }
        usize::from(moved)
    })
}

/// A small xorshift generator: the seed is printed, so a failing sequence can be replayed.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    /// Seeded from `FERRY_KILL_SEED`, else the clock; the seed is printed to replay a failure.
    pub(crate) fn from_env() -> Rng {
        let seed = std::env::var("FERRY_KILL_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("FERRY_KILL_SEED={seed}");
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_sigkills_never_leave_a_tag_on_incomplete_content() {
    let _alone = crate::alone();
    // Rounds go on until this many SIGKILLs have landed while ferry was running.
    let wanted: usize = std::env::var("FERRY_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut rng = Rng::from_env();
    let src = TestRegistry::start(Mode::Plain);
    let dest = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[]);
    let dir = bed.policies(&[
        (
            "staging.yaml",
            format!(
                "version: 1\nsource: {}/acme/api\ntargets:\n  - registry: {}\n    repository: promoted/api\ntags: [staging]\n",
                src.host(),
                dest.host()
            ),
        ),
        (
            "release.yaml",
            format!(
                "version: 1\nimages:\n  - {{name: api, source: {0}/acme/api}}\n  - {{name: worker, source: {0}/acme/worker}}\n  - {{name: web, source: {0}/acme/web}}\ntargets:\n  - registry: {1}\n    prefix: release/\ntags: [release]\n",
                src.host(),
                dest.host()
            ),
        ),
        (
            "nightly.yaml",
            format!(
                "version: 1\nkind: mirror\nname: nightly\nsource: {}/acme\nrepositories: [api]\ntags:\n  include: ['^moving$']\ntargets:\n  - registry: {}\n    prefix: mirrored/\nexisting: overwrite\n",
                src.host(),
                dest.host()
            ),
        ),
    ]);
    let watched: Vec<(String, String)> = [
        ("copied/api", "latest"),
        ("promoted/api", "staging"),
        ("mirrored/api", "moving"),
        ("release/api", "release"),
        ("release/worker", "release"),
        ("release/web", "release"),
    ]
    .iter()
    .map(|(r, t)| (r.to_string(), t.to_string()))
    .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let watch = watcher(dest.url(), watched.clone(), stop.clone());
    let layout = Layout::create(&bed.layout("images")).unwrap();
    let killed: Mutex<Vec<(String, u128, bool)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    // How long an undisturbed run of each kind takes (its first round), to aim kills inside it.
    let mut calibrated: [Option<Duration>; 4] = [None; 4];
    // Release rounds killed after some image's tag moved: each must find every image complete.
    let mut moved_by_killed_releases = 0;

    let mut round = 0;
    while killed.lock().unwrap().iter().filter(|k| k.2).count() < wanted {
        assert!(round < wanted * 2 + 10, "too few kills land mid-run");
        // A new image each round (two platforms, 1 MiB of own layers each), under `rN` and `moving`.
        let w = layout
            .add_image(&ImageSpec {
                tag: format!("r{round}"),
                seed: 1000 + round as u64,
                own_layers: vec![LayerSpec {
                    seed: 0,
                    size: 1 << 20,
                }],
                ..ImageSpec::default()
            })
            .unwrap();
        let from = format!("ocidir://{}:r{round}", bed.layout("images").display());
        for tag in [format!("r{round}"), "moving".to_owned()] {
            let out = bed.ferry(&["copy", &from, &format!("{}/acme/api:{tag}", src.host())]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let kind = round % 4;
        // A release round: worker and web get images of their own at `rN` too.
        let mut release = vec![("api", w.digest.clone())];
        if kind == 3 {
            for (k, name) in ["worker", "web"].into_iter().enumerate() {
                let tag = format!("{name}-r{round}");
                let other = layout
                    .add_image(&ImageSpec {
                        tag: tag.clone(),
                        seed: 5000 + round as u64 * 2 + k as u64,
                        own_layers: vec![LayerSpec {
                            seed: 0,
                            size: 1 << 20,
                        }],
                        ..ImageSpec::default()
                    })
                    .unwrap();
                let from = format!("ocidir://{}:{tag}", bed.layout("images").display());
                let to = format!("{}/acme/{name}:r{round}", src.host());
                let out = bed.ferry(&["copy", &from, &to]);
                assert!(out.status.success(), "{}", stderr(&out));
                release.push((name, other.digest.clone()));
            }
        }
        let args: Vec<String> = match kind {
            0 => vec![
                "copy".into(),
                format!("{}/acme/api:r{round}", src.host()),
                format!("{}/copied/api:latest", dest.host()),
            ],
            1 => vec!["promote".into(), "staging".into(), format!(":r{round}")],
            2 => vec!["mirror".into()],
            _ => vec![
                "promote".into(),
                "release".into(),
                "--tag".into(),
                format!("r{round}"),
            ],
        };
        let (repo, tag) = &watched[kind];
        let mut child = bed
            .command(&args)
            .env("FERRY_POLICIES", &dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let began = Instant::now();
        let delay = match calibrated[kind] {
            None => {
                let status = child.wait().unwrap();
                assert!(status.success(), "round {round}: {args:?} failed");
                calibrated[kind] = Some(began.elapsed());
                eprintln!(
                    "{}: an undisturbed run takes {:?}",
                    args[0],
                    began.elapsed()
                );
                None
            }
            Some(full) => Some(Duration::from_micros(
                rng.next() % (full.as_micros() as u64 * 9 / 10).max(1),
            )),
        };
        if let Some(delay) = delay {
            std::thread::sleep(delay.saturating_sub(began.elapsed()));
            let hit = child.try_wait().unwrap().is_none();
            if hit {
                child.kill().unwrap();
            }
            let _ = child.wait();
            let name = if kind == 3 {
                "release"
            } else {
                args[0].as_str()
            };
            killed
                .lock()
                .unwrap()
                .push((name.to_owned(), delay.as_millis(), hit));
            if kind == 3 && hit {
                moved_by_killed_releases += release_check(&dest.url(), &release, round);
            }
        }

        // Rerun: it completes, and the tag ends at this round's image, complete.
        let out = bed
            .command(&args)
            .env("FERRY_POLICIES", &dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round} ({}) rerun after a kill at {delay:?}: {}",
            args[0],
            stderr(&out)
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let checks: Vec<(String, String, String)> = if kind == 3 {
            release
                .iter()
                .map(|(n, d)| (format!("release/{n}"), "release".to_owned(), d.clone()))
                .collect()
        } else {
            vec![(repo.clone(), tag.clone(), w.digest.clone())]
        };
        for (repo, tag, want) in checks {
            let now = rt.block_on(complete_retrying(&dest.url(), &repo, &tag));
            let now = now.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(now.as_deref(), Some(want.as_str()), "round {round}: {repo}");
        }
        round += 1;
    }
    let rounds = round;
    stop.store(true, Ordering::Relaxed);
    let (violations, polls) = watch.join().unwrap();
    let killed = killed.into_inner().unwrap();
    let hits = killed.iter().filter(|k| k.2).count();
    eprintln!("release rounds killed after some tag moved: {moved_by_killed_releases}, each with every image complete");
    for kind in ["copy", "promote", "mirror", "release"] {
        let (n, h) = killed
            .iter()
            .filter(|k| k.0 == kind)
            .fold((0, 0), |(n, h), k| (n + 1, h + k.2 as usize));
        eprintln!("{kind}: {n} rounds, {h} killed mid-run");
    }
    eprintln!(
        "{rounds} rounds in {:?}: {hits} of {} SIGKILLs landed mid-run; the watcher polled {polls} times; {} dangling tags seen",
        started.elapsed(),
        killed.len(),
        violations.len()
    );
    assert!(violations.is_empty(), "dangling tags: {violations:?}");
    assert!(hits >= wanted);
}
