//! cli: the command-line surface — argument types (in [`args`]) and the dispatch from a parsed command to the library.

pub mod args;
pub mod prompt;

use std::collections::HashMap;
use std::io::{stdout, Write};
use std::path::Path;

use clap::CommandFactory;

pub use args::*;

use crate::auth::oneoff::{registry_arg, Overrides};
use crate::auth::Credential;
use crate::copy::{self, CopyOptions, Engine};
use crate::error::{Error, Result};
use crate::generate;
use crate::inspect::{self, InspectError};
use crate::mirror;
use crate::mirror::plan::Shard;
use crate::policy::Policies;
use crate::promote::{Context, Pick, PromoteOptions};
use crate::prune;
use crate::reference::{ImageRef, Tag};
use crate::report;
use crate::sigstore;
use crate::transport::TransportOptions;

/// Runs a parsed command; the caller maps the error to an exit code. With `--output json`, a
/// command that fails before its report is written prints one JSON document saying why, so a
/// script reading stdout always gets one.
pub async fn run(cli: Cli) -> Result<()> {
    let format = cli.command.output();
    // Boxed: the dispatch future is deep, and its layout overflows rustc's query depth when
    // nested once more in main's runtime block (seen with clippy-driver as the compiler).
    let result = Box::pin(dispatch(cli)).await;
    if let Err(e) = &result {
        if format == report::Format::Json && !report::reported() && !matches!(e, Error::Output(_)) {
            report::write_error(&mut stdout(), e).map_err(Error::Output)?;
        }
    }
    result
}

