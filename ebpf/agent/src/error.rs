use std::{io, path::PathBuf};

/// Errors of the loader library. Each names what it was doing and on which object or path, so an
/// operator can act on the message alone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the embedded eBPF object is empty: it was built with AYA_BUILD_SKIP or by a stub build"
    )]
    EmptyObject,
    #[error("{path} is not on a bpffs mount (mount one with `mount -t bpf bpf /sys/fs/bpf`)")]
    NotBpffs { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing the eBPF object: {0}")]
    Object(#[from] aya_obj::ParseError),
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("program {0} is not in the eBPF object")]
    NoSuchProgram(String),
    #[error("program {0} is not a tc classifier")]
    NotClassifier(String),
    #[error("map {name}: {source}")]
    Map {
        name: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "pinned map {name} at {path} does not match this build ({detail}); \
         remove it to start with empty state or run a build with the same map layout"
    )]
    IncompatibleMap {
        name: String,
        path: PathBuf,
        detail: String,
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
    #[error("invalid NAT64 configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Nat64Config(Vec<String>),
    #[error("program {name} is not pinned at {path}: is sixlane-agent running?")]
    NotPinned { name: String, path: PathBuf },
    #[error("map {name} is not pinned at {path}: load the datapath first (sixlane-agent load)")]
    MapNotPinned { name: String, path: PathBuf },
    #[error("map {map}: {source}")]
    Syscall {
        map: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("services: map {} not opened", .0.name())]
    MapNotOpened(crate::services::MapId),
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
}
