//! SIGKILL at random moments of `ferry prune` against a real registry, while a watcher lists the repository's tags and reads what each names: no listed tag stays naming a deleted or incomplete manifest, the registry's log shows every child and signature deleted after its image, every rerun completes, and reruns clean up what a killed run left (signatures of deleted images).

use crate::support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::sample::{signing_key, ImageSpec, Layout};
use support::bed::{stderr, Bed};
use support::registry::{Mode, TestRegistry};

use super::kill::{complete, Rng, UNREADABLE};

/// Every tag of `repo` at `base`, as the registry lists it.
async fn listed(client: &reqwest::Client, base: &str, repo: &str) -> Option<BTreeSet<String>> {
    let v: serde_json::Value = client
        .get(format!("{base}/v2/{repo}/tags/list?n=10000"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
    )
}

/// Lists `repo` until stopped; a tag still listed whose manifest cannot be read (or is
/// incomplete) is a violation. Returns the violations and how many listings were checked.
fn watcher(
    base: String,
    repo: String,
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
            // A bad answer counts only when it stays bad: the watcher reads a tag, then what it
            // names, while a prune deletes (its root can go between the two reads), and
            // distribution 2.8 deletes a manifest before it untags its tags, inside one DELETE.
            let bad = |r: &Result<Option<String>, String>| match r {
                Ok(Some(_)) => false,
                Err(e) => !e.starts_with(UNREADABLE),
                Ok(None) => true,
            };
            while !stop.load(Ordering::Relaxed) {
                let Some(tags) = listed(&client, &base, &repo).await else {
                    continue;
                };
                for tag in tags {
                    let first = complete(&client, &base, &repo, &tag).await;
                    if !bad(&first) {
                        continue;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let listed_still = listed(&client, &base, &repo)
                        .await
                        .is_some_and(|t| t.contains(&tag));
                    let again = complete(&client, &base, &repo, &tag).await;
                    if listed_still && bad(&again) {
                        seen.push(match again {
                            Err(e) => e,
                            _ => format!("{repo}:{tag} is listed but names a deleted manifest"),
                        });
                    }
                }
                polls += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (seen, polls)
        })
    })
}

#[test]
fn random_sigkills_during_a_prune_never_leave_a_tag_on_a_deleted_manifest() {
    let _alone = crate::alone();
    let wanted: usize = std::env::var("FERRY_PRUNE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let mut rng = Rng::from_env();
    let reg = TestRegistry::start(Mode::Plain);
    let bed = Bed::new(&[]);
    let dir = bed.policies(&[(
        "ci.yaml",
        format!(
            "version: 1\nkind: retention\nrepositories: [{}/ci/api]\ntags:\n  consider: [\"v*\"]\n  keep_last: 2\n",
            reg.host()
        ),
    )]);
    let stop = Arc::new(AtomicBool::new(false));
    let watch = watcher(reg.url(), "ci/api".into(), stop.clone());
    let layout = Layout::create(&bed.layout("images")).unwrap();
    let started = Instant::now();
    let mut calibrated: Option<Duration> = None;
    let (mut hits, mut rounds) = (0, 0);
    const PER_ROUND: u64 = 4;
    // Every image pushed: its root, and what must go after it (children, its signature).
    let mut below: Vec<(String, Vec<String>)> = Vec::new();
    while hits < wanted {
        assert!(rounds < wanted * 3 + 10, "too few kills land mid-run");
        // Four new versions, every other one signed (its `sha256-HEX.sig` tag goes with it).
        let mut newest = Vec::new();
        for k in 0..PER_ROUND {
            let tag = format!("v{}.{k}.0", rounds + 1);
            let w = layout
                .add_image(&ImageSpec {
                    tag: tag.clone(),
                    seed: 9000 + rounds as u64 * PER_ROUND + k,
                    ..ImageSpec::default()
                })
                .unwrap();
            let mut after = w.children.clone();
            if k % 2 == 0 {
                let sig = layout
                    .add_signature(&w.digest, "ci/api", &signing_key(1))
                    .unwrap();
                after.push(sig.digest);
            }
            below.push((w.digest.clone(), after));
            let from = format!("ocidir://{}:{tag}", bed.layout("images").display());
            let out = bed.ferry(&["copy", &from, &format!("{}/ci/api:{tag}", reg.host())]);
            assert!(out.status.success(), "{}", stderr(&out));
            newest.push((tag, w.digest));
        }
        let mut child = bed
            .command(&["prune"])
            .env("FERRY_POLICIES", &dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let began = Instant::now();
        match calibrated {
            None => {
                assert!(child.wait().unwrap().success(), "the first prune failed");
                calibrated = Some(began.elapsed());
                eprintln!("prune: an undisturbed run takes {:?}", began.elapsed());
            }
            Some(full) => {
                let delay =
                    Duration::from_micros(rng.next() % (full.as_micros() as u64 * 9 / 10).max(1));
                std::thread::sleep(delay.saturating_sub(began.elapsed()));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap();
                    hits += 1;
                }
                let _ = child.wait();
            }
        }
        // The rerun completes and leaves exactly the two newest versions, each signature with
        // its image, and nothing a killed run left behind.
        let out = bed
            .command(&["prune"])
            .env("FERRY_POLICIES", &dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {rounds} rerun: {}",
            stderr(&out)
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tags = rt
            .block_on(listed(&reqwest::Client::new(), &reg.url(), "ci/api"))
            .unwrap();
        let mut want: BTreeSet<String> = BTreeSet::new();
        for (k, (tag, digest)) in newest.iter().enumerate().skip(PER_ROUND as usize - 2) {
            want.insert(tag.clone());
            if k % 2 == 0 {
                want.insert(format!("sha256-{}.sig", &digest[7..]));
            }
        }
        assert_eq!(tags, want, "round {rounds}");
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    // The order as the registry logged it (each DELETE when it completed): a child or a
    // signature is never deleted before the image above it, killed runs and reruns alike.
    let deleted: Vec<String> = reg
        .access_log()
        .into_iter()
        .filter(|e| e.method == "DELETE" && e.status == 202)
        .filter_map(|e| e.path.rsplit('/').next().map(str::to_owned))
        .collect();
    let at = |d: &str| deleted.iter().position(|x| x == d);
    let mut checked = 0;
    for (root, after) in &below {
        for d in after {
            if let Some(child) = at(d) {
                let parent = at(root);
                assert!(
                    parent.is_some_and(|p| p < child),
                    "{d} was deleted before the image above it, {root}"
                );
                checked += 1;
            }
        }
    }
    eprintln!("prune: {checked} deletes of children and signatures, each after its image's");
    let (violations, polls) = watch.join().unwrap();
    eprintln!(
        "prune: {rounds} rounds in {:?}: {hits} SIGKILLs landed mid-run; the watcher listed the repository {polls} times; {} dangling tags seen",
        started.elapsed(),
        violations.len()
    );
    assert!(violations.is_empty(), "dangling tags: {violations:?}");
}