async fn dispatch(cli: Cli) -> Result<()> {
    let dir = cli.policies;
    match cli.command {
        Command::Copy(a) => {
            let copy = copy::request::Request {
                source: &a.source,
                dests: &a.dest,
                platforms: &a.platform,
                dry_run: a.dry_run,
                jobs: a.jobs,
                per_host: a.per_host,
                no_referrers: a.no_referrers,
                artifact_types: &a.artifact_type,
            }
            .check()?;
            let mut logins = overrides(&a.creds);
            if let Some(l) = &a.src_creds {
                let registry = copy.source.registry().ok_or_else(|| {
                    Error::Usage(
                        "--src-creds: the source is an OCI layout, which needs no login".into(),
                    )
                })?;
                logins.add(registry.clone(), l.clone(), "--src-creds");
            }
            if let Some(l) = &a.dest_creds {
                let remote: Vec<_> = copy.dests.iter().filter_map(ImageRef::registry).collect();
                if remote.is_empty() {
                    return Err(Error::Usage(
                        "--dest-creds: every destination is an OCI layout, which needs no login"
                            .into(),
                    ));
                }
                for registry in remote {
                    logins.add(registry.clone(), l.clone(), "--dest-creds");
                }
            }
            // registries.yaml, when the policy directory has one, says how to reach registries here too.
            let registries = Policies::registries_only(&dir)?;
            let mut options = copy.options(&registries, transport(&a.connect)?);
            options.credentials = resolve(logins)?;
            let engine = Engine::new(options);
            let progress = report::progress(&copy.dests);
            let result = engine.copy(&copy.source, &copy.dests, &progress).await;
            // The bars are cleared (and the plain line stops) before the report is written.
            drop(progress);
            let result = result?;
            report::finish(&result, a.output)
        }
        Command::Promote(a) => {
            let ctx = context(&dir, &a.common, &a.platform)?;
            let opts = PromoteOptions {
                dry_run: a.dry_run,
                force_reason: a.reason.filter(|_| a.force),
            };
            let pick = match (a.tag, a.from) {
                (Some(t), _) => Pick::Tag(
                    Tag::parse(&t)
                        .map_err(|e| Error::Usage(format!("--tag {t}: {}", e.reason())))?,
                ),
                (None, Some(f)) => Pick::From(f),
                (None, None) => Pick::Images(a.images),
            };
            let progress = report::target_progress();
            let r = ctx.promote_release(&a.env, &pick, &opts, &progress).await;
            drop(progress);
            report::finish(&r?, a.common.output)
        }
        Command::Rollback(a) => {
            let ctx = context(&dir, &a.common, &[])?;
            let progress = report::target_progress();
            let r = ctx.rollback(&a.env, a.to.as_deref(), a.steps, a.dry_run, &progress);
            let r = r.await;
            drop(progress);
            report::finish(&r?, a.common.output)
        }
        Command::Status(a) => {
            let ctx = context(&dir, &a.common, &[])?;
            report::finish(&ctx.status(&a.env).await?, a.common.output)
        }
        Command::History(a) => {
            let ctx = context(&dir, &a.env.common, &[])?;
            let records = ctx.history(&a.env.env).await?;
            let newest: Vec<_> = records.into_iter().rev().take(a.limit).collect();
            report::finish(&newest[..], a.env.common.output)
        }
        Command::Mirror(a) => {
            let ctx = context(&dir, &a.common, &[])?;
            let run = mirror::select::Request {
                names: &a.names,
                shard: a.sharding.shard.as_deref(),
                job_index: std::env::var("JOB_COMPLETION_INDEX").ok().as_deref(),
                shard_count: a.sharding.shard_count,
                dry_run: a.dry_run,
                fail_fast: a.fail_fast,
                parallel: a.parallel,
            }
            .resolve(&ctx.policies)?;
            let engine = Engine::with_client(ctx.client(), run.copy_options(&ctx.options));
            let progress = report::mirror_progress(&run.target_registries());
            let result = mirror::run(&run.policies, &engine, &run.options, &progress).await;
            drop(progress);
            let result = result?;
            report::append_step_summary(&result)?;
            report::finish(&result, a.common.output)
        }
        Command::Prune(a) => {
            let ctx = context(&dir, &a.common, &[])?;
            let shard = Shard::resolve(
                a.sharding.shard.as_deref(),
                std::env::var("JOB_COMPLETION_INDEX").ok().as_deref(),
                a.sharding.shard_count,
            )
            .map_err(Error::Usage)?;
            if a.parallel == 0 {
                return Err(Error::Usage("--parallel must be at least 1".into()));
            }
            let options = prune::PruneOptions {
                names: a.names,
                dry_run: a.dry_run,
                shard,
                parallel: a.parallel,
                now: std::time::SystemTime::now(),
            };
            let result = prune::run(&ctx.policies, ctx.client(), &options).await?;
            report::prune::append_step_summary(&result)?;
            report::finish(&result, a.common.output)
        }
        Command::Verify(a) => {
            let ctx = context(&dir, &a.common, &[])?;
            report::finish(&ctx.verify(&a.env, &a.image).await?, a.common.output)
        }
        Command::VerifyBundle(a) => {
            let verified = verify_bundle(&a)?;
            let mut out = stdout();
            let line = format!(
                "verified: signed by {}{}{}",
                verified.signer,
                verified
                    .issuer
                    .map(|i| format!(" (issuer {i})"))
                    .unwrap_or_default(),
                verified
                    .time
                    .map(|t| format!(", at {t}"))
                    .unwrap_or_default(),
            );
            std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes())
                .map_err(Error::Output)
        }
        Command::Policy(PolicyCommand::Check { output, online, .. }) => {
            let none = Common {
                output,
                connect: ConnectArgs::default(),
                creds: CredsArgs::default(),
            };
            let ctx = context(&dir, &none, &[])?;
            if online {
                ctx.check_registries().await?;
            }
            report::finish(&ctx.policies, output)
        }
        Command::Policy(PolicyCommand::Schema { kind, out }) => {
            generate::schemas(kind, out.as_deref(), stdout())
        }
        Command::Inspect(a) => {
            let platform = a
                .platform
                .as_deref()
                .map(copy::request::platform_arg)
                .transpose()?;
            let engine = reader(&dir, &a.common.connect, &a.common.creds, None)?;
            let (r, repo) = open_image(&engine, &a.image)?;
            if a.raw {
                let (m, _) = inspect::fetch(&*repo, &r, platform.as_ref())
                    .await
                    .map_err(inspect_error(&r))?;
                let mut out = stdout().lock();
                out.write_all(&m.bytes)?;
                return out.flush().map_err(Error::Output);
            }
            let found = inspect::inspect(&*repo, &r, platform.as_ref())
                .await
                .map_err(inspect_error(&r))?;
            report::finish(&found, a.common.output)
        }
        Command::Digest(a) => {
            let engine = reader(&dir, &a.connect, &a.creds, None)?;
            let (r, repo) = open_image(&engine, &a.image)?;
            let d = inspect::digest(&*repo, &r)
                .await
                .map_err(|e| Error::Source {
                    reference: r.to_string(),
                    source: Box::new(e),
                })?;
            tracing::debug!(requests = repo.stats().requests, "digest resolved");
            writeln!(stdout(), "{d}").map_err(Error::Output)
        }
        Command::Tags(a) => {
            if a.page_size == 0 {
                return Err(Error::Usage("--page-size must be at least 1".into()));
            }
            let engine = reader(&dir, &a.common.connect, &a.common.creds, Some(a.page_size))?;
            let r = ImageRef::parse(&a.repository)?;
            if r.tag().is_some() || r.digest().is_some() {
                return Err(Error::Usage(format!(
                    "ferry tags takes a repository (HOST/REPO or ocidir://PATH), and {} names an image: leave out its tag or digest",
                    a.repository
                )));
            }
            let repo = engine.open(&r, false).map_err(|e| Error::Source {
                reference: a.repository.clone(),
                source: Box::new(e),
            })?;
            let list = inspect::tags(&*repo).await.map_err(|e| Error::Source {
                reference: a.repository.clone(),
                source: Box::new(e),
            })?;
            tracing::debug!(requests = repo.stats().requests, "tags listed");
            report::finish(&list, a.common.output)
        }
        Command::Login(a) => login(&dir, &a).await,
        Command::Logout(a) => {
            let registry = registry_arg(&a.registry)
                .map_err(|e| Error::Usage(format!("ferry logout: {e}")))?;
            let config = docker_config_path()?;
            let removed = crate::login::logout(&registry, &config, None)?;
            let mut out = stdout();
            if removed.is_empty() {
                writeln!(out, "not logged in to {registry}")
            } else {
                let places: Vec<String> = removed.iter().map(ToString::to_string).collect();
                writeln!(
                    out,
                    "removed the login for {registry} from {}",
                    places.join(" and ")
                )
            }
            .map_err(Error::Output)
        }
        Command::Demo(a) => crate::demo::run(a.dir, a.output).await,
        Command::Completions { shell } => generate::completions(Cli::command(), shell, stdout()),
        Command::Man { out } => generate::man(Cli::command(), out.as_deref(), stdout()),
    }
}

