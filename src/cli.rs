//! cli: the command-line surface — argument types and the dispatch from a parsed command to the library.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::copy::{CopyOptions, Engine, DEFAULT_JOBS, DEFAULT_PER_HOST};
use crate::error::{Error, Result};
use crate::manifest::Platform;
use crate::policy::schema::{self, SchemaKind};
use crate::policy::{Overrides, Policies};
use crate::promote::{Context, PromoteOptions};
use crate::reference::ImageRef;
use crate::referrers::Filter;
use crate::report::{self, Format, Progress};
use crate::transport::TransportOptions;

/// Move container images between registries by digest.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The policy directory.
    #[arg(
        long,
        global = true,
        env = "FERRY_POLICIES",
        default_value = "policies"
    )]
    pub policies: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy an image (every platform, attestation and artifact under it) to one or more destinations.
    Copy(CopyArgs),
    /// Promote an image to an environment: gates, content to every target, then its tags everywhere.
    Promote(PromoteArgs),
    /// Move an environment's tags back to an earlier digest on every target.
    Rollback(RollbackArgs),
    /// Where an environment's tag points at each target, and whether they agree.
    Status(EnvArgs),
    /// An environment's promotions and rollbacks, newest first, from the ledgers in its targets.
    History(HistoryArgs),
    /// Check an environment's gates (required attestations and signatures) on an image, writing nothing.
    Verify(VerifyArgs),
    /// Mirror repositories and tags to other registries by mirror policies (`kind: mirror`): incremental, shardable.
    Mirror(MirrorArgs),
    /// Policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Promote sample images through staging and prod over OCI layouts on disk, then roll back: no server, no credentials.
    Demo(DemoArgs),
    /// Print a shell completion script (e.g. `source <(ferry completions bash)`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print ferry's man page (roff), or write one page per command into a directory.
    Man {
        /// Write `ferry.1` and `ferry-COMMAND.1` for every command into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `ferry policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate every policy file and print the resolved policies.
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Format,
        /// Check the files only: do not ask ECR for its repositories' tag immutability.
        #[arg(long)]
        offline: bool,
    },
    /// Print the JSON Schema of a kind of policy file, or write all of them into a directory.
    Schema {
        /// The kind of policy file.
        #[arg(long, value_enum, required_unless_present = "out")]
        kind: Option<SchemaKind>,
        /// Write `environment.json`, `mirror.json` and `registries.json` into this directory
        /// (only KIND's with --kind).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `ferry promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The environment (a file `<env>.yaml` in the policy directory).
    pub env: String,
    /// The image: a reference in the policy's source repository, or just `:TAG` or `@DIGEST`.
    pub image: String,
    /// Read, check the gates and print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Go past a refused promote_from gate (protected tags still never move). Needs --reason.
    #[arg(long, requires = "reason")]
    pub force: bool,
    /// Why --force was needed; recorded in history.
    #[arg(long, requires = "force", value_name = "TEXT")]
    pub reason: Option<String>,
    /// Copy only these platforms, instead of the policy's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
    /// Connection settings (registries.yaml takes precedence per registry).
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `ferry rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The environment.
    pub env: String,
    /// Go back to this digest, or to where this tag points at the targets.
    #[arg(long, value_name = "DIGEST|TAG", conflicts_with = "steps")]
    pub to: Option<String>,
    /// How many distinct digests back in history.
    #[arg(long, default_value_t = 1)]
    pub steps: usize,
    /// Check and print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
    /// Connection settings.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `ferry status`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The environment.
    pub env: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
    /// Connection settings.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `ferry mirror`.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Mirror policies to run (their `name`); none: every mirror policy.
    pub names: Vec<String>,
    /// Read and decide, print the plan, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this shard's repositories: K/N (default: a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX with --shard-count).
    #[arg(long)]
    pub shard: Option<String>,
    /// The number of shards when the index comes from JOB_COMPLETION_INDEX.
    #[arg(long, env = "FERRY_SHARD_COUNT")]
    pub shard_count: Option<u32>,
    /// Stop starting new images after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Images worked on at once.
    #[arg(long, default_value_t = crate::mirror::DEFAULT_PARALLEL)]
    pub parallel: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
    /// Connection settings.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `ferry history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The environment, its status flags.
    #[command(flatten)]
    pub env: EnvArgs,
    /// Show at most this many records.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

/// Connection flags shared by commands that talk to registries.
#[derive(Debug, Args, Clone, Default)]
pub struct ConnectArgs {
    /// Reach this registry (host[:port]) over plain HTTP. Loopback registries use plain HTTP already.
    #[arg(long = "plain-http", value_name = "HOST")]
    pub plain_http: Vec<String>,
    /// Reach this loopback registry over HTTPS instead of the plain-HTTP default.
    #[arg(long = "https", value_name = "HOST")]
    pub https: Vec<String>,
    /// Trust this CA certificate (PEM) for a registry: HOST=PATH.
    #[arg(long = "ca-file", value_name = "HOST=PATH")]
    pub ca_file: Vec<String>,
}

impl ConnectArgs {
    /// Validated transport options.
    pub fn transport(&self) -> Result<TransportOptions> {
        let mut ca_files = HashMap::new();
        for spec in &self.ca_file {
            let (host, path) = spec
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("--ca-file {spec:?}: expected HOST=PATH")))?;
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(Error::Usage(format!(
                    "--ca-file {host}: {} is not a readable file",
                    path.display()
                )));
            }
            ca_files.insert(host.to_ascii_lowercase(), path);
        }
        Ok(TransportOptions {
            plain_http: self
                .plain_http
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect::<HashSet<_>>(),
            force_https: self.https.iter().map(|h| h.to_ascii_lowercase()).collect(),
            ca_files,
            cert_dirs: Vec::new(),
            endpoints: HashMap::new(),
            hosts: HashMap::new(),
            max_manifest_bytes: HashMap::new(),
        }
        .with_default_cert_dirs())
    }
}

