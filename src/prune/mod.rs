//! prune: `ferry prune` — reads every repository a retention policy names, gathers what the environments protect there, decides with [`crate::retention::plan`], then deletes: tags first, then manifests (an index before its children, an image before its attachments), re-reading the environments' tags right before each delete.
//!
//! Order of one repository:
//! 1. Protections, before anything is listed: for every environment that promotes into or
//!    from the repository, the digest its tag names at each of its targets, the images of its
//!    last `rollback_window` history records, its `protect` patterns and its own tags. An
//!    environment that cannot be read stops the repository's prune (nothing is deleted on a
//!    guess).
//! 2. The listing: every tag (a HEAD each), every index read for its children, attachment tags
//!    and fallback indexes for what hangs off each image, the referrers API where there is one,
//!    untagged manifests where the registry can list them, creation times where a rule needs
//!    them.
//! 3. The plan (pure), printed.
//! 4. Deletes, unless `--dry-run`: tags, then manifests parents first. Before each, the
//!    environments' tags in this repository are read again; a manifest one of them now names
//!    (or holds below it) is kept and reported.
//!
//! Killed at any point, no tag is left naming a deleted manifest: a tag goes before its
//! manifest (or with it, where the registry deletes the tags of a deleted manifest), and an
//! index before its children. Attachment tags left behind by an interrupted run name a gone
//! subject; the next run finds and deletes them.

pub mod delete;
#[cfg(test)]
mod orchestration;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::copy::Client;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::history;
use crate::manifest::{is_index_type, Manifest};
use crate::mirror::plan::{shard_of, Shard};
use crate::pattern::Pattern;
use crate::policy::retention::RetentionPolicy;
use crate::policy::{EnvPolicy, Policies};
use crate::reference::{ImageRef, Tag};
use crate::referrers::is_attachment_tag;
use crate::registry::{ManifestRef, RegistryError, Repo};
use crate::retention::{self, ManifestInfo, Plan, Protections, Rules, TagInfo};
use delete::Deleter;

/// Tags read, manifests read and deletes sent at once per repository.
pub const DEFAULT_PARALLEL: usize = 8;
/// The tag pattern of history ledgers: never pruned.
const LEDGER_TAGS: &str = "ferry-history-*";

/// What one `ferry prune` runs.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Retention policies by name; empty: every one.
    pub names: Vec<String>,
    /// Plan and print; delete nothing.
    pub dry_run: bool,
    /// Only the repositories this shard owns (a stable hash of `registry/repository`).
    pub shard: Option<Shard>,
    /// Requests in flight per repository.
    pub parallel: usize,
    /// The time rules are judged at.
    pub now: SystemTime,
}

/// A whole run.
#[derive(Debug, Serialize)]
pub struct PruneReport {
    /// Nothing was deleted on purpose.
    pub dry_run: bool,
    /// The shard, when the run was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// One entry per repository, in policy order.
    pub repositories: Vec<RepoReport>,
}

/// One repository's prune.
#[derive(Debug, Serialize)]
pub struct RepoReport {
    /// The retention policy.
    pub policy: String,
    /// `registry/repository`.
    pub repository: String,
    /// How deletes are sent here.
    pub deletes_by: &'static str,
    /// Tags listed.
    pub tags_listed: usize,
    /// The decisions.
    pub plan: Plan,
    /// Tags and manifests deleted (not counting those already gone, nor tags the registry
    /// removed with their manifest).
    pub deleted: Vec<String>,
    /// Deletes not sent, and why (an environment moved onto it, the registry cannot).
    pub skipped: Vec<Skipped>,
    /// Deletes that failed.
    pub failed: Vec<Skipped>,
    /// Why the repository was not pruned at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Untagged manifests could not be listed here (the OCI API lists tags only).
    pub untagged_listed: bool,
    /// Requests sent to the registry and its APIs.
    pub requests: u64,
    /// Of those, requests to the registry's own API (ECR, GitHub Packages, Docker Hub).
    pub api_requests: u64,
}

/// A delete not done, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// A tag or a digest.
    pub what: String,
    /// Why.
    pub why: String,
}

impl PruneReport {
    /// Repositories that failed, and failed deletes.
    pub fn failures(&self) -> usize {
        self.repositories
            .iter()
            .map(|r| r.failed.len() + usize::from(r.error.is_some()))
            .sum()
    }
}

