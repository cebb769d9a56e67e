//! The plugin's one error type. Every variant maps to a CNI spec error code, and its message names
//! the environment variable or configuration field at fault so an operator can act on it alone.
//! A message is that context only; the cause is the `#[source]`, so the error document's
//! `details` and the log print the whole [`chain`](sixlane_attach::chain).

use std::{io, path::PathBuf};

/// CNI spec error codes (SPEC.md, "Error"), plus the plugin-specific range (100+).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// sixlane-specific: CHECK found the attachment different from `prevResult`.
    pub const CHECK_FAILED: u32 = 100;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("incompatible CNI version: {0}")]
    IncompatibleVersion(String),
    #[error("unsupported field {field}={value}: {reason}")]
    Unsupported {
        field: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    UnknownContainer(String),
    #[error("invalid environment variable {var}: {reason}")]
    Env { var: &'static str, reason: String },
    /// The variable names something the plugin cannot use (`CNI_NETNS` it cannot open).
    #[error("invalid environment variable {var}")]
    EnvUnusable {
        var: &'static str,
        #[source]
        source: Box<Error>,
    },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("netlink {what}")]
    Netlink {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("decoding the network configuration")]
    Decode(#[source] serde_json::Error),
    #[error("decoding the network configuration: it is not a JSON object")]
    NotAnObject,
    /// A known field holding the wrong JSON type: the configuration does not decode (code 6,
    /// as the reference plugins' unmarshalling fails), before anything is written.
    #[error("decoding the network configuration: {field} must be {want}")]
    WrongType { field: String, want: &'static str },
    #[error("invalid network configuration: {field}: {reason}")]
    Config { field: String, reason: String },
    /// A field serde could not decode into its type (`prevResult`, `dns`): code 6 as well.
    #[error("invalid network configuration: {field}")]
    ConfigDecode {
        field: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    TryAgain(String),
    #[error("{0}")]
    NotAvailable(String),
    #[error("CHECK: {0}")]
    Check(String),
    /// Boxed: aya's errors inside are large, and every `Result` of the plugin carries this type.
    #[error("dataplane: {what}")]
    Dataplane {
        what: String,
        #[source]
        source: Box<sixlane_attach::Error>,
    },
    /// Several independent failures (DEL and GC go on after an error and report them all), each
    /// with its causes: they are not one chain, so the message holds them.
    #[error("{}", many(.0))]
    Many(Vec<Error>),
}

impl Error {
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn wrong_type(field: impl Into<String>, want: &'static str) -> Self {
        Self::WrongType {
            field: field.into(),
            want,
        }
    }

    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub fn netlink(what: impl Into<String>, source: io::Error) -> Self {
        Self::Netlink {
            what: what.into(),
            source,
        }
    }

    pub fn config_decode(field: impl Into<String>, source: serde_json::Error) -> Self {
        Self::ConfigDecode {
            field: field.into(),
            source,
        }
    }

    pub fn dataplane(what: impl Into<String>, source: sixlane_attach::Error) -> Self {
        Self::Dataplane {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// The spec code this error is reported with.
    pub fn code(&self) -> u32 {
        match self {
            Self::IncompatibleVersion(_) => code::INCOMPATIBLE_VERSION,
            Self::Unsupported { .. } => code::UNSUPPORTED_FIELD,
            Self::UnknownContainer(_) => code::UNKNOWN_CONTAINER,
            Self::Env { .. } | Self::EnvUnusable { .. } => code::INVALID_ENV,
            Self::Io { .. } | Self::Netlink { .. } | Self::Dataplane { .. } => code::IO,
            Self::Decode(_)
            | Self::NotAnObject
            | Self::WrongType { .. }
            | Self::ConfigDecode { .. } => code::DECODE,
            Self::Config { .. } => code::INVALID_CONFIG,
            Self::TryAgain(_) => code::TRY_AGAIN,
            Self::NotAvailable(_) => code::NOT_AVAILABLE,
            Self::Check(_) => code::CHECK_FAILED,
            Self::Many(errs) => errs.first().map_or(code::IO, Self::code),
        }
    }

    /// The spec's short `msg` for this error (the full text goes to `details`).
    pub fn summary(&self) -> &'static str {
        match self.code() {
            code::INCOMPATIBLE_VERSION => "incompatible CNI version",
            code::UNSUPPORTED_FIELD => "unsupported field in network configuration",
            code::UNKNOWN_CONTAINER => "unknown container",
            code::INVALID_ENV => "invalid environment variables",
            code::IO => "I/O failure",
            code::DECODE => "failed to decode content",
            code::INVALID_CONFIG => "invalid network configuration",
            code::TRY_AGAIN => "try again later",
            code::NOT_AVAILABLE => "plugin not available",
            code::CHECK_FAILED => "attachment does not match prevResult",
            _ => "error",
        }
    }

    /// Whether a netlink/io error is "no such object" (ENODEV, ENOENT, ESRCH): DEL treats those as
    /// already done.
    pub fn is_not_found(&self) -> bool {
        let errno = match self {
            Self::Io { source, .. } | Self::Netlink { source, .. } => source.raw_os_error(),
            _ => None,
        };
        matches!(
            errno,
            Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The failures of [`Error::Many`], each with its chain, separated by "; ".
fn many(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| sixlane_attach::chain(e).to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
