//! promote: carries out promotions, rollbacks, status and history for an environment — pin, gate, copy everywhere, then flip tags everywhere, then record.
//!
//! Order of a promotion: pin the image to a digest; read every gate (upstream environment,
//! required attestations and signatures, protected tags) before any write; copy content to every target by digest (the copy engine,
//! no tags), with its signatures, attestations and SBOMs; re-check that the source tag did not drift; only then move tags, target by target,
//! reading each back; then append a record to the ledger at every target. A kill at any moment
//! leaves tags either where they were or at complete content.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::cloud::RepoSettings;
use crate::copy::progress::{Observer, Remap};
use crate::copy::tag::write_tag;
use crate::copy::{Client, CopyOptions, Engine, Resolved};
use crate::digest::Digest;
use crate::error::{Cause, Error, ErrorChain, Result, Stage, TargetError};
use crate::gate;
use crate::history::{self, Kind, Record};
use crate::manifest::Manifest;
use crate::outcome::Outcome;
use crate::policy::{EnvPolicy, Environment, Policies, Target};
use crate::reference::{ImageRef, Tag};
use crate::registry::memo::Memo;
use crate::registry::{ManifestRef, RegistryError, Repo};
pub use plan::{TagAction, TagMove, TargetPlan};

/// Tags HEAD-checked at once per target.
const TAG_CONCURRENCY: usize = 8;

/// Policies plus the client that talks to their registries.
pub struct Context {
    /// The loaded policies.
    pub policies: Policies,
    /// Copy options (transport, limits) derived from policies and flags.
    pub options: CopyOptions,
    /// The process's one client, built on first use from `options`: every engine of the
    /// command shares its tokens, connections and registry gates.
    client: std::sync::OnceLock<Arc<Client>>,
}

/// How a promotion runs.
#[derive(Clone, Debug, Default)]
pub struct PromoteOptions {
    /// Plan and print; write nothing.
    pub dry_run: bool,
    /// Override a refused `promote_from` gate, with this reason (recorded).
    pub force_reason: Option<String>,
}

/// What happened to one tag.
#[derive(Clone, Debug, Serialize)]
pub struct TagOutcome {
    /// The planned move.
    #[serde(flatten)]
    pub planned: TagMove,
    /// What happened to it: `None` until it is written (or found already there), so always in
    /// a dry run and after an earlier failure. JSON keeps its old shape: `done`, true once the
    /// tag names the digest.
    #[serde(rename = "done", serialize_with = "serialize_done")]
    pub outcome: Option<Outcome>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
}

/// `done` in JSON: the tag was written and read back, or already named the digest.
fn serialize_done<S: serde::Serializer>(o: &Option<Outcome>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(matches!(o, Some(Outcome::Copied | Outcome::UpToDate)))
}

/// One target's part of a promotion or rollback.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    /// The target repository.
    pub target: String,
    /// Where the environment tag pointed before.
    pub previous: Option<Digest>,
    /// The copy engine's outcome for content.
    pub content: Outcome,
    /// Tags.
    pub tags: Vec<TagOutcome>,
    /// Rolling version tags held back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<(Tag, String)>,
    /// Signatures, attestations and SBOMs attached to the image, copied with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached: Option<crate::copy::attached::DestAttached>,
    /// What went wrong here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
}

/// The outcome of `ferry promote` or `ferry rollback`.
#[derive(Clone, Debug, Serialize)]
pub struct PromoteReport {
    /// Promote or rollback.
    pub kind: Kind,
    /// The environment.
    pub environment: String,
    /// The source reference (promote) or where the digest was found (rollback).
    pub source: String,
    /// The digest (for a release: the release's, a digest of every image's).
    pub digest: Digest,
    /// A release: each image and its digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ReleaseImage>,
    /// A dry run.
    pub dry_run: bool,
    /// Set when `--force` overrode a gate: the gate's words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forced_gate: Option<String>,
    /// Per target.
    pub targets: Vec<TargetReport>,
    /// The history record written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Record>,
    /// History writes that failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history_errors: Vec<String>,
}

impl PromoteReport {
    /// How many targets failed (content, a tag, or history).
    pub fn failed(&self) -> usize {
        self.targets.iter().filter(|t| t.error.is_some()).count()
    }
}

impl Context {
    /// Policies and the options derived from them; the client is built when first needed.
    pub fn new(policies: Policies, options: CopyOptions) -> Self {
        Context {
            policies,
            options,
            client: std::sync::OnceLock::new(),
        }
    }

    /// Policies and options on a client built elsewhere (tests put in-memory registries in it).
    pub fn with_client(policies: Policies, options: CopyOptions, client: Arc<Client>) -> Self {
        let ctx = Context::new(policies, options);
        ctx.client.set(client).expect("a new context has no client");
        ctx
    }

    /// The process's client (built here, once).
    pub fn client(&self) -> Arc<Client> {
        self.client
            .get_or_init(|| {
                Arc::new(Client::new(
                    &self.options,
                    crate::auth::CredentialStore::from_env(),
                ))
            })
            .clone()
    }

    /// An engine for one step (a check, a copy, a rollback) on the shared client.
    fn engine(&self, dry_run: bool, policy: Option<&EnvPolicy>) -> Engine {
        let mut options = self.options.clone();
        options.dry_run = dry_run;
        if let Some(p) = policy {
            options.platforms = p.platforms.clone();
        }
        Engine::with_client(self.client(), options)
    }

    fn open_targets(
        &self,
        engine: &Engine,
        policy: &EnvPolicy,
        push: bool,
    ) -> Result<Vec<Arc<dyn Repo>>> {
        policy
            .targets
            .iter()
            .map(|t| engine.open(t.image(), push).map_err(|e| target_err(t, e)))
            .collect()
    }

