use std::{io, path::PathBuf};

/// Harness errors: a failed command carries its full command line and stderr. A message is the
/// context only; the cause is the `#[source]` (print the chain: `{:#}` through anyhow, or
/// `sixlane_attach::chain`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("`{cmd}` could not be started")]
    Spawn {
        cmd: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Sys(#[from] nix::Error),
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout { what: String, secs: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