/// Runs `ferry prune`.
pub async fn run(
    policies: &Policies,
    client: Arc<Client>,
    options: &PruneOptions,
) -> Result<PruneReport> {
    let chosen: Vec<&RetentionPolicy> = if options.names.is_empty() {
        policies.retentions.values().collect()
    } else {
        options
            .names
            .iter()
            .map(|n| {
                policies.retentions.get(n).ok_or_else(|| {
                    Error::Usage(format!(
                        "no retention policy named {n:?} (known: {})",
                        known(policies)
                    ))
                })
            })
            .collect::<Result<_>>()?
    };
    if chosen.is_empty() {
        return Err(Error::Usage(format!(
            "no retention policy (`kind: retention`) in {}",
            policies.dir.display()
        )));
    }
    let api_endpoints: HashMap<String, String> = policies
        .registries
        .iter()
        .filter_map(|(n, r)| Some((n.clone(), r.api_endpoint.clone()?)))
        .collect();
    let mut repositories = Vec::new();
    for policy in chosen {
        for r in &policy.repositories {
            let name = r.repository_name();
            if options
                .shard
                .is_some_and(|s| shard_of(&name, s.count) != s.index)
            {
                continue;
            }
            let one = RepoPrune {
                policies,
                client: &client,
                api_endpoints: &api_endpoints,
                options,
                rules: &policy.rules,
                target: r,
            };
            let mut report = one.run().await;
            report.policy = policy.name.clone();
            repositories.push(report);
        }
    }
    Ok(PruneReport {
        dry_run: options.dry_run,
        shard: options.shard,
        repositories,
    })
}

fn known(policies: &Policies) -> String {
    let names: Vec<&str> = policies.retentions.keys().map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// One repository's prune: its inputs.
struct RepoPrune<'a> {
    policies: &'a Policies,
    client: &'a Arc<Client>,
    api_endpoints: &'a HashMap<String, String>,
    options: &'a PruneOptions,
    rules: &'a Rules,
    target: &'a ImageRef,
}

/// What the listing found.
#[derive(Default)]
struct Listing {
    tags: Vec<TagInfo>,
    manifests: BTreeMap<Digest, ManifestInfo>,
    absent: BTreeSet<Digest>,
    untagged_listed: bool,
}

impl Listing {
    /// For each manifest, the manifests that list it or that it is attached to.
    fn parents(&self) -> HashMap<&Digest, Vec<&Digest>> {
        let mut out: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for m in self.manifests.values() {
            for c in m.children.iter().chain(&m.attachments) {
                out.entry(c).or_default().push(&m.digest);
            }
        }
        out
    }
}

/// An environment's tag in this repository, read again before each delete.
struct Watch {
    tag: Tag,
    env: String,
}