/// `ferry verify-bundle`: reads the bundle, the signer and the root, then verifies offline.
fn verify_bundle(a: &VerifyBundleArgs) -> Result<sigstore::Verified> {
    let usage = |m: String| Error::Usage(m);
    let root = match (&a.trusted_root, a.staging) {
        (Some(path), _) => sigstore::TrustRoot::from_file(path).map_err(usage)?,
        (None, true) => sigstore::TrustRoot::builtin("staging").expect("built in"),
        (None, false) => sigstore::TrustRoot::public_good(),
    };
    let signer = if let Some(path) = &a.key {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read key {}: {e}", path.display())))?;
        sigstore::Signer::key(path.clone(), &pem)
            .map_err(|e| usage(format!("{}: {e}", path.display())))?
    } else {
        let subject = match (&a.certificate_identity, &a.certificate_identity_regexp) {
            (Some(id), _) => sigstore::SubjectMatch::Exact(id.clone()),
            (None, Some(re)) => sigstore::SubjectMatch::Regex(
                regex::Regex::new(re)
                    .map_err(|e| usage(format!("--certificate-identity-regexp: {e}")))?,
            ),
            (None, None) => unreachable!("clap requires a signer"),
        };
        sigstore::Signer::Identity {
            issuer: a.certificate_oidc_issuer.clone().unwrap_or_default(),
            subject,
        }
    };
    let refuse = |why: String| Error::Bundle {
        bundle: a.bundle.display().to_string(),
        reason: why,
    };
    let bytes = read_capped(&a.bundle, sigstore::MAX_BUNDLE_BYTES).map_err(&refuse)?;
    let bundle = sigstore::parse_bundle(&bytes).map_err(&refuse)?;
    let artifact_bytes;
    let artifact = match a.artifact.strip_prefix("sha256:") {
        Some(hex) => sigstore::Artifact::Sha256(hex),
        None => {
            artifact_bytes = std::fs::read(&a.artifact)
                .map_err(|e| usage(format!("cannot read {}: {e}", a.artifact)))?;
            sigstore::Artifact::Bytes(&artifact_bytes)
        }
    };
    sigstore::verify(&root, &bundle, artifact, &signer).map_err(refuse)
}

/// A file's bytes, refusing one larger than `cap` without reading it all.
fn read_capped(path: &Path, cap: usize) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut bytes = Vec::new();
    f.take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() > cap {
        return Err(format!("it is over the {cap} byte cap"));
    }
    Ok(bytes)
}