    /// What `policy check` asks the registries: every ECR target's tag immutability against the
    /// tags its environment moves. Policy conflicts are errors; a repository that cannot be
    /// described (no credentials, not created yet) is a warning.
    pub async fn check_registries(&self) -> Result<()> {
        let engine = self.engine(true, None);
        for policy in self
            .policies
            .environments
            .values()
            .flat_map(EnvPolicy::views)
        {
            let policy = &policy;
            match check_mutability(&engine, policy).await {
                Ok(_) => {}
                Err(e @ Error::Policy(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(
                        "{}: could not check the target's tag settings: {}",
                        policy.file.display(),
                        ErrorChain(&e)
                    )
                }
            }
        }
        Ok(())
    }

    /// Parses the IMAGE argument: a full reference in the policy's source repository, or just `:TAG` / `@DIGEST`.
    fn image_ref(&self, policy: &EnvPolicy, image: &str) -> Result<ImageRef> {
        let r = if image.starts_with(':') || image.starts_with('@') {
            ImageRef::parse(&format!("{}{image}", policy.source.repository_name()))?
        } else {
            ImageRef::parse(image)?
        };
        if r.repository_name() != policy.source.repository_name() {
            return Err(Error::Usage(format!(
                "{image} is not from {}'s source {} (see {}){}",
                policy.environment,
                policy.source.repository_name(),
                policy.file.display(),
                shorthand_hint(image)
            )));
        }
        Ok(r.or_latest())
    }

    /// `ferry promote ENV IMAGE`: one image (for a release, `NAME:TAG`; see [`Context::promote_release`]).
    pub async fn promote<P: Observer>(
        &self,
        env: &str,
        image: &str,
        opts: &PromoteOptions,
        progress: &dyn Fn(&[String]) -> P,
    ) -> Result<PromoteReport> {
        self.promote_release(env, &Pick::Images(vec![image.to_owned()]), opts, progress)
            .await
    }

    /// Which image (view) an argument names in a release: `NAME:TAG`, `NAME@DIGEST`, or a full
    /// reference in one image's source repository.
    fn release_ref(&self, policy: &EnvPolicy, arg: &str) -> Result<(usize, ImageRef)> {
        if !policy.release {
            return Ok((0, self.image_ref(policy, arg)?));
        }
        let found = if arg.contains('/') {
            let r = ImageRef::parse(arg)?;
            policy
                .images
                .iter()
                .position(|i| i.source.repository_name() == r.repository_name())
                .map(|k| (k, r))
        } else {
            let cut = arg.find([':', '@']).unwrap_or(arg.len());
            let (name, rest) = arg.split_at(cut);
            match policy.images.iter().position(|i| i.name == name) {
                Some(k) => Some((
                    k,
                    ImageRef::parse(&format!(
                        "{}{rest}",
                        policy.images[k].source.repository_name()
                    ))?,
                )),
                None => None,
            }
        };
        let (k, r) = found.ok_or_else(|| {
            Error::Usage(format!(
                "{arg} is none of {}'s images ({}; see {}): give NAME:TAG or a reference in an image's source",
                policy.environment,
                policy.image_names(),
                policy.file.display()
            ))
        })?;
        Ok((k, r.or_latest()))
    }

    /// What each image of the environment is promoted from, in policy order.
    async fn pick(&self, policy: &EnvPolicy, pick: &Pick) -> Result<Vec<Picked>> {
        let names: Vec<&str> = policy.images.iter().map(|i| i.name.as_str()).collect();
        match pick {
            Pick::Images(args) => {
                if !policy.release && args.len() != 1 {
                    return Err(Error::Usage(format!(
                        "{} promotes one image ({}): give one IMAGE",
                        policy.environment,
                        policy.source.repository_name()
                    )));
                }
                let mut chosen: Vec<Option<ImageRef>> = vec![None; policy.images.len()];
                for arg in args {
                    let (k, r) = self.release_ref(policy, arg)?;
                    if chosen[k].is_some() {
                        return Err(Error::Usage(format!(
                            "{arg}: image {} is named twice",
                            names[k]
                        )));
                    }
                    chosen[k] = Some(r);
                }
                let missing: Vec<&str> = chosen
                    .iter()
                    .zip(&names)
                    .filter(|(c, _)| c.is_none())
                    .map(|(_, n)| *n)
                    .collect();
                if !missing.is_empty() {
                    return Err(Error::Usage(format!(
                        "{} is a release of {}, promoted together: name every image (missing: {}), or give --tag TAG or --from ENV",
                        policy.environment,
                        names.join(", "),
                        missing.join(", ")
                    )));
                }
                Ok(chosen.into_iter().flatten().map(Picked::from).collect())
            }
            Pick::Tag(tag) => policy
                .images
                .iter()
                .map(|i| {
                    let r = ImageRef::parse(&format!("{}:{tag}", i.source.repository_name()))?;
                    Ok(Picked::from(r))
                })
                .collect(),
            Pick::From(up) => {
                let upstream = self.policies.env(up)?;
                let read = policy.images.iter().map(|image| async move {
                    let up_image = upstream_image(policy, upstream, &image.name)?;
                    let states = self.upstream_states(upstream, up_image).await?;
                    let digest = match states.first() {
                        Some((_, Some(d))) if states.iter().all(|(_, o)| o.as_ref() == Some(d)) => {
                            d.clone()
                        }
                        _ => {
                            return Err(Error::Gate(format!(
                                "--from {up}: {} does not run one digest of {} everywhere: {}",
                                up,
                                image.name,
                                states
                                    .iter()
                                    .map(|(t, d)| match d {
                                        Some(d) => format!("{t} has {}", d.short()),
                                        None => format!("{t} has no {up} tag"),
                                    })
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )))
                        }
                    };
                    Ok(Picked {
                        source: image.source.pinned(&digest),
                        upstream: Some((upstream.environment.clone(), states)),
                    })
                });
                futures::future::try_join_all(read).await
            }
        }
    }

    /// Where `upstream`'s environment tag points at each target of one of its images.
    async fn upstream_states(
        &self,
        upstream: &EnvPolicy,
        image: &crate::policy::ImagePolicy,
    ) -> Result<UpstreamStates> {
        let engine = self.engine(true, None);
        let up_tag = upstream.env_tag();
        futures::future::join_all(image.targets.iter().map(|t| {
            let engine = &engine;
            let up_tag = &up_tag;
            async move {
                let repo = engine
                    .open(t.image(), false)
                    .map_err(|e| target_err(t, e))?;
                let d = repo
                    .manifest_head(&ManifestRef::Tag(up_tag.clone()))
                    .await
                    .map_err(|e| target_err(t, e))?;
                Ok::<_, Error>((t.to_string(), d.map(|i| i.digest)))
            }
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()
        .map_err(|e| Error::GateUnreadable {
            environment: upstream.environment.to_string(),
            source: Box::new(e),
        })
    }

    /// One image of a promotion, up to the point where content is copied: pinned, its gates
    /// held, its targets opened and its tags planned. Reads only.
    async fn prepare_image(
        &self,
        policy: &EnvPolicy,
        view: EnvPolicy,
        picked: Picked,
        engine: &Engine,
        opts: &PromoteOptions,
    ) -> Result<Prepared> {
        let source = picked.source;
        // ECR repositories: a policy that moves a tag the repository never lets move stops here.
        let settings = check_mutability(engine, &view).await?;
        // Pin: one read of the root; with platforms, the digest is the filtered index's. The
        // gates and the copy share one discovery: what the gates read, the copy reads from memory.
        let mut resolved = engine.resolve(&source).await?;
        if !view.require.is_empty() {
            resolved.src = Arc::new(Memo::new(resolved.src.clone()));
        }
        let digest = resolved.root.digest.clone();
        tracing::info!(%source, %digest, "pinned");
        // Gates, all read before any write.
        let mut forced = None;
        if let Some(up) = &view.promote_from {
            // `--from` read these states already: the digest came from them.
            let states = match picked.upstream {
                Some((from, states)) if &from == up => states,
                _ => {
                    let upstream = self.policies.env(up.as_str())?;
                    let up_image = upstream_image(policy, upstream, &view.images[0].name)?;
                    self.upstream_states(upstream, up_image).await?
                }
            };
            let env = view.environment.as_str();
            if let Err(refusal) = plan::check_upstream(env, up.as_str(), &digest, &states) {
                let refusal = if policy.release {
                    format!("{}: {refusal}", view.images[0].name)
                } else {
                    refusal
                };
                match &opts.force_reason {
                    Some(_) => {
                        tracing::warn!("gate overridden with --force: {refusal}");
                        forced = Some(refusal);
                    }
                    None => return Err(Error::Gate(refusal)),
                }
            }
        }
        self.check_evidence(engine, &view, &resolved).await?;
        let repos = self.open_targets(engine, &view, !opts.dry_run)?;
        let source_tag = source.tag().filter(|_| source.digest().is_none()).cloned();
        let plans = self
            .plan_tags(&view, &repos, &settings, &digest, source_tag.as_ref())
            .await?;
        Ok(Prepared {
            pinned: resolved.source_digest().clone(),
            view,
            source,
            source_tag,
            resolved,
            repos,
            plans,
            forced,
        })
    }

    /// `ferry promote ENV …`: every image of the pick pinned and gated before anything is
    /// written; then every image's content at every target (one engine: a blob shared by images
    /// is read once and sent once per registry); then, only when all of it is complete, every
    /// tag of every image at every target, read back; then one history record.
    pub async fn promote_release<P: Observer>(
        &self,
        env: &str,
        pick: &Pick,
        opts: &PromoteOptions,
        progress: &dyn Fn(&[String]) -> P,
    ) -> Result<PromoteReport> {
        let policy = self.policies.env(env)?;
        let started = std::time::Instant::now();
        let ms = || started.elapsed().as_millis() as u64;
        let sources = self.pick(policy, pick).await?;
        let engine = self.engine(opts.dry_run, Some(policy));

        // 1–2. Pin and gate every image, reads only; the first refusal stops everything.
        let prepared = futures::future::join_all(
            policy
                .views()
                .into_iter()
                .zip(sources)
                .map(|(view, picked)| self.prepare_image(policy, view, picked, &engine, opts)),
        )
        .await;
        let prepared = first_refusal(prepared)?;
        tracing::debug!(
            at_ms = ms(),
            images = prepared.len(),
            "pinned, gated and planned"
        );
        let forced: Vec<String> = prepared.iter().filter_map(|p| p.forced.clone()).collect();

        // 3. Content everywhere, by digest only, every image at once on one engine. Signatures,
        //    attestations and SBOMs go with the content, before any tag moves.
        let names: Vec<String> = prepared
            .iter()
            .flat_map(|p| p.view.targets.iter().map(ToString::to_string))
            .collect();
        let observer = progress(&names);
        let mut base = 0;
        let copies = prepared.iter().map(|p| {
            let n = p.view.targets.len();
            let offset = Remap::new(&observer, (base..base + n).collect());
            base += n;
            let refs: Vec<ImageRef> = p.view.targets.iter().map(|t| t.image().clone()).collect();
            // Where every tag already names the digest, the content is known to be complete.
            let known: Vec<bool> = p.plans.iter().map(|t| !t.moves()).collect();
            let engine = &engine;
            async move {
                engine
                    .copy_image_known(&p.resolved, &refs, &known, &offset, &p.view.referrers)
                    .await
            }
        });
        // Each target's ledger is readied meanwhile (its blob stored), so that recording after
        // the flip is a read, a PUT and a read-back.
        // Only where a tag will move: a no-op rerun asks the ledgers nothing.
        let repos: Vec<Arc<dyn Repo>> = prepared.iter().flat_map(|p| p.repos.clone()).collect();
        let moves = prepared
            .iter()
            .flat_map(|p| p.plans.iter().map(TargetPlan::moves));
        let stage =
            futures::future::join_all(repos.iter().zip(moves).map(|(r, moves)| async move {
                !opts.dry_run && moves && history::prepare(&**r).await.is_ok()
            }));
        let (copies, staged) =
            futures::future::join(futures::future::join_all(copies), stage).await;
        let copies = copies.into_iter().collect::<Result<Vec<_>>>()?;
        drop(observer);
        tracing::debug!(at_ms = ms(), "content copied");
        let mut targets: Vec<TargetReport> = Vec::new();
        for (p, copy) in prepared.iter().zip(&copies) {
            targets.extend(p.plans.iter().zip(&copy.destinations).map(|(plan, c)| {
                TargetReport {
                    target: plan.target.clone(),
                    previous: plan.previous.clone(),
                    content: c.status,
                    tags: plan
                        .tags
                        .iter()
                        .map(|m| TagOutcome {
                            planned: m.clone(),
                            outcome: None,
                            error: None,
                        })
                        .collect(),
                    held: plan.held.clone(),
                    attached: c.attached.clone(),
                    error: c.error.clone().map(|e| TargetError::new(Stage::Content, e)),
                }
            }));
        }
        let images: Vec<ReleaseImage> = prepared
            .iter()
            .map(|p| ReleaseImage {
                name: p.view.images[0].name.clone(),
                source: p.source.to_string(),
                digest: p.resolved.root.digest.clone(),
            })
            .collect();
        let (source, digest) = if policy.release {
            let map = images
                .iter()
                .map(|i| (i.name.clone(), i.digest.clone()))
                .collect();
            (
                format!("release of {} images", images.len()),
                history::release_digest(&map),
            )
        } else {
            (prepared[0].source.to_string(), images[0].digest.clone())
        };
        let mut report = PromoteReport {
            kind: Kind::Promote,
            environment: env.to_owned(),
            source,
            digest: digest.clone(),
            images: if policy.release { images } else { Vec::new() },
            dry_run: opts.dry_run,
            forced_gate: (!forced.is_empty()).then(|| forced.join("; ")),
            targets: Vec::new(),
            record: None,
            history_errors: Vec::new(),
        };
        if opts.dry_run || targets.iter().any(|t| t.error.is_some()) {
            // All or nothing: no tag of any image moves unless every target holds every image.
            report.targets = targets;
            return Ok(report);
        }

        // 4. Drift: each source tag must still name what was pinned (all images at once).
        let drifts = prepared.iter().map(|p| async move {
            let Some(t) = &p.source_tag else {
                return Ok(());
            };
            if !p.plans.iter().any(TargetPlan::moves) {
                // No tag of this image moves: what the source tag names now changes nothing.
                return Ok(());
            }
            let now = p
                .resolved
                .src
                .manifest_head(&ManifestRef::Tag(t.clone()))
                .await
                .map_err(|e| Error::Source {
                    reference: p.source.to_string(),
                    source: Box::new(e),
                })?;
            let now = now.map(|i| i.digest);
            if now.as_ref() != Some(&p.pinned) {
                return Err(Error::SourceDrifted {
                    tag: t.clone(),
                    pinned: p.pinned.clone(),
                    now,
                });
            }
            Ok(())
        });
        futures::future::join_all(drifts)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()?;
        tracing::debug!(at_ms = ms(), "source tags checked for drift");

        // 5. Flip every tag of every image everywhere, each read back.
        let roots: Vec<&Manifest> = prepared
            .iter()
            .flat_map(|p| p.repos.iter().map(|_| &p.resolved.root))
            .collect();
        let flips = targets
            .iter_mut()
            .zip(&repos)
            .zip(&roots)
            .map(|((t, r), root)| flip_target(&**r, t, root));
        futures::future::join_all(flips).await;
        tracing::debug!(at_ms = ms(), "tags moved and read back");
        let moved = targets
            .iter()
            .any(|t| t.tags.iter().any(|o| o.planned.action != TagAction::Keep));
        report.targets = targets;
        if report.failed() > 0 || !moved {
            return Ok(report);
        }

        // 6. Record: one entry for the whole release, at every target of every image.
        let mut record = Record::new(Kind::Promote, &policy.environment, &digest);
        if policy.release {
            record.images = report
                .images
                .iter()
                .map(|i| (i.name.clone(), i.digest.clone()))
                .collect();
            record.sources = prepared
                .iter()
                .map(|p| (p.view.images[0].name.clone(), p.source.to_string()))
                .collect();
        } else {
            record.source = Some(format!("{}@{}", prepared[0].source, prepared[0].pinned));
        }
        record.forced = report.forced_gate.as_ref().and(opts.force_reason.clone());
        self.record_prepared(&repos, &policy.environment, &mut report, record, staged)
            .await;
        tracing::debug!(at_ms = ms(), "recorded");
        Ok(report)
    }

    /// The environment's `require:` gates on a resolved image: reads only; refuses with exit 3.
    async fn check_evidence(
        &self,
        engine: &Engine,
        policy: &EnvPolicy,
        resolved: &Resolved,
    ) -> Result<gate::Verdict> {
        if policy.require.is_empty() {
            return Ok(gate::Verdict::default());
        }
        let subject = gate::Subject::of(resolved.source_digest(), &resolved.root);
        let tags = engine.attachment_tags(&*resolved.src).await;
        let evidence = gate::gather_in(&*resolved.src, &resolved.root, &subject, tags.as_deref())
            .await
            .map_err(|e| Error::Source {
                reference: resolved.reference.to_string(),
                source: Box::new(e),
            })?;
        let started = std::time::Instant::now();
        let verdict = gate::check(&policy.require, &evidence, &subject);
        let verify_ms = started.elapsed().as_secs_f64() * 1000.0;
        let missing = verdict.missing();
        if !missing.is_empty() {
            return Err(Error::Gate(format!(
                "{} requires evidence that {} lacks: {}",
                policy.environment,
                resolved.reference,
                missing.join("; ")
            )));
        }
        let held: Vec<&str> = verdict.rules.iter().map(|r| r.rule.as_str()).collect();
        tracing::info!(image = %resolved.reference, digest = %subject.digest, "gates hold: {} (verified in {verify_ms:.1} ms)", held.join(", "));
        Ok(verdict)
    }

    /// `ferry verify`: resolves an image as `promote` would and checks the environment's gates
    /// (`promote_from` is not checked: it is about where the image is, not what it carries).
    pub async fn verify(&self, env: &str, image: &str) -> Result<VerifyReport> {
        let policy = self.policies.env(env)?;
        let (k, source) = self.release_ref(policy, image)?;
        let policy = &policy.views()[k];
        let engine = self.engine(true, Some(policy));
        let resolved = engine.resolve(&source).await?;
        let verdict = self.check_evidence(&engine, policy, &resolved).await?;
        Ok(VerifyReport {
            environment: env.to_owned(),
            source: source.to_string(),
            digest: resolved.source_digest().clone(),
            rules: verdict.rules,
            evidence: verdict.evidence,
        })
    }

    /// HEADs every wanted tag at every target (and lists tags where `semver` needs them), then plans.
    async fn plan_tags(
        &self,
        policy: &EnvPolicy,
        repos: &[Arc<dyn Repo>],
        settings: &[Option<RepoSettings>],
        digest: &Digest,
        source_tag: Option<&Tag>,
    ) -> Result<Vec<TargetPlan>> {
        let needs_list = policy
            .tags
            .iter()
            .any(|r| matches!(r, crate::policy::TagRule::Semver))
            && source_tag.is_some_and(|t| crate::policy::tags::version_of(t.as_str()).is_some());
        let results =
            futures::future::join_all(policy.targets.iter().zip(repos).zip(settings).map(
                |((t, repo), settings)| async move {
                    let name = t.to_string();
                    let existing = if needs_list {
                        repo.tags_list().await.map_err(|e| target_err(t, e))?
                    } else {
                        Vec::new()
                    };
                    let (wanted, held) =
                        plan::wanted_tags(policy, source_tag, &existing).map_err(|reason| {
                            Error::TargetPlan {
                                target: name.clone(),
                                reason,
                            }
                        })?;
                    let current = head_tags(&**repo, &wanted)
                        .await
                        .map_err(|e| target_err(t, e))?;
                    Ok::<_, Error>(plan::plan_target(
                        policy,
                        &name,
                        digest,
                        &current,
                        wanted,
                        held,
                        settings.as_ref(),
                    ))
                },
            ))
            .await;
        let mut plans = Vec::new();
        let mut refusals = Vec::new();
        for r in results {
            match r? {
                Ok(p) => plans.push(p),
                Err(refusal) => refusals.push(refusal),
            }
        }
        refused(refusals)?;
        Ok(plans)
    }

    /// Appends the record to the ledger of every target that did not fail (`repos` line up with
    /// `report.targets`); a failed append marks its target failed.
    async fn record(
        &self,
        repos: &[Arc<dyn Repo>],
        env: &Environment,
        report: &mut PromoteReport,
        record: Record,
    ) {
        let unprepared = vec![false; repos.len()];
        self.record_prepared(repos, env, report, record, unprepared)
            .await
    }

    /// [`Context::record`], where `prepared` marks the ledgers whose blob is already stored.
    async fn record_prepared(
        &self,
        repos: &[Arc<dyn Repo>],
        env: &Environment,
        report: &mut PromoteReport,
        mut record: Record,
        prepared: Vec<bool>,
    ) {
        record.previous = report
            .targets
            .iter()
            .map(|t| (t.target.clone(), t.previous.clone()))
            .collect();
        for o in report.targets.iter().flat_map(|t| &t.tags) {
            let tag = o.planned.tag.to_string();
            if !record.tags.contains(&tag) {
                record.tags.push(tag);
            }
        }
        let appends = report
            .targets
            .iter_mut()
            .zip(repos)
            .zip(prepared)
            .filter(|((t, _), _)| t.error.is_none())
            .map(|((t, r), prepared)| {
                let record = &record;
                async move {
                    let done = if prepared {
                        history::append_prepared(&**r, env, record).await
                    } else {
                        history::append(&**r, env, record).await
                    };
                    (t, done)
                }
            });
        for (t, r) in futures::future::join_all(appends).await {
            if let Err(e) = r {
                let e = TargetError::new(Stage::History, e);
                report.history_errors.push(ErrorChain(&e).to_string());
                t.error = Some(e);
            }
        }
        report.record = Some(record);
    }

    /// `ferry rollback ENV`: every image of the environment back to where an earlier promotion
    /// left it. A release moves as a whole: no tag moves unless every image is complete at
    /// every target.
    pub async fn rollback<P: Observer>(
        &self,
        env: &str,
        to: Option<&str>,
        steps: usize,
        dry_run: bool,
        progress: &dyn Fn(&[String]) -> P,
    ) -> Result<PromoteReport> {
        let policy = self.policies.env(env)?;
        let engine = self.engine(dry_run, None);
        let views = policy.views();
        let settings =
            futures::future::try_join_all(views.iter().map(|v| check_mutability(&engine, v)))
                .await?;
        let repos = views
            .iter()
            .map(|v| self.open_targets(&engine, v, !dry_run))
            .collect::<Result<Vec<_>>>()?;
        let all_repos: Vec<Arc<dyn Repo>> = repos.iter().flatten().cloned().collect();
        // The digest of each image to go back to, and the record's (the release's) digest.
        let (digest, digests): (Digest, Vec<Digest>) = match to {
            None => {
                let records = read_history(&all_repos, policy).await?;
                let d = plan::rollback_digest(&records, steps).map_err(Error::Usage)?;
                let each = release_digests(policy, &records, &d)?;
                (d, each)
            }
            Some(s) if s.starts_with("sha256:") => {
                let d = Digest::parse(s).map_err(|source| Error::Flag {
                    flag: "--to",
                    value: s.to_owned(),
                    source,
                })?;
                if policy.release {
                    let records = read_history(&all_repos, policy).await?;
                    let each = release_digests(policy, &records, &d)?;
                    (d, each)
                } else {
                    (d.clone(), vec![d])
                }
            }
            Some(tag) => {
                let tag = Tag::parse(tag)
                    .map_err(|e| Error::Usage(format!("--to {tag}: {}", e.reason())))?;
                let mut each = Vec::new();
                for r in &repos {
                    each.push(self.resolve_tag_at_targets(r, &tag).await?);
                }
                let d = if policy.release {
                    history::release_digest(
                        &views
                            .iter()
                            .map(|v| v.images[0].name.clone())
                            .zip(each.iter().cloned())
                            .collect(),
                    )
                } else {
                    each[0].clone()
                };
                (d, each)
            }
        };

        // Where each target is now, and whether it holds the whole image: all targets at once.
        let names: Vec<String> = policy.all_targets().map(ToString::to_string).collect();
        let observer = progress(&names);
        let mut base = 0;
        let mut jobs = Vec::new();
        for (((v, r), s), d) in views.iter().zip(&repos).zip(&settings).zip(&digests) {
            let moving = v.moving_tags();
            for ((t, repo), settings) in v.targets.iter().zip(r).zip(s) {
                let offset = Remap::new(&observer, vec![base]);
                base += 1;
                let moving = moving.clone();
                let engine = &engine;
                jobs.push(async move {
                    self.prepare_rollback(
                        engine,
                        v,
                        t,
                        &**repo,
                        d,
                        &moving,
                        settings.as_ref(),
                        dry_run,
                        &offset,
                    )
                    .await
                });
            }
        }
        let prepared = futures::future::join_all(jobs).await;
        drop(observer);
        let (mut targets, roots): (Vec<TargetReport>, Vec<Option<Manifest>>) = prepared
            .into_iter()
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let images: Vec<ReleaseImage> = if policy.release {
            views
                .iter()
                .zip(&digests)
                .map(|(v, d)| ReleaseImage {
                    name: v.images[0].name.clone(),
                    source: v.source.repository_name(),
                    digest: d.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut report = PromoteReport {
            kind: Kind::Rollback,
            environment: env.to_owned(),
            source: match to {
                Some(t) => format!("--to {t}"),
                None => format!("{steps} back in {env}'s history"),
            },
            digest: digest.clone(),
            images,
            dry_run,
            forced_gate: None,
            targets: Vec::new(),
            record: None,
            history_errors: Vec::new(),
        };
        let incomplete = targets
            .iter()
            .zip(&roots)
            .any(|(t, r)| t.error.is_some() || r.is_none());
        if dry_run || (policy.release && incomplete) {
            // A release moves back whole or not at all.
            report.targets = targets;
            return Ok(report);
        }
        let flips = targets
            .iter_mut()
            .zip(&all_repos)
            .zip(&roots)
            .filter_map(|((t, r), m)| m.as_ref().map(|m| flip_target(&**r, t, m)));
        futures::future::join_all(flips).await;
        report.targets = targets;
        let mut record = Record::new(Kind::Rollback, &policy.environment, &digest);
        record.images = report
            .images
            .iter()
            .map(|i| (i.name.clone(), i.digest.clone()))
            .collect();
        if report.targets.iter().any(|t| t.error.is_none()) {
            self.record(&all_repos, &policy.environment, &mut report, record)
                .await;
        }
        Ok(report)
    }

    /// One target of a rollback: its tags' plan, and the root manifest to tag when the image is
    /// complete there (re-copied from the source when it is not). `Err` only for a refused gate.
    #[allow(clippy::too_many_arguments)]
    async fn prepare_rollback<P: Observer>(
        &self,
        engine: &Engine,
        policy: &EnvPolicy,
        t: &Target,
        repo: &dyn Repo,
        digest: &Digest,
        moving: &[Tag],
        settings: Option<&RepoSettings>,
        dry_run: bool,
        progress: &P,
    ) -> Result<(TargetReport, Option<Manifest>)> {
        let name = t.to_string();
        let mut report = TargetReport {
            target: name.clone(),
            previous: None,
            content: Outcome::UpToDate,
            tags: Vec::new(),
            held: Vec::new(),
            attached: None,
            error: None,
        };
        let current = match head_tags(repo, moving).await {
            Ok(c) => c,
            Err(e) => {
                report.error = Some(TargetError::new(Stage::Check, e));
                return Ok((report, None));
            }
        };
        let plan = plan::plan_target(
            policy,
            &name,
            digest,
            &current,
            moving.to_vec(),
            Vec::new(),
            settings,
        )
        .map_err(|r| refused(vec![r]).unwrap_err())?;
        report.previous = plan.previous;
        report.tags = plan
            .tags
            .into_iter()
            .map(|m| TagOutcome {
                planned: m,
                outcome: None,
                error: None,
            })
            .collect();
        let check = match engine.check_complete(repo, digest).await {
            Ok(c) => c,
            Err(e) => {
                report.error = Some(TargetError::new(Stage::Check, e));
                return Ok((report, None));
            }
        };
        if check.missing.is_empty() {
            return Ok((report, check.root.filter(|_| !dry_run)));
        }
        if dry_run {
            report.content = Outcome::Planned;
            return Ok((report, None));
        }
        tracing::info!(target = %name, missing = check.missing.len(), "re-copying from the source");
        let copied = async {
            let as_cause = |e: Error| -> Cause { Arc::new(e) };
            let resolved = engine
                .resolve(&policy.source.pinned(digest))
                .await
                .map_err(as_cause)?;
            let c = engine
                .copy_image(&resolved, &[t.image().clone()], progress, &policy.referrers)
                .await
                .map_err(as_cause)?;
            match c.destinations[0].error.clone() {
                None => Ok(resolved.root),
                Some(e) => Err(Arc::new(e) as Cause),
            }
        }
        .await;
        match copied {
            Ok(root) => {
                report.content = Outcome::Copied;
                Ok((report, Some(root)))
            }
            Err(f) => {
                report.content = Outcome::Failed;
                let stage = Stage::Recopy {
                    digest: digest.clone(),
                    missing: check.missing[0].clone(),
                };
                report.error = Some(TargetError::shared(stage, f));
                Ok((report, None))
            }
        }
    }

    async fn resolve_tag_at_targets(&self, repos: &[Arc<dyn Repo>], tag: &Tag) -> Result<Digest> {
        let mut found: Vec<(String, Digest)> = Vec::new();
        for r in repos {
            if let Ok(Some(i)) = r.manifest_head(&ManifestRef::Tag(tag.clone())).await {
                found.push((r.name(), i.digest));
            }
        }
        match found.as_slice() {
            [] => Err(Error::Usage(format!("--to {tag}: no target has that tag"))),
            [(_, d), rest @ ..] if rest.iter().all(|(_, o)| o == d) => Ok(d.clone()),
            _ => Err(Error::Usage(format!(
                "--to {tag}: targets disagree ({}); give --to DIGEST",
                found
                    .iter()
                    .map(|(n, d)| format!("{n} has {d}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// For each readable target: which of the tags promotions of its digest set still point at
    /// it there (one HEAD per tag; history names them, so no tag listing).
    async fn tags_beside(
        &self,
        repos: &[Arc<dyn Repo>],
        records: &[history::Record],
        env_tag: &Tag,
        targets: &mut [TargetStatus],
    ) {
        let checks = targets.iter().zip(repos).map(|(t, repo)| async move {
            let Some(digest) = &t.digest else {
                return Vec::new();
            };
            let mut names: Vec<&String> = records
                .iter()
                .filter(|r| &r.digest == digest)
                .flat_map(|r| &r.tags)
                .filter(|name| name.as_str() != env_tag.as_str())
                .collect();
            names.sort();
            names.dedup();
            let others = names.into_iter().filter_map(|name| Tag::parse(name).ok());
            let heads = others.map(|tag| async move {
                let head = repo.manifest_head(&ManifestRef::Tag(tag.clone())).await;
                matches!(head, Ok(Some(i)) if &i.digest == digest).then(|| tag.to_string())
            });
            futures::future::join_all(heads)
                .await
                .into_iter()
                .flatten()
                .collect()
        });
        let found = futures::future::join_all(checks).await;
        for (t, more) in targets.iter_mut().zip(found) {
            t.tags.extend(more);
        }
    }

    /// `ferry status ENV`: every image's targets, each image judged on its own against history.
    pub async fn status(&self, env: &str) -> Result<StatusReport> {
        let policy = self.policies.env(env)?;
        let engine = self.engine(true, None);
        let views = policy.views();
        let mut repos = Vec::new();
        for v in &views {
            repos.push(self.open_targets(&engine, v, false)?);
        }
        let all_repos: Vec<Arc<dyn Repo>> = repos.iter().flatten().cloned().collect();
        let (records, errors) = history::read_all(&all_repos, &policy.environment).await;
        let parts = futures::future::join_all(views.iter().zip(&repos).map(|(v, r)| {
            let name = &v.images[0].name;
            // Each image's history: its own digest in every record that has it.
            let mine: Vec<Record> = records
                .iter()
                .filter_map(|rec| {
                    let d = rec.digest_of(name)?;
                    Some(Record {
                        digest: d.clone(),
                        ..rec.clone()
                    })
                })
                .collect();
            async move { self.status_image(v, r, mine).await }
        }))
        .await;
        let mut report = StatusReport {
            environment: env.to_owned(),
            tag: policy.env_tag().to_string(),
            state: State::InSync,
            agree: true,
            drift: Vec::new(),
            targets: Vec::new(),
            history_errors: errors.iter().map(ToString::to_string).collect(),
        };
        let rank = |s: State| match s {
            State::InSync => 0,
            State::NeverPromoted => 1,
            State::Unknown => 2,
            State::Drift => 3,
        };
        for (i, (v, part)) in views.iter().zip(parts).enumerate() {
            report.agree &= part.agree;
            if i == 0 || rank(part.state) > rank(report.state) {
                report.state = part.state;
            }
            let name = &v.images[0].name;
            if part.state == State::NeverPromoted && !records.is_empty() {
                report
                    .drift
                    .push(format!("{name}: in no release recorded yet"));
            }
            report.drift.extend(part.drift.into_iter().map(|d| {
                if policy.release {
                    format!("{name}: {d}")
                } else {
                    d
                }
            }));
            report.targets.extend(part.targets);
        }
        if !report.drift.is_empty() {
            report.state = State::Drift;
        }
        Ok(report)
    }

    /// One image's status at its targets, against its own history.
    async fn status_image(
        &self,
        policy: &EnvPolicy,
        repos: &[Arc<dyn Repo>],
        records: Vec<Record>,
    ) -> StatusReport {
        let tag = policy.env_tag();
        let env = policy.environment.as_str();
        let tag_ref = ManifestRef::Tag(tag.clone());
        let heads =
            futures::future::join_all(repos.iter().map(|r| r.manifest_head(&tag_ref))).await;
        let last = records.last();
        let targets: Vec<TargetStatus> = policy
            .targets
            .iter()
            .zip(heads)
            .map(|(t, h)| {
                let name = t.to_string();
                match h {
                    Ok(info) => {
                        let digest = info.map(|i| i.digest);
                        let since = digest.as_ref().and_then(|d| {
                            records
                                .iter()
                                .rev()
                                .find(|r| &r.digest == d)
                                .map(|r| r.time.clone())
                        });
                        TargetStatus {
                            target: name,
                            tags: digest.iter().map(|_| tag.to_string()).collect(),
                            digest,
                            since,
                            error: None,
                        }
                    }
                    Err(e) => TargetStatus {
                        target: name,
                        digest: None,
                        tags: Vec::new(),
                        since: None,
                        error: Some(TargetError::new(Stage::Check, e)),
                    },
                }
            })
            .collect();
        let mut targets = targets;
        self.tags_beside(repos, &records, &tag, &mut targets).await;
        let mut drift = Vec::new();
        // Drift is what the readable targets say; an unreadable one is unknown, not drift.
        let readable: Vec<&Option<Digest>> = targets
            .iter()
            .filter(|t| t.error.is_none())
            .map(|t| &t.digest)
            .collect();
        let agree = readable.len() == targets.len() && readable.windows(2).all(|w| w[0] == w[1]);
        if !readable.windows(2).all(|w| w[0] == w[1]) {
            drift.push("targets disagree".to_owned());
        }
        if let Some(r) = last {
            for t in &targets {
                if t.error.is_none() && t.digest.as_ref() != Some(&r.digest) {
                    drift.push(format!(
                        "{} has {} but history says {} ({} {})",
                        t.target,
                        t.digest
                            .as_ref()
                            .map_or("no tag".to_owned(), |d| d.to_string()),
                        r.digest,
                        r.time,
                        serde_json::to_value(r.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        let unknown = targets.iter().filter(|t| t.error.is_some()).count();
        let state = if !drift.is_empty() {
            State::Drift
        } else if unknown > 0 {
            State::Unknown
        } else if records.is_empty() && targets.iter().all(|t| t.digest.is_none()) {
            State::NeverPromoted
        } else {
            State::InSync
        };
        StatusReport {
            environment: env.to_owned(),
            tag: tag.to_string(),
            state,
            agree,
            drift,
            targets,
            history_errors: Vec::new(),
        }
    }

    /// `ferry history ENV`: the merged ledgers of every target of every image.
    pub async fn history(&self, env: &str) -> Result<Vec<Record>> {
        let policy = self.policies.env(env)?;
        let engine = self.engine(true, None);
        let mut repos = Vec::new();
        for v in policy.views() {
            repos.extend(self.open_targets(&engine, &v, false)?);
        }
        read_history(&repos, policy).await
    }
}

/// The digest of each image (views in policy order) in the history record of `digest`: for a
/// one-image environment, `digest` itself.
fn release_digests(policy: &EnvPolicy, records: &[Record], digest: &Digest) -> Result<Vec<Digest>> {
    if !policy.release {
        return Ok(vec![digest.clone()]);
    }
    let record = records
        .iter()
        .rev()
        .find(|r| &r.digest == digest)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--to {digest}: no release of {} in history has that digest (see `ferry history {}`)",
                policy.environment, policy.environment
            ))
        })?;
    policy
        .images
        .iter()
        .map(|i| {
            record.images.get(&i.name).cloned().ok_or_else(|| {
                Error::Usage(format!(
                    "release {} in history has no image {} (it holds {})",
                    digest.short(),
                    i.name,
                    record.images.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })
        })
        .collect()
}

/// What a promotion promotes.
#[derive(Clone, Debug)]
pub enum Pick {
    /// References: `NAME:TAG`, `NAME@DIGEST` or a full reference per image of a release; for a
    /// one-image environment, one reference or just `:TAG` / `@DIGEST`.
    Images(Vec<String>),
    /// Every image at this tag of its source repository (`--tag`).
    Tag(Tag),
    /// Every image at the digest this environment runs now (`--from`).
    From(String),
}

/// One image of a release in a promotion report.
#[derive(Clone, Debug, Serialize)]
pub struct ReleaseImage {
    /// Its name in the release.
    pub name: String,
    /// Where it was promoted from (or found, for a rollback).
    pub source: String,
    /// The digest it is tagged at.
    pub digest: Digest,
}

/// Per target of an upstream environment's image: where its environment tag points.
type UpstreamStates = Vec<(String, Option<Digest>)>;

/// What one image is promoted from, and (after `--from`) where the upstream environment's tag
/// was read to point, target by target: the `promote_from` gate's own question.
struct Picked {
    source: ImageRef,
    upstream: Option<(Environment, UpstreamStates)>,
}

impl From<ImageRef> for Picked {
    fn from(source: ImageRef) -> Self {
        Picked {
            source,
            upstream: None,
        }
    }
}

/// One image pinned, gated and planned, before anything is written.
struct Prepared {
    view: EnvPolicy,
    source: ImageRef,
    source_tag: Option<Tag>,
    pinned: Digest,
    resolved: Resolved,
    repos: Vec<Arc<dyn Repo>>,
    plans: Vec<TargetPlan>,
    forced: Option<String>,
}

/// Every image prepared, or the error to stop with: a refusal (exit 3) before anything else, so
/// a gate that refused one image is what the user reads even when another image failed too.
fn first_refusal(prepared: Vec<Result<Prepared>>) -> Result<Vec<Prepared>> {
    let mut out = Vec::new();
    let mut first_err = None;
    for p in prepared {
        match p {
            Ok(p) => out.push(p),
            Err(e @ Error::Gate(_)) => return Err(e),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The image of `upstream` that `name` of `policy` comes from: the image of that name, or the
/// one image of a one-image upstream.
fn upstream_image<'a>(
    policy: &EnvPolicy,
    upstream: &'a EnvPolicy,
    name: &str,
) -> Result<&'a crate::policy::ImagePolicy> {
    if let Some(i) = upstream.image(name) {
        return Ok(i);
    }
    if !upstream.release && !policy.release {
        return Ok(&upstream.images[0]);
    }
    Err(Error::Usage(format!(
        "{} promotes from {}, which has no image named {name} (its images: {})",
        policy.environment,
        upstream.environment,
        upstream.image_names()
    )))
}

/// Protected-tag refusals are a gate (exit 3); a tag the registry never moves fails the work (exit 1).
fn refused(refusals: Vec<plan::Refusal>) -> Result<()> {
    let (mut gates, mut failures) = (Vec::new(), Vec::new());
    for r in refusals {
        match r {
            plan::Refusal::Protected(m) => gates.push(m),
            plan::Refusal::Immutable(m) => failures.push(m),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Immutable { refusals: failures });
    }
    if !gates.is_empty() {
        return Err(Error::Gate(gates.join("; ")));
    }
    Ok(())
}

/// ECR targets' tag settings (`None` for other targets), read before anything is written; a policy
/// whose environment tag, other moving tags or ledger a target never lets move is a policy error.
pub async fn check_mutability(
    engine: &Engine,
    policy: &EnvPolicy,
) -> Result<Vec<Option<RepoSettings>>> {
    let found = futures::future::join_all(
        policy
            .targets
            .iter()
            .map(|t| engine.prepare_repository(t.image(), false)),
    )
    .await;
    let mut out = Vec::new();
    for (i, (t, r)) in policy.targets.iter().zip(found).enumerate() {
        let settings = r.map_err(|e| target_err(t, e))?;
        if let Some(s) = &settings {
            let bad = plan::immutable_moving_tags(policy, s);
            if !bad.is_empty() {
                let names: Vec<&str> = bad.iter().map(Tag::as_str).collect();
                return Err(crate::policy::PolicyError::new(
                    &policy.file,
                    format!("targets[{i}]"),
                    format!(
                        "{t} has {}, but {} moves {} there; use IMMUTABLE_WITH_EXCLUSION with filters for them, or a mutable repository",
                        s.describe(),
                        policy.environment,
                        names.join(", ")
                    ),
                )
                .into());
            }
        }
        out.push(settings);
    }
    Ok(out)
}

/// The merged history of an environment; ledgers that cannot be read are warned about, and it
/// fails only when none can.
async fn read_history(repos: &[Arc<dyn Repo>], policy: &EnvPolicy) -> Result<Vec<Record>> {
    let (records, errors) = history::read_all(repos, &policy.environment).await;
    for e in &errors {
        tracing::warn!("{e}");
    }
    let all_failed = errors.len() == repos.len();
    match errors.into_iter().next() {
        Some(e) if all_failed => Err(Error::History {
            environment: policy.environment.to_string(),
            source: Box::new(e),
        }),
        _ => Ok(records),
    }
}

/// A target that could not be opened or read before anything was written.
fn target_err(t: &Target, e: RegistryError) -> Error {
    Error::Target {
        target: t.to_string(),
        source: Box::new(e),
    }
}

/// What `ferry verify` found: every gate held.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The environment.
    pub environment: String,
    /// The image as resolved.
    pub source: String,
    /// Its digest.
    pub digest: Digest,
    /// The gates, each of which held (empty: the environment requires nothing).
    pub rules: Vec<gate::RuleOutcome>,
    /// Each piece of evidence the gates considered, and its verdict.
    pub evidence: Vec<gate::Considered>,
}

/// Where an environment stands at one target.
#[derive(Clone, Debug, Serialize)]
pub struct TargetStatus {
    /// The target repository.
    pub target: String,
    /// Where the environment tag points.
    pub digest: Option<Digest>,
    /// The tags at this target that point at that digest: the environment tag, and those
    /// promotions of it set (`v1.1.0`, `1.1`) that still do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When it got there, from history.
    pub since: Option<String>,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
}

/// `ferry status`.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// The environment.
    pub environment: String,
    /// Its tag.
    pub tag: String,
    /// In one word.
    pub state: State,
    /// Whether every target is readable and points at the same digest.
    pub agree: bool,
    /// What is out of line (empty when all is well).
    pub drift: Vec<String>,
    /// Per target.
    pub targets: Vec<TargetStatus>,
    /// Ledgers that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history_errors: Vec<String>,
}

/// An environment's state, as `status` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Every target has the tag at the same digest, the one history last recorded.
    InSync,
    /// Readable targets disagree, with each other or with history.
    Drift,
    /// What the readable targets say agrees, but some targets could not be read.
    Unknown,
    /// No target has the tag and no history exists.
    NeverPromoted,
}

/// When IMAGE looks like a bare tag or digest, how to write it: `; did you mean :v1.1.0?`.
fn shorthand_hint(image: &str) -> String {
    if image.starts_with("sha256:") && Digest::parse(image).is_ok() {
        return format!("; did you mean @{image}?");
    }
    let bare_tag = !image.is_empty()
        && image.len() <= 128
        && !image.contains(['/', ':', '@'])
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if bare_tag {
        format!("; did you mean :{image}?")
    } else {
        String::new()
    }
}

/// Where each tag points at one store (`None`: absent).
async fn head_tags(
    repo: &dyn Repo,
    tags: &[Tag],
) -> std::result::Result<BTreeMap<Tag, Option<Digest>>, RegistryError> {
    stream::iter(tags)
        .map(|t| async move {
            repo.manifest_head(&ManifestRef::Tag(t.clone()))
                .await
                .map(|i| (t.clone(), i.map(|i| i.digest)))
        })
        .buffered(TAG_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Writes a target's tags one by one, each read back; stops at the first failure.
async fn flip_target(repo: &dyn Repo, t: &mut TargetReport, root: &Manifest) {
    for o in &mut t.tags {
        if o.planned.action == TagAction::Keep {
            o.outcome = Some(Outcome::UpToDate);
            continue;
        }
        let result = write_tag(repo, &o.planned.tag, root)
            .await
            .map_err(|e| TargetError::new(Stage::Tag, e));
        match result {
            Ok(()) => o.outcome = Some(Outcome::Copied),
            Err(e) => {
                o.outcome = Some(Outcome::Failed);
                o.error = Some(e.clone());
                t.error = Some(e);
                return;
            }
        }
    }
}

#[cfg(test)]
mod orchestration;

#[cfg(test)]
mod tests {
    #[test]
    fn bare_tags_and_digests_get_a_shorthand_hint() {
        assert_eq!(super::shorthand_hint("v1.1.0"), "; did you mean :v1.1.0?");
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(super::shorthand_hint(&d), format!("; did you mean @{d}?"));
        assert_eq!(super::shorthand_hint("ghcr.io/other/api:v1"), "");
    }
}
