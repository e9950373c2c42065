//! ferry's binary: parse arguments, set up logging, run the library, map the outcome to an exit code.
// The command future is deep (every subcommand's async code); CI's build (clippy-driver,
// CARGO_INCREMENTAL=0) overflowed the default query depth computing main's block layout.
#![recursion_limit = "256"]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{self, Cli};
use ferry::error::{ErrorChain, EXIT_OK, EXIT_USAGE};
use ferry::report;
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "ferry=info",
        2 => "ferry=debug",
        _ => "ferry=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Secrets never reach a log, whatever RUST_LOG asks: some libraries trace whole responses
    // (the AWS SDK's GetAuthorizationToken included) at trace level.
    let no_secrets = tracing_subscriber::filter::filter_fn(|m| {
        *m.level() != tracing::Level::TRACE || !is_secret_bearing(m.target())
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                // Through the progress bars, which it lifts off the screen for each line.
                .with_writer(report::LogLine::default)
                .with_ansi(report::use_colour(
                    std::io::stderr().is_terminal(),
                    std::env::var_os("NO_COLOR").as_deref(),
                    std::env::var_os("CLICOLOR_FORCE").as_deref(),
                ))
                .with_target(false)
                .with_filter(filter)
                .with_filter(no_secrets),
        )
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: failed to start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = cli::run(cli) => Ok(r),
            signal = interrupted() => Err(signal),
        }
    });
    // Dropping the runtime cancels whatever was in flight: content is written before tags, so
    // stopping anywhere leaves every tag where it was or at complete content.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(Ok(())) => ExitCode::from(EXIT_OK),
        // A reader that stopped early (`ferry demo | head -1`): done, as for `cat` or `rg`.
        Ok(Err(e)) if is_broken_pipe(&e) => ExitCode::from(EXIT_OK),
        Ok(Err(e)) => {
            eprintln!("ferry: {}", ErrorChain(&e));
            ExitCode::from(e.exit_code())
        }
        Err((name, code)) => {
            eprintln!("ferry: interrupted by {name}: stopped; no tag was moved after it");
            ExitCode::from(code)
        }
    }
}

/// True when writing ferry's own output failed because stdout's reader has gone. Only the
/// output error counts: a broken pipe further down a cause chain is a registry connection that
/// broke, a real failure that must not exit 0.
fn is_broken_pipe(e: &ferry::Error) -> bool {
    matches!(e, ferry::Error::Output(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Libraries whose trace-level events can carry credentials (response bodies, signing
/// material): ferry drops those events whatever `RUST_LOG` asks.
const SECRET_BEARING_LOG_TARGETS: &[&str] =
    &["aws_", "gcp_auth", "hyper", "reqwest", "h2", "rustls"];

/// True for a log target under [`SECRET_BEARING_LOG_TARGETS`].
fn is_secret_bearing(target: &str) -> bool {
    SECRET_BEARING_LOG_TARGETS
        .iter()
        .any(|p| target.starts_with(p))
}

/// Resolves on SIGINT or SIGTERM with the signal's name and the shell's exit code for it.
async fn interrupted() -> (&'static str, u8) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => ("SIGINT", 130),
        _ = term.recv() => ("SIGTERM", 143),
    }
}