/// `ferry copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The image to copy: HOST/REPO[:TAG][@DIGEST] or ocidir://PATH[:TAG|@DIGEST].
    pub source: String,
    /// Where to: each may name another repository and tag; without a tag it is a copy by digest only.
    #[arg(required = true)]
    pub dest: Vec<String>,
    /// Copy only this platform (OS/ARCH[/VARIANT]); repeat for more. The result is a new index.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Vec<String>,
    /// Read and print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
    /// Blobs in flight at once.
    #[arg(long, default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,
    /// Blob transfers per registry host at once.
    #[arg(long, default_value_t = DEFAULT_PER_HOST)]
    pub per_host: usize,
    /// Leave signatures, attestations and SBOMs attached to the image behind.
    #[arg(long, conflicts_with = "artifact_type")]
    pub no_referrers: bool,
    /// Copy only attached artifacts of this type (e.g. application/vnd.dev.cosign.artifact.sig.v1+json); repeat for more.
    #[arg(long, value_name = "TYPE")]
    pub artifact_type: Vec<String>,
    /// Connection settings.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `ferry verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image: a reference in the policy's source repository, or just `:TAG` or `@DIGEST`.
    pub image: String,
    /// The environment whose `require:` gates are checked.
    #[arg(long)]
    pub env: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
    /// Connection settings.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `ferry demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the three layouts (default: a new temporary directory, kept).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
}

/// Libraries whose trace-level events can carry credentials (response bodies, signing
/// material): ferry drops those events whatever `RUST_LOG` asks.
pub const SECRET_BEARING_LOG_TARGETS: &[&str] =
    &["aws_", "gcp_auth", "hyper", "reqwest", "h2", "rustls"];

/// True for a log target under [`SECRET_BEARING_LOG_TARGETS`].
pub fn is_secret_bearing(target: &str) -> bool {
    SECRET_BEARING_LOG_TARGETS
        .iter()
        .any(|p| target.starts_with(p))
}

