//! cli: the command-line surface — argument types and the dispatch from a parsed command to the library.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::copy::{CopyOptions, Engine, DEFAULT_JOBS, DEFAULT_PER_HOST};
use crate::error::{Error, Result};
use crate::manifest::Platform;
use crate::reference::ImageRef;
use crate::report::{self, Format, Progress};
use crate::transport::TransportOptions;

/// Move container images between registries by digest.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy an image (every platform, attestation and artifact under it) to one or more destinations.
    Copy(CopyArgs),
    /// Generate a sample image in an OCI layout and copy it to two other layouts: no server, no credentials.
    Demo(DemoArgs),
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

/// Runs a parsed command; the caller maps the error to an exit code.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Copy(args) => copy(args).await,
        Command::Demo(args) => demo(args).await,
    }
}

async fn copy(args: CopyArgs) -> Result<()> {
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
    let options = CopyOptions {
        platforms,
        dry_run: args.dry_run,
        jobs: args.jobs,
        per_host: args.per_host,
        transport: args.connect.transport()?,
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
    let src = dir.join("source");
    let layout = crate::sample::Layout::create(&src).map_err(Error::Output)?;
    let mut first = None;
    for spec in crate::sample::demo_specs() {
        let w = layout.add_image(&spec).map_err(Error::Output)?;
        first.get_or_insert(w.tag);
    }
    let tag = first.ok_or_else(|| Error::Usage("the demo set is empty".into()))?;
    if args.output == Format::Text {
        println!("sample image written to {}", src.display());
    }
    let source = ImageRef::parse(&format!("ocidir://{}:{tag}", src.display()))?;
    let dests = ["mirror-a", "mirror-b"]
        .map(|n| ImageRef::parse(&format!("ocidir://{}:{tag}", dir.join(n).display())))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    run_copy(&source, &dests, CopyOptions::default(), args.output).await
}