impl RepoPrune<'_> {
    async fn run(&self) -> RepoReport {
        let name = self.target.repository_name();
        let mut report = RepoReport {
            policy: String::new(),
            repository: name.clone(),
            deletes_by: "",
            tags_listed: 0,
            plan: Plan::default(),
            deleted: Vec::new(),
            skipped: Vec::new(),
            failed: Vec::new(),
            error: None,
            untagged_listed: false,
            requests: 0,
            api_requests: 0,
        };
        let repo = match self.client.open(self.target, false) {
            Ok(r) => r,
            Err(e) => {
                report.error = Some(e.to_string());
                return report;
            }
        };
        let deleter =
            Deleter::open(self.client, self.api_endpoints, self.target, repo.clone()).await;
        report.deletes_by = deleter.describe();
        let api_before = deleter.api_requests();
        let outcome = self.prune(&repo, &deleter, &mut report).await;
        if let Err(e) = outcome {
            report.error = Some(e);
        }
        report.api_requests = deleter.api_requests() - api_before;
        report.requests = repo.stats().requests + report.api_requests;
        report
    }

    async fn prune(
        &self,
        repo: &Arc<dyn Repo>,
        deleter: &Deleter,
        report: &mut RepoReport,
    ) -> std::result::Result<(), String> {
        let (protections, watches) = self.protections().await?;
        let listing = self
            .list(repo, deleter)
            .await
            .map_err(|e| format!("listing failed, nothing deleted: {e}"))?;
        report.tags_listed = listing.tags.len();
        report.untagged_listed = listing.untagged_listed;
        let manifests: Vec<ManifestInfo> = listing.manifests.values().cloned().collect();
        let plan = retention::plan(
            self.rules,
            &protections,
            &listing.tags,
            &manifests,
            &listing.absent,
            self.options.now,
        );
        report.plan = plan;
        if self.options.dry_run {
            return Ok(());
        }
        let guard = Guard {
            repo: repo.clone(),
            watches,
            below: Mutex::new(
                listing
                    .manifests
                    .values()
                    .map(|m| {
                        (
                            m.digest.clone(),
                            m.children.iter().chain(&m.attachments).cloned().collect(),
                        )
                    })
                    .collect(),
            ),
        };
        if deleter.batch() > 1 {
            self.delete_batched(deleter, &guard, &listing, report).await;
        } else {
            self.delete(deleter, &guard, &listing, report).await;
        }
        Ok(())
    }

    /// What no rule may delete here, and the environment tags to read again before deletes.
    async fn protections(&self) -> std::result::Result<(Protections, Vec<Watch>), String> {
        let here = self.target.repository_name();
        let mut p = Protections {
            digests: BTreeMap::new(),
            tags: vec![Pattern::parse(LEDGER_TAGS).expect("a valid pattern")],
        };
        let mut watches = Vec::new();
        let mut reads = Vec::new();
        for env in self.policies.environments.values() {
            for image in &env.images {
                let is_target = image
                    .targets
                    .iter()
                    .any(|t| t.image().repository_name() == here);
                let is_source = image.source.repository_name() == here;
                if !is_target && !is_source {
                    continue;
                }
                if is_target {
                    p.tags.extend(env.protect.iter().cloned());
                    p.tags.push(
                        Pattern::parse(env.env_tag().as_str())
                            .expect("environment names are patterns"),
                    );
                    watches.push(Watch {
                        tag: env.env_tag(),
                        env: env.environment.to_string(),
                    });
                }
                reads.push(self.environment(env, &image.name, &image.targets));
            }
        }
        for found in futures::future::join_all(reads).await {
            for (d, why) in found? {
                p.digests.entry(d).or_insert(why);
            }
        }
        Ok((p, watches))
    }

    /// What one environment's image runs at its targets, and its rollback window.
    async fn environment(
        &self,
        env: &EnvPolicy,
        image: &str,
        targets: &[crate::policy::Target],
    ) -> std::result::Result<Vec<(Digest, String)>, String> {
        let name = env.environment.as_str();
        let fail = |t: &str, e: &dyn std::fmt::Display| {
            format!("cannot read what {name} protects at {t}, nothing deleted: {e}")
        };
        let mut repos = Vec::new();
        for t in targets {
            repos.push(
                self.client
                    .open(t.image(), false)
                    .map_err(|e| fail(&t.image().repository_name(), &e))?,
            );
        }
        let tag = ManifestRef::Tag(env.env_tag());
        let heads = futures::future::join_all(repos.iter().map(|r| r.manifest_head(&tag))).await;
        let mut out = Vec::new();
        for (r, h) in repos.iter().zip(heads) {
            match h {
                Ok(Some(info)) => out.push((info.digest, format!("{name} runs it"))),
                Ok(None) => {}
                Err(e) => return Err(fail(&r.name(), &e)),
            }
        }
        let (records, errors) = history::read_all(&repos, &env.environment).await;
        if let Some(e) = errors.first() {
            return Err(fail("its history", e));
        }
        let window = records.iter().rev().take(env.rollback_window);
        for r in window {
            if let Some(d) = r.digest_of(image) {
                out.push((d.clone(), format!("{name}'s rollback window")));
            }
        }
        Ok(out)
    }

    /// Everything in the repository the plan needs.
    async fn list(
        &self,
        repo: &Arc<dyn Repo>,
        deleter: &Deleter,
    ) -> std::result::Result<Listing, RegistryError> {
        let par = self.options.parallel.max(1);
        let names = repo.tags_list().await?;
        let heads: Vec<(Tag, Option<crate::registry::ManifestInfo>)> = stream::iter(names)
            .map(|t| {
                let repo = repo.clone();
                async move {
                    let h = repo.manifest_head(&ManifestRef::Tag(t.clone())).await;
                    h.map(|h| (t, h))
                }
            })
            .buffered(par)
            .try_collect()
            .await?;
        let mut listing = Listing::default();
        let mut media: HashMap<Digest, Option<String>> = HashMap::new();
        for (tag, head) in heads {
            // Gone between the listing and the HEAD: another prune, or a move.
            let Some(h) = head else { continue };
            media
                .entry(h.digest.clone())
                .or_insert(h.media_type.clone());
            listing.tags.push(TagInfo {
                tag,
                digest: h.digest,
                created: None,
            });
        }
        // Untagged manifests, where the registry lists them.
        let untagged = deleter.untagged().await?;
        listing.untagged_listed = untagged.is_some();
        let mut created: HashMap<Digest, Option<SystemTime>> = HashMap::new();
        for (d, t) in untagged.into_iter().flatten() {
            media.entry(d.clone()).or_insert(None);
            created.insert(d, t);
        }
        // Every manifest, read by digest where it may list children; level by level, so
        // children of children are found too.
        let mut pending: Vec<(Digest, Option<String>)> = media.into_iter().collect();
        let mut read: HashMap<Digest, Manifest> = HashMap::new();
        while !pending.is_empty() {
            let batch: Vec<(Digest, Option<String>)> = std::mem::take(&mut pending)
                .into_iter()
                .filter(|(d, _)| !listing.manifests.contains_key(d))
                .collect();
            let found: Vec<(Digest, Option<Manifest>)> = stream::iter(batch)
                .map(|(d, media_type)| {
                    let repo = repo.clone();
                    async move {
                        let needs_body = media_type.as_deref().is_none_or(is_index_type);
                        if !needs_body {
                            return Ok((d, None));
                        }
                        match repo
                            .manifest_get(&ManifestRef::Digest(d.clone()), None)
                            .await
                        {
                            Ok(m) => Ok((d, Some(m))),
                            Err(e) if e.is_not_found() => Ok((d, None)),
                            Err(e) => Err(e),
                        }
                    }
                })
                .buffered(par)
                .try_collect()
                .await?;
            for (d, m) in found {
                let children: Vec<Digest> = m
                    .as_ref()
                    .map(|m| m.children.iter().map(|c| c.digest.clone()).collect())
                    .unwrap_or_default();
                for c in &children {
                    if !listing.manifests.contains_key(c) {
                        // A child's type is in its descriptor; reading it only to find
                        // grandchildren would be wasted on image manifests.
                        let t = m
                            .as_ref()
                            .and_then(|m| m.children.iter().find(|x| &x.digest == c))
                            .map(|x| x.media_type.clone());
                        pending.push((c.clone(), t));
                    }
                }
                listing.manifests.insert(
                    d.clone(),
                    ManifestInfo {
                        digest: d.clone(),
                        created: created.get(&d).copied().flatten(),
                        children,
                        attachments: Vec::new(),
                    },
                );
                if let Some(m) = m {
                    read.insert(d, m);
                }
            }
        }
        // Attachments: cosign and fallback tags, and the entries of each fallback index.
        let mut attached: Vec<(Digest, Digest)> = Vec::new();
        for t in &listing.tags {
            let Some(subject) = subject_of(t.tag.as_str()) else {
                continue;
            };
            attached.push((subject.clone(), t.digest.clone()));
            if let Some(index) = read.get(&t.digest) {
                for c in &index.children {
                    attached.push((subject.clone(), c.digest.clone()));
                }
            }
        }
        // The referrers API, where the registry has one (asked once when it has none).
        let attachments: HashSet<&Digest> = attached.iter().map(|(_, a)| a).collect();
        let subjects: Vec<Digest> = listing
            .manifests
            .keys()
            .filter(|d| !attachments.contains(d))
            .cloned()
            .collect();
        let referrers: Vec<(Digest, Option<Manifest>)> = stream::iter(subjects)
            .map(|d| {
                let repo = repo.clone();
                async move { repo.referrers(&d).await.map(|r| (d, r)) }
            })
            .buffered(par)
            .try_collect()
            .await?;
        for (subject, index) in referrers {
            for c in index.iter().flat_map(|i| &i.children) {
                attached.push((subject.clone(), c.digest.clone()));
                listing
                    .manifests
                    .entry(c.digest.clone())
                    .or_insert_with(|| ManifestInfo {
                        digest: c.digest.clone(),
                        created: None,
                        children: Vec::new(),
                        attachments: Vec::new(),
                    });
            }
        }
        for (subject, a) in attached {
            match listing.manifests.get_mut(&subject) {
                Some(m) if !m.attachments.contains(&a) => m.attachments.push(a),
                Some(_) => {}
                None => {
                    listing.absent.insert(subject);
                }
            }
        }
        // A subject not listed may still be there (untagged, where untagged manifests cannot
        // be listed): only one the registry says is gone counts as absent.
        let unknown: Vec<Digest> = std::mem::take(&mut listing.absent).into_iter().collect();
        let gone: Vec<Option<Digest>> = stream::iter(unknown)
            .map(|d| {
                let repo = repo.clone();
                async move {
                    repo.manifest_head(&ManifestRef::Digest(d.clone()))
                        .await
                        .map(|h| h.is_none().then_some(d))
                }
            })
            .buffered(par)
            .try_collect()
            .await?;
        listing.absent = gone.into_iter().flatten().collect();
        // Creation times, only where a rule ranks or ages by them.
        let needs_times = self.rules.max_age.is_some()
            || (self.rules.keep_last.is_some() && {
                let others = listing
                    .tags
                    .iter()
                    .filter(|t| {
                        !is_attachment_tag(t.tag.as_str())
                            && crate::pattern::version_of(t.tag.as_str()).is_none()
                    })
                    .count();
                others > self.rules.keep_last.unwrap_or(0)
            });
        if needs_times {
            let want: Vec<Digest> = listing
                .tags
                .iter()
                .filter(|t| !is_attachment_tag(t.tag.as_str()))
                .filter(|t| {
                    self.rules.consider.is_empty()
                        || self
                            .rules
                            .consider
                            .iter()
                            .any(|p| p.matches(t.tag.as_str()))
                })
                .map(|t| t.digest.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|d| !created.contains_key(d))
                .collect();
            let times: Vec<(Digest, Option<SystemTime>)> = stream::iter(want)
                .map(|d| {
                    let repo = repo.clone();
                    let known = read.get(&d).cloned();
                    async move {
                        let m = match known {
                            Some(m) => Some(m),
                            None => repo
                                .manifest_get(&ManifestRef::Digest(d.clone()), None)
                                .await
                                .ok(),
                        };
                        let t = match m {
                            Some(m) => crate::mirror::created_of(&*repo, m).await,
                            None => None,
                        };
                        (d, t)
                    }
                })
                .buffered(par)
                .collect()
                .await;
            created.extend(times);
        }
        for t in &mut listing.tags {
            t.created = created.get(&t.digest).copied().flatten();
        }
        for m in listing.manifests.values_mut() {
            if m.created.is_none() {
                m.created = created.get(&m.digest).copied().flatten();
            }
        }
        Ok(listing)
    }

    /// Sends the plan's deletes: tags, then manifests parents first.
    async fn delete(
        &self,
        deleter: &Deleter,
        guard: &Guard,
        listing: &Listing,
        report: &mut RepoReport,
    ) {
        let par = self.options.parallel.max(1);
        let plan = report.plan.clone();
        let digest_of: HashMap<&Tag, &Digest> =
            listing.tags.iter().map(|t| (&t.tag, &t.digest)).collect();
        let going: HashSet<&Digest> = plan.manifest_deletes().collect();
        // Tag deletes the registry cannot do alone; learnt from the first refusal.
        let no_tag_deletes = std::sync::atomic::AtomicBool::new(false);
        let done: Mutex<Vec<String>> = Mutex::default();
        let skipped: Mutex<Vec<Skipped>> = Mutex::default();
        let failed: Mutex<Vec<Skipped>> = Mutex::default();
        let skip = |list: &Mutex<Vec<Skipped>>, what: String, why: String| {
            list.lock().expect("report").push(Skipped { what, why });
        };

        // Manifests whose tag could not be deleted: they stay (their tag would dangle).
        let failed_parents: Mutex<HashSet<Digest>> = Mutex::default();
        // Digests a staying tag names: where deleting a tag deletes an image left untagged
        // (ECR), a tag is the last one only when none of these names its image.
        let staying: HashSet<&Digest> = plan
            .tags
            .iter()
            .filter(|t| !t.delete)
            .filter_map(|t| digest_of.get(&t.what).copied())
            .collect();

        // 1. Tags that are not attachment tags (those go with their image, below).
        let tags: Vec<Tag> = plan
            .tag_deletes()
            .filter(|t| !is_attachment_tag(t.as_str()))
            .cloned()
            .collect();
        let one_tag = |tag: Tag| {
            let (done, skipped, failed) = (&done, &skipped, &failed);
            let (no_tag_deletes, failed_parents) = (&no_tag_deletes, &failed_parents);
            let digest = digest_of.get(&tag).copied();
            let goes_with_manifest = digest.is_some_and(|d| going.contains(d));
            let takes_a_kept_image = deleter.last_tag_takes_the_image()
                && digest.is_some_and(|d| !going.contains(d) && !staying.contains(d));
            async move {
                if takes_a_kept_image {
                    return skip(
                        skipped,
                        tag.to_string(),
                        "deleting an image's last tag deletes the image here, and the image stays"
                            .into(),
                    );
                }
                if no_tag_deletes.load(std::sync::atomic::Ordering::Relaxed) {
                    if !goes_with_manifest {
                        skip(
                            skipped,
                            tag.to_string(),
                            "this registry cannot delete a tag alone".into(),
                        );
                    }
                    return;
                }
                if let Some(d) = digest {
                    match guard.claimed(d).await {
                        Ok(None) => {}
                        Ok(Some(why)) => return skip(skipped, tag.to_string(), why),
                        Err(e) => return skip(failed, tag.to_string(), e.to_string()),
                    }
                }
                match deleter.delete_tag(&tag).await {
                    Ok(true) => done.lock().expect("report").push(tag.to_string()),
                    Ok(false) => {}
                    Err(RegistryError::Unsupported { detail, .. }) => {
                        no_tag_deletes.store(true, std::sync::atomic::Ordering::Relaxed);
                        if !goes_with_manifest {
                            skip(
                                skipped,
                                tag.to_string(),
                                format!("this registry cannot delete a tag alone ({detail})"),
                            );
                        }
                    }
                    Err(e) => {
                        if let Some(d) = digest {
                            failed_parents.lock().expect("report").insert(d.clone());
                        }
                        skip(failed, tag.to_string(), e.to_string())
                    }
                }
            }
        };
        // The first alone: a registry that cannot delete a tag alone says so once, not once
        // per request in flight.
        let mut tags = tags.into_iter();
        if let Some(first) = tags.next() {
            one_tag(first).await;
        }
        stream::iter(tags).for_each_concurrent(par, one_tag).await;

        // 2. Manifests, parents before children, each with the attachment tags naming it.
        let attachment_tags: HashMap<Digest, Vec<Tag>> = plan
            .tag_deletes()
            .filter(|t| is_attachment_tag(t.as_str()))
            .filter_map(|t| Some((digest_of.get(t).copied()?.clone(), t.clone())))
            .fold(HashMap::new(), |mut m, (d, t)| {
                m.entry(d).or_insert_with(Vec::new).push(t);
                m
            });
        // Manifest deletes the registry cannot do at all; learnt from the first refusal.
        let no_manifest_deletes = std::sync::atomic::AtomicBool::new(false);
        let parents_of = listing.parents();
        let one_manifest = |d: Digest| {
            let (done, skipped, failed) = (&done, &skipped, &failed);
            let (failed_parents, no_tag_deletes) = (&failed_parents, &no_tag_deletes);
            let no_manifest_deletes = &no_manifest_deletes;
            let tags = attachment_tags.get(&d).cloned().unwrap_or_default();
            let parents: Vec<Digest> = parents_of
                .get(&d)
                .into_iter()
                .flatten()
                .map(|p| (*p).clone())
                .collect();
            async move {
                if no_manifest_deletes.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                // A parent that stayed keeps what is under it; a manifest whose tag
                // could not be deleted stays with it.
                if failed_parents.lock().expect("report").contains(&d) {
                    return skip(
                        skipped,
                        d.to_string(),
                        "its tag could not be deleted".into(),
                    );
                }
                if parents
                    .iter()
                    .any(|p| failed_parents.lock().expect("report").contains(p))
                {
                    failed_parents.lock().expect("report").insert(d.clone());
                    return skip(skipped, d.to_string(), "its parent was not deleted".into());
                }
                match guard.claimed(&d).await {
                    Ok(None) => {}
                    Ok(Some(why)) => {
                        failed_parents.lock().expect("report").insert(d.clone());
                        return skip(skipped, d.to_string(), why);
                    }
                    Err(e) => {
                        failed_parents.lock().expect("report").insert(d.clone());
                        return skip(failed, d.to_string(), e.to_string());
                    }
                }
                if !no_tag_deletes.load(std::sync::atomic::Ordering::Relaxed) {
                    for t in &tags {
                        match deleter.delete_tag(t).await {
                            Ok(true) => done.lock().expect("report").push(t.to_string()),
                            Ok(false) => {}
                            Err(RegistryError::Unsupported { .. }) => {
                                no_tag_deletes.store(true, std::sync::atomic::Ordering::Relaxed);
                                break;
                            }
                            Err(e) => {
                                failed_parents.lock().expect("report").insert(d.clone());
                                return skip(failed, t.to_string(), e.to_string());
                            }
                        }
                    }
                }
                match deleter.delete_manifest(&d).await {
                    Ok(true) => done.lock().expect("report").push(d.to_string()),
                    Ok(false) => {}
                    Err(e @ RegistryError::Unsupported { .. }) => {
                        // Said once, as a skip: the registry cannot, and every other
                        // manifest would be refused the same way.
                        if !no_manifest_deletes.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            skip(skipped, "manifests".into(), e.to_string());
                        }
                    }
                    Err(e) => {
                        failed_parents.lock().expect("report").insert(d.clone());
                        skip(failed, d.to_string(), e.to_string());
                    }
                }
            }
        };
        // The first manifest delete alone: a registry that cannot delete says so once.
        let mut probed = false;
        for level in levels(&plan, &listing.manifests) {
            let mut level = level.into_iter();
            if !probed {
                if let Some(first) = level.next() {
                    one_manifest(first).await;
                    probed = true;
                }
            }
            stream::iter(level)
                .for_each_concurrent(par, one_manifest)
                .await;
        }
        report.deleted = done.into_inner().expect("report");
        report.skipped = skipped.into_inner().expect("report");
        report.failed = failed.into_inner().expect("report");
    }
}

