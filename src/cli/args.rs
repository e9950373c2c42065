//! cli::args: the command line's shape — every subcommand, flag and default, as clap derives it.

use std::path::PathBuf;

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::str::FromStr;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};

use crate::auth::oneoff::{HostLogin, Login};
use crate::copy::{DEFAULT_JOBS, DEFAULT_PER_HOST};
use crate::policy::schema::SchemaKind;
use crate::report::Format;

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
    /// Verify one Sigstore bundle over a file or a digest, offline (the sigstore-conformance protocol).
    VerifyBundle(VerifyBundleArgs),
    /// Mirror repositories and tags to other registries by mirror policies (`kind: mirror`): incremental, shardable.
    Mirror(MirrorArgs),
    /// Delete old tags and images by retention policies (`kind: retention`), never what an environment runs or could roll back to.
    Prune(PruneArgs),
    /// Show what an image is: digest, media type, size, platforms, config and layers, what is attached; or its manifest's bytes (--raw).
    Inspect(InspectArgs),
    /// Print an image's manifest digest (sha256:…) and nothing else.
    Digest(DigestArgs),
    /// List every tag of a repository, sorted.
    Tags(TagsArgs),
    /// Check a login with a registry, then store it in Docker's config.json (or the credential helper it names).
    Login(LoginArgs),
    /// Remove a registry's login from Docker's config.json (and the credential helper it names).
    Logout(LogoutArgs),
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

impl Command {
    /// The output format the command was asked for (text where it has no choice).
    pub fn output(&self) -> Format {
        match self {
            Command::Copy(a) => a.output,
            Command::Promote(a) => a.common.output,
            Command::Rollback(a) => a.common.output,
            Command::Status(a) => a.common.output,
            Command::History(a) => a.env.common.output,
            Command::Verify(a) => a.common.output,
            Command::Mirror(a) => a.common.output,
            Command::Prune(a) => a.common.output,
            Command::Policy(PolicyCommand::Check { output, .. }) => *output,
            Command::Demo(a) => a.output,
            Command::Inspect(a) => a.common.output,
            Command::Tags(a) => a.common.output,
            Command::Digest(_) | Command::Login(_) | Command::Logout(_) => Format::Text,
            Command::VerifyBundle(_)
            | Command::Policy(PolicyCommand::Schema { .. })
            | Command::Completions { .. }
            | Command::Man { .. } => Format::Text,
        }
    }
}

/// `ferry policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate every policy file and print the resolved policies.
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Format,
        /// Also ask the registries: ECR's tag immutability for each ECR target (needs AWS
        /// credentials). Default: the files only, with no network.
        #[arg(long)]
        online: bool,
        /// The default (files only); kept so that older scripts keep working.
        #[arg(long, hide = true, conflicts_with = "online")]
        offline: bool,
    },
    /// Print the JSON Schema of a kind of policy file, or write all of them into a directory.
    Schema {
        /// The kind of policy file.
        #[arg(long, value_enum, required_unless_present = "out")]
        kind: Option<SchemaKind>,
        /// Write `environment.json`, `mirror.json`, `registries.json` and `retention.json` into this directory
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
    /// For a release (`images:` in the policy), every image as `NAME:TAG` or `NAME@DIGEST`.
    #[arg(value_name = "IMAGE", required_unless_present_any = ["tag", "from"])]
    pub images: Vec<String>,
    /// Promote every image of the release at this tag of its source.
    #[arg(long, value_name = "TAG", conflicts_with_all = ["images", "from"])]
    pub tag: Option<String>,
    /// Promote what this environment runs now, image by image (by digest).
    #[arg(long, value_name = "ENV", conflicts_with_all = ["images"])]
    pub from: Option<String>,
    /// Read, check the gates and print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Go past a refused promote_from gate (protected tags still never move). Needs --reason.
    #[arg(long, requires = "reason")]
    pub force: bool,
    /// Why --force was needed; recorded in history.
    #[arg(long, requires = "force", value_name = "TEXT")]
    pub reason: Option<String>,
    /// Copy only these platforms, instead of the policy's (repeat, or separate with commas).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Output format and connection settings.
    #[command(flatten)]
    pub common: Common,
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
    /// Output format and connection settings.
    #[command(flatten)]
    pub common: Common,
}

/// `ferry status`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The environment.
    pub env: String,
    /// Output format and connection settings.
    #[command(flatten)]
    pub common: Common,
}

