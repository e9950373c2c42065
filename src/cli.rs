//! cli: the command-line surface — argument types (in [`args`]) and the dispatch from a parsed command to the library.

pub mod args;

use std::io::stdout;
use std::path::Path;

use clap::CommandFactory;

pub use args::*;

use crate::copy::{self, CopyOptions, Engine};
use crate::error::{Error, Result};
use crate::generate;
use crate::mirror;
use crate::policy::{Overrides, Policies};
use crate::promote::{Context, PromoteOptions};
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
            // registries.yaml, when the policy directory has one, says how to reach registries here too.
            let registries = Policies::registries_only(&dir)?;
            let engine = Engine::new(copy.options(&registries, transport(&a.connect)?));
            let progress = report::progress(&copy.dests);
            let result = engine.copy(&copy.source, &copy.dests, &progress).await;
            // The bars are cleared (and the plain line stops) before the report is written.
            drop(progress);
            let result = result?;
            report::finish(&result, a.output)
        }
        Command::Promote(a) => {
            let ctx = context(&dir, &a.common.connect, &a.platform)?;
            let opts = PromoteOptions {
                dry_run: a.dry_run,
                force_reason: a.reason.filter(|_| a.force),
            };
            let progress = report::target_progress();
            let r = ctx.promote(&a.env, &a.image, &opts, &progress).await;
            drop(progress);
            report::finish(&r?, a.common.output)
        }
        Command::Rollback(a) => {
            let ctx = context(&dir, &a.common.connect, &[])?;
            let progress = report::target_progress();
            let r = ctx.rollback(&a.env, a.to.as_deref(), a.steps, a.dry_run, &progress);
            let r = r.await;
            drop(progress);
            report::finish(&r?, a.common.output)
        }
        Command::Status(a) => {
            let ctx = context(&dir, &a.common.connect, &[])?;
            report::finish(&ctx.status(&a.env).await?, a.common.output)
        }
        Command::History(a) => {
            let ctx = context(&dir, &a.env.common.connect, &[])?;
            let records = ctx.history(&a.env.env).await?;
            let newest: Vec<_> = records.into_iter().rev().take(a.limit).collect();
            report::finish(&newest[..], a.env.common.output)
        }
        Command::Mirror(a) => {
            let ctx = context(&dir, &a.common.connect, &[])?;
            let run = mirror::select::Request {
                names: &a.names,
                shard: a.shard.as_deref(),
                job_index: std::env::var("JOB_COMPLETION_INDEX").ok().as_deref(),
                shard_count: a.shard_count,
                dry_run: a.dry_run,
                fail_fast: a.fail_fast,
                parallel: a.parallel,
            }
            .resolve(&ctx.policies)?;
            let engine = Engine::new(run.copy_options(&ctx.options));
            let progress = report::mirror_progress(&run.target_registries());
            let result = mirror::run(&run.policies, &engine, &run.options, &progress).await;
            drop(progress);
            let result = result?;
            report::append_step_summary(&result)?;
            report::finish(&result, a.common.output)
        }
        Command::Verify(a) => {
            let ctx = context(&dir, &a.common.connect, &[])?;
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
            let ctx = context(&dir, &ConnectArgs::default(), &[])?;
            if online {
                ctx.check_registries().await?;
            }
            report::finish(&ctx.policies, output)
        }
        Command::Policy(PolicyCommand::Schema { kind, out }) => {
            generate::schemas(kind, out.as_deref(), stdout())
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

/// Policies from the directory, with the command line's connection flags under registries.yaml.
fn context(dir: &Path, connect: &ConnectArgs, platforms: &[String]) -> Result<Context> {
    let overrides = Overrides {
        platforms: platforms.to_vec(),
    };
    let policies = Policies::load(dir, &overrides)?;
    let options = CopyOptions::from_registries(&policies, transport(connect)?);
    Ok(Context { policies, options })
}

/// The connection flags as transport options.
fn transport(c: &ConnectArgs) -> Result<TransportOptions> {
    TransportOptions::from_flags(&c.plain_http, &c.https, &c.ca_file).map_err(Error::Usage)
}