impl RepoPrune<'_> {
    /// [`RepoPrune::delete`] where the registry takes many deletes in one request (ECR): the
    /// same order, in batches, the environment tags read again right before each batch. A
    /// digest delete takes the image's tags with it there, attachment tags included.
    async fn delete_batched(
        &self,
        deleter: &Deleter,
        guard: &Guard,
        listing: &Listing,
        report: &mut RepoReport,
    ) {
        let plan = report.plan.clone();
        let digest_of: HashMap<&Tag, &Digest> =
            listing.tags.iter().map(|t| (&t.tag, &t.digest)).collect();
        let going: HashSet<&Digest> = plan.manifest_deletes().collect();
        let staying: HashSet<&Digest> = plan
            .tags
            .iter()
            .filter(|t| !t.delete)
            .filter_map(|t| digest_of.get(&t.what).copied())
            .collect();
        let parents_of = listing.parents();
        let mut held: HashSet<Digest> = HashSet::new();
        // 1. Tags of images that stay under another tag; the others go with their image.
        let mut tags = Vec::new();
        for t in plan
            .tag_deletes()
            .filter(|t| !is_attachment_tag(t.as_str()))
        {
            match digest_of.get(t).copied() {
                Some(d) if going.contains(d) => {}
                Some(d) if deleter.last_tag_takes_the_image() && !staying.contains(d) => {
                    report.skipped.push(Skipped {
                        what: t.to_string(),
                        why: "deleting an image's last tag deletes the image here, and the image stays"
                            .into(),
                    });
                }
                Some(d) => tags.push((ManifestRef::Tag(t.clone()), d.clone())),
                None => {}
            }
        }
        self.send_batches(deleter, guard, tags, &mut held, report)
            .await;
        // 2. Manifests, parents first.
        for level in levels(&plan, &listing.manifests) {
            let mut wave = Vec::new();
            for d in level {
                let parent_held = parents_of
                    .get(&d)
                    .is_some_and(|ps| ps.iter().any(|p| held.contains(*p)));
                if parent_held {
                    report.skipped.push(Skipped {
                        what: d.to_string(),
                        why: "its parent was not deleted".into(),
                    });
                    held.insert(d);
                } else {
                    wave.push((ManifestRef::Digest(d.clone()), d));
                }
            }
            self.send_batches(deleter, guard, wave, &mut held, report)
                .await;
        }
    }

    /// Sends `items` (a reference, and the manifest it stands for) in batches; what an
    /// environment now holds, or what fails, joins `held`.
    async fn send_batches(
        &self,
        deleter: &Deleter,
        guard: &Guard,
        items: Vec<(ManifestRef, Digest)>,
        held: &mut HashSet<Digest>,
        report: &mut RepoReport,
    ) {
        for chunk in items.chunks(deleter.batch()) {
            let digests: Vec<Digest> = chunk.iter().map(|(_, d)| d.clone()).collect();
            let claimed = match guard.claimed_many(&digests).await {
                Ok(c) => c,
                Err(e) => {
                    for (r, d) in chunk {
                        held.insert(d.clone());
                        report.failed.push(Skipped {
                            what: r.to_string(),
                            why: e.to_string(),
                        });
                    }
                    continue;
                }
            };
            let mut send = Vec::new();
            for (r, d) in chunk {
                match claimed.get(d) {
                    Some(why) => {
                        held.insert(d.clone());
                        report.skipped.push(Skipped {
                            what: r.to_string(),
                            why: why.clone(),
                        });
                    }
                    None => send.push((r.clone(), d.clone())),
                }
            }
            let refs: Vec<ManifestRef> = send.iter().map(|(r, _)| r.clone()).collect();
            let results = deleter.delete_many(&refs).await;
            for ((r, d), result) in send.into_iter().zip(results) {
                match result {
                    Ok(true) => report.deleted.push(r.to_string()),
                    Ok(false) => {}
                    Err(e) => {
                        held.insert(d);
                        report.failed.push(Skipped {
                            what: r.to_string(),
                            why: e.to_string(),
                        });
                    }
                }
            }
        }
    }
}

