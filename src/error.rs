//! error: the crate's top-level error, with the context a one-line message needs, its exit codes, and how any error prints on one line with its causes.

use crate::reference::InvalidReference;
use crate::registry::RegistryError;

/// Exit code: everything succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code: some work failed (a destination, a registry, bad content).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or configuration; nothing was attempted.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: a policy gate refused.
pub const EXIT_GATE: u8 = 3;

/// What can stop a ferry command as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference could not be parsed.
    #[error(transparent)]
    Reference(#[from] InvalidReference),
    /// A policy file is wrong.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// Flags or configuration were wrong.
    #[error("{0}")]
    Usage(String),
    /// The source image could not be read.
    #[error("failed to read {reference}: {source}")]
    Source {
        /// The source reference.
        reference: String,
        /// The cause.
        #[source]
        source: Box<RegistryError>,
    },
    /// Some destinations failed (their errors are in the report).
    #[error("{failed} of {total} destinations failed")]
    Partial {
        /// How many failed.
        failed: usize,
        /// How many there were.
        total: usize,
    },
    /// A policy gate refused; nothing was written.
    #[error("refused: {0}")]
    Gate(String),
    /// The work failed (a registry, content, history); the message says where.
    #[error("{0}")]
    Failed(String),
    /// Writing the report failed.
    #[error("failed to write output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Reference(_) | Error::Policy(_) | Error::Usage(_) => EXIT_USAGE,
            Error::Gate(_) => EXIT_GATE,
            Error::Source { .. } | Error::Partial { .. } | Error::Failed(_) | Error::Output(_) => {
                EXIT_FAILED
            }
        }
    }
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line: the error, then `: cause` for each source (as nextest's
/// `DisplayErrorChain` does). A cause the message above it already ends with is not repeated:
/// some errors (a registry's I/O error, a history store error) print their cause inline.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !last.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            cause = c.source();
        }
        Ok(())
    }
}