/// `ferry mirror`.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Mirror policies to run (their `name`); none: every mirror policy.
    pub names: Vec<String>,
    /// Read and decide, print the plan, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this shard's tags, split by a stable hash of each selected tag.
    #[command(flatten)]
    pub sharding: ShardArgs,
    /// Stop starting new images after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Images worked on at once.
    #[arg(long, default_value_t = crate::mirror::DEFAULT_PARALLEL)]
    pub parallel: usize,
    /// Output format and connection settings.
    #[command(flatten)]
    pub common: Common,
}

/// `ferry prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Retention policies to run (their `name`); none: every retention policy.
    pub names: Vec<String>,
    /// Read and decide, print the plan, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this shard's repositories, split by a stable hash of each repository (a repository
    /// is pruned whole by one shard).
    #[command(flatten)]
    pub sharding: ShardArgs,
    /// Requests in flight per repository.
    #[arg(long, default_value_t = crate::prune::DEFAULT_PARALLEL)]
    pub parallel: usize,
    /// Output format and connection settings.
    #[command(flatten)]
    pub common: Common,
}

/// `--shard` and `--shard-count`, for `mirror` and `prune`.
#[derive(Debug, Args)]
pub struct ShardArgs {
    /// Only this shard's share of the work: K/N (default: a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX with --shard-count).
    #[arg(long)]
    pub shard: Option<String>,
    /// The number of shards when the index comes from JOB_COMPLETION_INDEX.
    #[arg(long, env = "FERRY_SHARD_COUNT")]
    pub shard_count: Option<u32>,
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

/// The flags of every command that reads registries and reports on them.
#[derive(Debug, Args)]
pub struct Common {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
    /// Connection settings (registries.yaml takes precedence per registry).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// One-off logins.
    #[command(flatten)]
    pub creds: CredsArgs,
}

/// One-off logins, over every config file, for this run only.
#[derive(Debug, Args, Clone, Default)]
pub struct CredsArgs {
    /// Log in to this registry as USER for this run, over Docker's config and every other
    /// source (repeat for more registries). Without :PASS, the password is asked for on the
    /// terminal.
    #[arg(long = "creds", value_name = "HOST=USER[:PASS]", value_parser = Quiet::<HostLogin>::new())]
    pub creds: Vec<HostLogin>,
}

/// Parses a flag's value with `FromStr`, and on failure says what was expected without
/// repeating the value: it may hold a password.
#[derive(Clone)]
pub struct Quiet<T>(PhantomData<fn() -> T>);

impl<T> Quiet<T> {
    /// A parser for `T`.
    pub fn new() -> Self {
        Quiet(PhantomData)
    }
}

impl<T> Default for Quiet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TypedValueParser for Quiet<T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg.map(|a| a.to_string()).unwrap_or_default();
        let fail = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{name}: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| fail("not valid UTF-8".into()))?;
        text.parse().map_err(|e: T::Err| fail(e.to_string()))
    }
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

/// `ferry copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The image to copy: HOST/REPO[:TAG][@DIGEST] or ocidir://PATH[:TAG|@DIGEST].
    pub source: String,
    /// Where to: each may name another repository and tag; without a tag it is a copy by digest only.
    #[arg(required = true)]
    pub dest: Vec<String>,
    /// Copy only this platform (OS/ARCH[/VARIANT]); repeat, or separate with commas, for more.
    /// The result is a new index.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_delimiter = ',')]
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
    /// Log in to the source's registry as USER for this run (skopeo's flag), over every config
    /// file. Without :PASS, the password is asked for on the terminal.
    #[arg(long, value_name = "USER[:PASS]", value_parser = Quiet::<Login>::new())]
    pub src_creds: Option<Login>,
    /// Log in to the destinations' registries as USER for this run (skopeo's flag), over every
    /// config file. Without :PASS, the password is asked for on the terminal.
    #[arg(long, value_name = "USER[:PASS]", value_parser = Quiet::<Login>::new())]
    pub dest_creds: Option<Login>,
    /// Connection settings.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// One-off logins.
    #[command(flatten)]
    pub creds: CredsArgs,
}

/// `ferry inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image: HOST/REPO[:TAG][@DIGEST] or ocidir://PATH[:TAG|@DIGEST] (no tag: latest).
    pub image: String,
    /// Print the manifest's bytes exactly as served, and nothing else (not even a newline).
    #[arg(long, conflicts_with = "output")]
    pub raw: bool,
    /// Of a multi-platform image, this platform's manifest (OS/ARCH[/VARIANT]).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Output, connection and one-off login flags.
    #[command(flatten)]
    pub common: Common,
}

/// `ferry digest`.
#[derive(Debug, Args)]
pub struct DigestArgs {
    /// The image: HOST/REPO[:TAG][@DIGEST] or ocidir://PATH[:TAG|@DIGEST] (no tag: latest).
    pub image: String,
    /// Connection settings.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// One-off logins.
    #[command(flatten)]
    pub creds: CredsArgs,
}