/// Runs a parsed command; the caller maps the error to an exit code.
pub async fn run(cli: Cli) -> Result<()> {
    let dir = cli.policies;
    match cli.command {
        Command::Copy(args) => copy(args, &dir).await,
        Command::Promote(args) => {
            let ctx = context(&dir, &args.connect, &args.platform)?;
            let opts = PromoteOptions {
                dry_run: args.dry_run,
                force_reason: args.reason.filter(|_| args.force),
            };
            let report = ctx
                .promote(&args.env, &args.image, &opts, &progress_for(args.output))
                .await?;
            finish_promote(&report, args.output)
        }
        Command::Rollback(args) => {
            let ctx = context(&dir, &args.connect, &[])?;
            let report = ctx
                .rollback(
                    &args.env,
                    args.to.as_deref(),
                    args.steps,
                    args.dry_run,
                    &progress_for(args.output),
                )
                .await?;
            finish_promote(&report, args.output)
        }
        Command::Status(args) => {
            let ctx = context(&dir, &args.connect, &[])?;
            let report = ctx.status(&args.env).await?;
            let mut stdout = std::io::stdout().lock();
            report::write_status(&mut stdout, &report, args.output)?;
            stdout.flush()?;
            match report.drift.len() {
                0 => Ok(()),
                _ => Err(Error::Failed(format!(
                    "{} has drifted: {}",
                    report.environment,
                    report.drift.join("; ")
                ))),
            }
        }
        Command::History(args) => {
            let ctx = context(&dir, &args.env.connect, &[])?;
            let records = ctx.history(&args.env.env).await?;
            let newest: Vec<_> = records.into_iter().rev().take(args.limit).collect();
            let mut stdout = std::io::stdout().lock();
            report::write_history(&mut stdout, &newest, args.env.output)?;
            Ok(stdout.flush()?)
        }
        Command::Mirror(args) => mirror(&dir, args).await,
        Command::Verify(args) => {
            let ctx = context(&dir, &args.connect, &[])?;
            let report = ctx.verify(&args.env, &args.image).await?;
            let mut stdout = std::io::stdout().lock();
            report::write_verify(&mut stdout, &report, args.output)?;
            Ok(stdout.flush()?)
        }
        Command::Policy(PolicyCommand::Check { output, offline }) => {
            let ctx = context(&dir, &ConnectArgs::default(), &[])?;
            if !offline {
                ctx.check_registries().await?;
            }
            let policies = ctx.policies;
            let mut stdout = std::io::stdout().lock();
            report::write_policies(&mut stdout, &policies, output)?;
            Ok(stdout.flush()?)
        }
        Command::Policy(PolicyCommand::Schema { kind, out }) => write_schemas(kind, out),
        Command::Demo(args) => demo(args).await,
        Command::Completions { shell } => {
            let mut stdout = std::io::stdout().lock();
            clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut stdout);
            Ok(stdout.flush()?)
        }
        Command::Man { out } => man(out),
    }
}

/// `ferry policy schema`: one kind to stdout, or files in a directory.
fn write_schemas(kind: Option<SchemaKind>, out: Option<PathBuf>) -> Result<()> {
    let Some(dir) = out else {
        let kind =
            kind.ok_or_else(|| Error::Usage("policy schema: give --kind or --out".into()))?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(schema::schema_text(kind).as_bytes())?;
        return Ok(stdout.flush()?);
    };
    let kinds = kind.map_or(SchemaKind::ALL.to_vec(), |k| vec![k]);
    std::fs::create_dir_all(&dir).map_err(|e| {
        Error::Usage(format!(
            "policy schema: cannot create {}: {e}",
            dir.display()
        ))
    })?;
    for kind in kinds {
        let path = dir.join(kind.file_name());
        std::fs::write(&path, schema::schema_text(kind)).map_err(|e| {
            Error::Usage(format!(
                "policy schema: cannot write {}: {e}",
                path.display()
            ))
        })?;
        println!("{}", path.display());
    }
    Ok(())
}

