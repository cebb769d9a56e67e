use std::{io, path::PathBuf};

/// Errors of pinning lookups and attachment. Each names what it was doing and on which object,
/// path or interface, so an operator can act on the message alone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} is not on a bpffs mount (mount one with `mount -t bpf bpf /sys/fs/bpf`)")]
    NotBpffs { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("program {name}: {source}")]
    Program {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("link {path}: {source}")]
    Link {
        path: PathBuf,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("tc: {what} on {iface}: {source}")]
    Tc {
        what: &'static str,
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("program {name} is not pinned at {path}: is sixlane-agent running?")]
    NotPinned { name: String, path: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn program(name: impl Into<String>, source: aya::programs::ProgramError) -> Self {
        Error::Program {
            name: name.into(),
            source,
        }
    }
}
