use std::{io, path::PathBuf, process::ExitStatus, sync::Arc};

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
    #[error("decoding the JSON of {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} printed {text:?}, which is not an IPv6 address")]
    Address {
        what: &'static str,
        text: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("{what} printed {text:?}, which is not an IPv6 prefix")]
    Prefix {
        what: &'static str,
        text: String,
        #[source]
        source: ipnet::AddrParseError,
    },
    #[error("{program} is missing (`cargo xtask setup` installs Debian's {package})")]
    Missing {
        program: PathBuf,
        package: &'static str,
    },
    #[error("there is no user {0} (its Debian package creates it)")]
    NoUser(&'static str),
    /// BIRD's own error text (code 8xxx/9xxx) for a request.
    #[error("BIRD refused `{request}`: {reply}")]
    Bird { request: String, reply: String },
    #[error("BIRD's reply to `{request}` has a line that is not BIRD's protocol: {line:?}")]
    BirdProtocol { request: String, line: String },
    #[error("BIRD closed its control socket before it finished replying to `{request}`")]
    BirdClosed { request: String },
    #[error("the route monitor could not subscribe")]
    Subscribe(#[source] io::Error),
    /// The monitor's socket failed (a lost notification, `ENOBUFS`): no later wait can trust it.
    #[error("the route monitor stopped")]
    MonitorStopped(#[source] Arc<io::Error>),
    #[error("{what} exited ({status}); its log ends: {log}")]
    Exited {
        what: String,
        status: ExitStatus,
        log: String,
    },
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout { what: String, secs: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