/// `ferry man`: the top page to stdout, or every command's page into a directory.
fn man(out: Option<PathBuf>) -> Result<()> {
    let cmd = Cli::command();
    let Some(dir) = out else {
        let mut stdout = std::io::stdout().lock();
        clap_mangen::Man::new(cmd).render(&mut stdout)?;
        return Ok(stdout.flush()?);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Usage(format!("man: cannot create {}: {e}", dir.display())))?;
    clap_mangen::generate_to(cmd, &dir)
        .map_err(|e| Error::Usage(format!("man: cannot write into {}: {e}", dir.display())))?;
    Ok(())
}

/// Policies from the directory, with the command line's connection flags under registries.yaml.
fn context(dir: &std::path::Path, connect: &ConnectArgs, platforms: &[String]) -> Result<Context> {
    let overrides = Overrides {
        platforms: platforms.to_vec(),
    };
    let policies = Policies::load(dir, &overrides)?;
    let options = CopyOptions {
        transport: policies.transport(connect.transport()?),
        host_limits: policies.host_limits(),
        auth_sources: policies.auth_sources(),
        ecr_create: policies.ecr_create(),
        ..Default::default()
    };
    Ok(Context { policies, options })
}

async fn mirror(dir: &std::path::Path, args: MirrorArgs) -> Result<()> {
    use crate::mirror::{MirrorOptions, Shard};
    let ctx = context(dir, &args.connect, &[])?;
    let shard = match (&args.shard, std::env::var("JOB_COMPLETION_INDEX").ok()) {
        (Some(s), _) => Some(Shard::parse(s).map_err(Error::Usage)?),
        (None, Some(index)) => {
            let count = args.shard_count.ok_or_else(|| {
                Error::Usage(
                    "JOB_COMPLETION_INDEX is set: give the completion count with --shard-count or FERRY_SHARD_COUNT".into(),
                )
            })?;
            Some(Shard::from_job_index(&index, count).map_err(Error::Usage)?)
        }
        (None, None) => None,
    };
    if args.parallel == 0 {
        return Err(Error::Usage("--parallel must be at least 1".into()));
    }
    let policies: Vec<&crate::policy::mirror::MirrorPolicy> = if args.names.is_empty() {
        ctx.policies.mirrors.values().collect()
    } else {
        args.names
            .iter()
            .map(|n| {
                ctx.policies.mirrors.get(n).ok_or_else(|| {
                    Error::Usage(format!(
                        "no mirror policy {n:?} in {} (known: {})",
                        dir.display(),
                        ctx.policies
                            .mirrors
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
            })
            .collect::<Result<_>>()?
    };
    if policies.is_empty() {
        return Err(Error::Usage(format!(
            "no mirror policy (kind: mirror) in {}",
            dir.display()
        )));
    }
    let mut options = ctx.options.clone();
    options.dry_run = args.dry_run;
    let engine = Engine::new(options);
    let targets: Vec<String> = {
        let mut t: Vec<String> = policies
            .iter()
            .flat_map(|p| p.targets.iter().map(|t| t.registry.to_string()))
            .collect();
        t.sort();
        t.dedup();
        t
    };
    let progress = if args.output == Format::Text {
        report::MirrorProgress::for_terminal(&targets)
    } else {
        report::MirrorProgress::hidden()
    };
    let opts = MirrorOptions {
        dry_run: args.dry_run,
        shard,
        fail_fast: args.fail_fast,
        parallel: args.parallel,
    };
    let result = crate::mirror::run(&policies, &engine, &opts, &progress).await?;
    drop(progress);
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
        if !path.is_empty() {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(report::mirror_markdown(&result).as_bytes())?;
        }
    }
    let mut stdout = std::io::stdout().lock();
    report::write_mirror(&mut stdout, &result, args.output)?;
    stdout.flush()?;
    let failures = result.failures();
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(Error::Failed(format!(
            "{} of {} images failed; first: {first}",
            failures.len(),
            result.images.len()
        ))),
    }
}

fn progress_for(output: Format) -> impl Fn(usize) -> Progress {
    move |n| {
        if output == Format::Text {
            Progress::for_terminal(&(1..=n).map(|i| format!("target {i}")).collect::<Vec<_>>())
        } else {
            Progress::hidden(n)
        }
    }
}

fn finish_promote(report: &crate::promote::PromoteReport, output: Format) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    report::write_promote(&mut stdout, report, output)?;
    stdout.flush()?;
    match report
        .targets
        .iter()
        .find_map(|t| Some((&t.target, t.error.as_ref()?)))
    {
        None => Ok(()),
        Some((target, e)) => Err(Error::Failed(format!(
            "{} of {} targets failed; {target}: {e}",
            report.failed(),
            report.targets.len()
        ))),
    }
}

async fn copy(args: CopyArgs, dir: &std::path::Path) -> Result<()> {
    let source = ImageRef::parse(&args.source)?.or_latest();
    let dests = args
        .dest
        .iter()
        .map(|d| ImageRef::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let platforms = args
        .platform
        .iter()
        .map(|p| {
            Platform::parse(p).ok_or_else(|| {
                Error::Usage(format!("--platform {p:?}: expected OS/ARCH[/VARIANT]"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if args.jobs == 0 || args.per_host == 0 {
        return Err(Error::Usage(
            "--jobs and --per-host must be at least 1".into(),
        ));
    }
    // registries.yaml, when the policy directory has one, says how to reach registries here too.
    let registries = Policies::registries_only(dir)?;
    let options = CopyOptions {
        platforms,
        dry_run: args.dry_run,
        jobs: args.jobs,
        per_host: args.per_host,
        transport: registries.transport(args.connect.transport()?),
        host_limits: registries.host_limits(),
        auth_sources: registries.auth_sources(),
        ecr_create: registries.ecr_create(),
        referrers: if args.no_referrers {
            Filter::off()
        } else {
            Filter {
                artifact_types: args.artifact_type,
                ..Filter::default()
            }
        },
        ..Default::default()
    };
    run_copy(&source, &dests, options, args.output).await
}

async fn run_copy(
    source: &ImageRef,
    dests: &[ImageRef],
    options: CopyOptions,
    output: Format,
) -> Result<()> {
    let engine = Engine::new(options);
    let progress = if output == Format::Text {
        Progress::for_terminal(&dests.iter().map(ToString::to_string).collect::<Vec<_>>())
    } else {
        Progress::hidden(dests.len())
    };
    let report = engine.copy(source, dests, &progress).await?;
    drop(progress);
    let mut stdout = std::io::stdout().lock();
    report::write_copy(&mut stdout, &report, output)?;
    stdout.flush()?;
    match report.failed() {
        0 => Ok(()),
        failed => Err(Error::Partial {
            failed,
            total: report.destinations.len(),
        }),
    }
}

async fn demo(args: DemoArgs) -> Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("ferry-demo-")
            .tempdir()
            .map_err(Error::Output)?
            .keep(),
    };
    let ci = dir.join("ci");
    let layout = crate::sample::Layout::create(&ci).map_err(Error::Output)?;
    // CI signs what it builds (cosign-style, with a sample key); prod requires that signature
    // and the BuildKit provenance every sample carries.
    let key = crate::sample::signing_key(1);
    let mut tags = Vec::new();
    for spec in crate::sample::demo_specs() {
        let w = layout.add_image(&spec).map_err(Error::Output)?;
        layout
            .add_signature(&w.digest, "ci/api", &key)
            .map_err(Error::Output)?;
        tags.push(w.tag);
    }
    let unsigned = crate::sample::ImageSpec {
        tag: "v1.2.0-rc.1".into(),
        seed: 3,
        ..crate::sample::ImageSpec::default()
    };
    layout.add_image(&unsigned).map_err(Error::Output)?;
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)?;
    for (name, text) in DEMO_POLICIES {
        std::fs::write(policies.join(name), text)?;
    }
    std::fs::write(
        policies.join("cosign.pub"),
        crate::sample::public_key_pem(&key),
    )?;
    let text = args.output == Format::Text;
    let say = |s: String| {
        if text {
            println!("\n$ {s}");
        }
    };
    if text {
        println!(
            "sample images {} written to {}; policies in {}",
            tags.join(", "),
            ci.display(),
            policies.display()
        );
    }
    let ctx = context(&policies, &ConnectArgs::default(), &[])?;
    let quiet = |n| Progress::hidden(n);
    for tag in &tags {
        for env in ["staging", "prod"] {
            say(format!("ferry promote {env} :{tag}"));
            let r = ctx
                .promote(env, &format!(":{tag}"), &PromoteOptions::default(), &quiet)
                .await?;
            finish_promote(&r, args.output)?;
        }
    }
    say("ferry promote prod :v1.0.0   # not staging's digest: the gate refuses".into());
    match ctx
        .promote("prod", ":v1.0.0", &PromoteOptions::default(), &quiet)
        .await
    {
        Err(e @ Error::Gate(_)) if text => println!("ferry: {e} (exit {})", e.exit_code()),
        Err(Error::Gate(_)) => {}
        Err(e) => return Err(e),
        Ok(_) => return Err(Error::Failed("the demo's gate did not refuse".into())),
    }
    say(format!(
        "ferry verify :{} --env prod   # unsigned: the signature gate refuses",
        unsigned.tag
    ));
    match ctx.verify("prod", &format!(":{}", unsigned.tag)).await {
        Err(e @ Error::Gate(_)) if text => println!("ferry: {e} (exit {})", e.exit_code()),
        Err(Error::Gate(_)) => {}
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(Error::Failed(
                "the demo's signature gate did not refuse".into(),
            ))
        }
    }
    say("ferry status prod".into());
    let mut stdout = std::io::stdout().lock();
    report::write_status(&mut stdout, &ctx.status("prod").await?, args.output)?;
    drop(stdout);
    say("ferry rollback prod".into());
    let r = ctx.rollback("prod", None, 1, false, &quiet).await?;
    finish_promote(&r, args.output)?;
    say("ferry status prod".into());
    let status = ctx.status("prod").await?;
    let records = ctx.history("prod").await?;
    let mut stdout = std::io::stdout().lock();
    report::write_status(&mut stdout, &status, args.output)?;
    drop(stdout);
    say("ferry history prod".into());
    let newest: Vec<_> = records.into_iter().rev().collect();
    let mut stdout = std::io::stdout().lock();
    report::write_history(&mut stdout, &newest, args.output)?;
    if text {
        writeln!(
            stdout,
            "\nthe three \"registries\" are OCI layouts in {}; try: ferry --policies {} status prod",
            dir.display(),
            policies.display()
        )?;
    }
    Ok(stdout.flush()?)
}

/// The demo's policies: CI builds land in `ci`, staging is one layout, prod two.
const DEMO_POLICIES: [(&str, &str); 2] = [
    (
        "staging.yaml",
        "version: 1\nenvironment: staging\nsource: ocidir://../ci\ntargets:\n  - layout: ../registry-a\ntags: [staging]\n",
    ),
    (
        "prod.yaml",
        "version: 1\nenvironment: prod\nsource: ocidir://../ci\npromote_from: staging\ntargets:\n  - layout: ../registry-b\n  - layout: ../registry-c\ntags: [prod, \"{source_tag}\", semver]\nprotect: [\"v*\"]\nrequire:\n  attestation:\n    predicate_type: https://slsa.dev/provenance/v0.2\n    fields: {predicate.builder.id: ferry-sample}\n  signature:\n    public_key: cosign.pub\n",
    ),
];