/// Policies from the directory, with the command line's connection flags under registries.yaml
/// and its one-off logins over every other source.
fn context(dir: &Path, common: &Common, platforms: &[String]) -> Result<Context> {
    let overrides = crate::policy::Overrides {
        platforms: platforms.to_vec(),
    };
    let policies = Policies::load(dir, &overrides)?;
    let mut options = CopyOptions::from_registries(&policies, transport(&common.connect)?);
    options.credentials = resolve(self::overrides(&common.creds))?;
    Ok(Context::new(policies, options))
}

/// The `--creds` logins, before missing passwords are asked for.
fn overrides(creds: &CredsArgs) -> Overrides {
    let mut o = Overrides::default();
    for c in &creds.creds {
        o.add(c.registry.clone(), c.login.clone(), "--creds");
    }
    o
}

/// One-off logins per registry, asking at the terminal for passwords left out.
fn resolve(logins: Overrides) -> Result<HashMap<String, Credential>> {
    logins
        .resolve(prompt::password)
        .map_err(|e| Error::Usage(e.to_string()))
}

/// An engine for the read-only verbs: registries.yaml's settings, the connection flags, the
/// one-off logins.
fn reader(
    dir: &Path,
    connect: &ConnectArgs,
    creds: &CredsArgs,
    page_size: Option<usize>,
) -> Result<Engine> {
    let registries = Policies::registries_only(dir)?;
    let mut options = CopyOptions::from_registries(&registries, transport(connect)?);
    options.credentials = resolve(overrides(creds))?;
    options.transport.list_page_size = page_size;
    Ok(Engine::new(options))
}

/// A reference for the read-only verbs, and its store opened for reading.
fn open_image(
    engine: &Engine,
    image: &str,
) -> Result<(ImageRef, std::sync::Arc<dyn crate::registry::Repo>)> {
    let r = ImageRef::parse(image)?.or_latest();
    let repo = engine.open(&r, false).map_err(|e| Error::Source {
        reference: r.to_string(),
        source: Box::new(e),
    })?;
    Ok((r, repo))
}

/// An inspect failure: what was asked is wrong (exit 2), or the image could not be read (exit 1).
fn inspect_error(r: &ImageRef) -> impl Fn(InspectError) -> Error + '_ {
    move |e| match e {
        InspectError::Registry(source) => Error::Source {
            reference: r.to_string(),
            source: Box::new(source),
        },
        other => Error::Usage(other.to_string()),
    }
}

/// `ferry login`: the user and password from the flags, stdin or the terminal, checked with the
/// registry, then stored.
async fn login(dir: &Path, a: &LoginArgs) -> Result<()> {
    let registry =
        registry_arg(&a.registry).map_err(|e| Error::Usage(format!("ferry login: {e}")))?;
    let username = match &a.username {
        Some(u) if !u.is_empty() && !u.contains(':') => u.clone(),
        Some(_) => {
            return Err(Error::Usage(
                "-u: the user is empty or holds a colon".into(),
            ))
        }
        None if !a.password_stdin && prompt::interactive() => prompt::username(&registry)?,
        None => {
            return Err(Error::Usage(format!(
                "ferry login {registry} needs -u USER (there is no terminal to ask on)"
            )))
        }
    };
    let password = if a.password_stdin {
        prompt::password_from_stdin()?
    } else if prompt::interactive() {
        prompt::password(&registry, &username).map_err(Error::Usage)?
    } else {
        return Err(Error::Usage(format!(
            "ferry login {registry}: there is no terminal to ask for the password on; pipe it with --password-stdin"
        )));
    };
    let config = docker_config_path()?;
    let registries = Policies::registries_only(dir)?;
    let t = registries.transport(transport(&a.connect)?);
    let place = crate::login::login(t, &registry, &username, &password, &config, None).await?;
    let mut out = stdout();
    writeln!(out, "login succeeded: {registry} (stored in {place})").map_err(Error::Output)
}

/// Docker's config file, where logins are written.
fn docker_config_path() -> Result<std::path::PathBuf> {
    crate::auth::docker_config::docker_config_path().ok_or_else(|| {
        Error::Usage("cannot tell where Docker's config.json is: set DOCKER_CONFIG or HOME".into())
    })
}

/// The connection flags as transport options.
fn transport(c: &ConnectArgs) -> Result<TransportOptions> {
    TransportOptions::from_flags(&c.plain_http, &c.https, &c.ca_file).map_err(Error::Usage)
}