/// The manifests to delete in waves: each after every deleted manifest that lists it or that
/// it is attached to.
fn levels(plan: &Plan, manifests: &BTreeMap<Digest, ManifestInfo>) -> Vec<Vec<Digest>> {
    let going: BTreeSet<&Digest> = plan.manifest_deletes().collect();
    let mut parents: BTreeMap<&Digest, usize> = going.iter().map(|d| (*d, 0)).collect();
    for m in manifests.values().filter(|m| going.contains(&m.digest)) {
        for c in m.children.iter().chain(&m.attachments) {
            if let Some(n) = parents.get_mut(c) {
                *n += 1;
            }
        }
    }
    let mut out = Vec::new();
    let mut ready: Vec<&Digest> = parents
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(d, _)| *d)
        .collect();
    let mut placed = 0;
    while !ready.is_empty() {
        placed += ready.len();
        let mut next = Vec::new();
        for d in &ready {
            if let Some(m) = manifests.get(*d) {
                for c in m.children.iter().chain(&m.attachments) {
                    if let Some(n) = parents.get_mut(c) {
                        *n -= 1;
                        if *n == 0 {
                            next.push(c);
                        }
                    }
                }
            }
        }
        out.push(ready.into_iter().cloned().collect());
        next.sort();
        next.dedup();
        ready = next;
    }
    // A cycle (a manifest attached to its own attachment) would leave some unplaced: they
    // stay, which is the safe way to be wrong.
    debug_assert!(placed <= going.len());
    out
}