/// `ferry tags`.
#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The repository: HOST/REPO or ocidir://PATH.
    pub repository: String,
    /// Tags asked for per request; the registry's `Link` header leads to the next page.
    #[arg(long, value_name = "N", default_value_t = crate::registry::http::TAGS_PAGE_SIZE)]
    pub page_size: usize,
    /// Output (JSON: skopeo list-tags' `{"Repository": …, "Tags": […]}`), connection and
    /// one-off login flags.
    #[command(flatten)]
    pub common: Common,
}

/// `ferry login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry: HOST[:PORT] (`docker.io` for Docker Hub).
    pub registry: String,
    /// The user (asked for on a terminal when left out).
    #[arg(short, long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the password (or token) from standard input; one trailing newline is dropped.
    #[arg(long)]
    pub password_stdin: bool,
    /// Connection settings.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `ferry logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry: HOST[:PORT] (`docker.io` for Docker Hub).
    pub registry: String,
}

/// `ferry verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image: a reference in the policy's source repository, or just `:TAG` or `@DIGEST`.
    pub image: String,
    /// The environment whose `require:` gates are checked.
    #[arg(long)]
    pub env: String,
    /// Output format and connection settings.
    #[command(flatten)]
    pub common: Common,
}

/// `ferry verify-bundle`: the sigstore-conformance client protocol's verification command.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("signer").required(true).args(["certificate_identity", "certificate_identity_regexp", "key"])))]
pub struct VerifyBundleArgs {
    /// The Sigstore bundle (JSON).
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    /// The signing certificate's subject must be exactly this (a workflow URI, an email).
    #[arg(
        long,
        value_name = "ID",
        requires = "certificate_oidc_issuer",
        conflicts_with = "key"
    )]
    pub certificate_identity: Option<String>,
    /// The signing certificate's subject must match this regular expression.
    #[arg(long, value_name = "REGEX", requires = "certificate_oidc_issuer", conflicts_with_all = ["key", "certificate_identity"])]
    pub certificate_identity_regexp: Option<String>,
    /// The OIDC issuer the signing certificate must name.
    #[arg(long, value_name = "URL", conflicts_with = "key")]
    pub certificate_oidc_issuer: Option<String>,
    /// Verify with this public key (PEM) instead: a managed-key bundle.
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// The trusted root (`trusted_root.json`); default: the embedded public-good root.
    #[arg(long, value_name = "FILE", conflicts_with = "staging")]
    pub trusted_root: Option<PathBuf>,
    /// Use the embedded root of Sigstore's staging instance.
    #[arg(long)]
    pub staging: bool,
    /// The artifact: a file, or `sha256:HEX`.
    #[arg(value_name = "FILE_OR_DIGEST")]
    pub artifact: String,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn platforms_may_be_comma_separated_or_repeated() {
        let cli = Cli::try_parse_from([
            "ferry",
            "copy",
            "a",
            "b",
            "--platform",
            "linux/amd64,linux/arm64",
            "--platform",
            "linux/s390x",
        ])
        .unwrap();
        let Command::Copy(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.platform, ["linux/amd64", "linux/arm64", "linux/s390x"]);
    }

    #[test]
    fn one_off_logins_parse_and_a_bad_one_is_refused_without_echo() {
        let cli = Cli::try_parse_from([
            "ferry",
            "copy",
            "a",
            "b",
            "--src-creds",
            "alice:pw:1",
            "--dest-creds",
            "bob",
            "--creds",
            "ghcr.io=carol:tok",
        ])
        .unwrap();
        let Command::Copy(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.src_creds.as_ref().unwrap().username, "alice");
        assert_eq!(
            a.src_creds
                .as_ref()
                .unwrap()
                .password
                .as_ref()
                .unwrap()
                .expose(),
            "pw:1"
        );
        assert!(a.dest_creds.as_ref().unwrap().password.is_none());
        assert_eq!(a.creds.creds[0].registry.as_str(), "ghcr.io");
        let shown = format!("{a:?}");
        assert!(!shown.contains("pw:1") && !shown.contains("tok"), "{shown}");

        for bad in [
            vec!["ferry", "inspect", "x", "--creds", "ghcr.iocarol:hunter2"],
            vec!["ferry", "copy", "a", "b", "--src-creds", ":hunter2"],
        ] {
            let e = Cli::try_parse_from(&bad).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let text = e.to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("USER[:PASS]"), "{text}");
        }
    }
}