/// The environments' tags in this repository, read again right before each delete.
struct Guard {
    repo: Arc<dyn Repo>,
    watches: Vec<Watch>,
    /// What is below each manifest (children, attachments), as listed or read since.
    below: Mutex<HashMap<Digest, Vec<Digest>>>,
}

impl Guard {
    /// `Some(why)` when an environment's tag now names `d`, or something `d` is below.
    async fn claimed(&self, d: &Digest) -> std::result::Result<Option<String>, RegistryError> {
        Ok(self.claimed_many(std::slice::from_ref(d)).await?.remove(d))
    }

    /// [`Guard::claimed`] for many digests, the environment tags read once.
    async fn claimed_many(
        &self,
        ds: &[Digest],
    ) -> std::result::Result<HashMap<Digest, String>, RegistryError> {
        let mut out = HashMap::new();
        if self.watches.is_empty() {
            return Ok(out);
        }
        let heads = futures::future::join_all(self.watches.iter().map(|w| async move {
            self.repo
                .manifest_head(&ManifestRef::Tag(w.tag.clone()))
                .await
        }))
        .await;
        for (w, h) in self.watches.iter().zip(heads) {
            let Some(h) = h? else { continue };
            for d in ds {
                if !out.contains_key(d) && self.holds(&h.digest, d).await? {
                    out.insert(
                        d.clone(),
                        format!(
                            "{} moved to it during the prune ({} now names {})",
                            w.env, w.tag, h.digest
                        ),
                    );
                }
            }
        }
        Ok(out)
    }

    /// True when `root` is `d` or has `d` below it.
    async fn holds(&self, root: &Digest, d: &Digest) -> std::result::Result<bool, RegistryError> {
        let mut queue = vec![root.clone()];
        let mut seen = HashSet::new();
        while let Some(x) = queue.pop() {
            if &x == d {
                return Ok(true);
            }
            if !seen.insert(x.clone()) {
                continue;
            }
            let known = self.below.lock().expect("guard").get(&x).cloned();
            let below = match known {
                Some(b) => b,
                None => {
                    // A digest the listing never saw: an environment moved onto something new.
                    let b: Vec<Digest> = match self
                        .repo
                        .manifest_get(&ManifestRef::Digest(x.clone()), None)
                        .await
                    {
                        Ok(m) => m.children.iter().map(|c| c.digest.clone()).collect(),
                        Err(e) if e.is_not_found() => Vec::new(),
                        Err(e) => return Err(e),
                    };
                    self.below
                        .lock()
                        .expect("guard")
                        .insert(x.clone(), b.clone());
                    b
                }
            };
            queue.extend(below);
        }
        Ok(false)
    }
}

/// The digest an attachment tag (`sha256-HEX`, `sha256-HEX.sig`) names.
fn subject_of(tag: &str) -> Option<Digest> {
    if !is_attachment_tag(tag) {
        return None;
    }
    let hex = tag.strip_prefix("sha256-")?.split('.').next()?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn info(n: u8, children: &[u8], attachments: &[u8]) -> ManifestInfo {
        ManifestInfo {
            digest: d(n),
            created: None,
            children: children.iter().map(|c| d(*c)).collect(),
            attachments: attachments.iter().map(|c| d(*c)).collect(),
        }
    }

    #[test]
    fn parents_go_before_children_and_images_before_their_attachments() {
        // 1 is an index of 2 and 3 with signature 4; 5 is an index sharing 3; only 1's
        // family and 6 go.
        let manifests: BTreeMap<Digest, ManifestInfo> = [
            info(1, &[2, 3], &[4]),
            info(2, &[], &[]),
            info(3, &[], &[]),
            info(4, &[], &[]),
            info(5, &[3], &[]),
            info(6, &[], &[]),
        ]
        .into_iter()
        .map(|m| (m.digest.clone(), m))
        .collect();
        let plan = Plan {
            tags: Vec::new(),
            manifests: [1, 2, 4, 6]
                .iter()
                .map(|n| retention::Decision {
                    what: d(*n),
                    delete: true,
                    why: retention::Why::TagsGo,
                })
                .collect(),
        };
        let waves = levels(&plan, &manifests);
        let mut first = waves[0].clone();
        first.sort();
        let mut want = vec![d(1), d(6)];
        want.sort();
        assert_eq!(first, want);
        let mut second = waves[1].clone();
        second.sort();
        let mut want = vec![d(2), d(4)];
        want.sort();
        assert_eq!(second, want);
        assert_eq!(waves.len(), 2);
    }
}
