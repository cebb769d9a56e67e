use std::{fmt, io, path::PathBuf};

/// Errors of the loader library. Each names what it was doing and on which object or path, so an
/// operator can act on the message alone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Pins and attachment (the layout, tc filters, TCX links).
    #[error(transparent)]
    Attach(#[from] sixlane_attach::Error),
    #[error(
        "the embedded eBPF object is empty: it was built with AYA_BUILD_SKIP or by a stub build"
    )]
    EmptyObject,
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
    #[error("invalid NAT64 configuration:\n{}", list(.0))]
    Nat64Config(Vec<Problem>),
    /// The message is the context only; `{:#}` appends the parser's (the source).
    #[error("invalid NAT64 configuration")]
    Nat64Parse(#[source] serde_yaml_ng::Error),
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
    // The agent's configuration. These messages give the context only: the cause is the source,
    // which `{:#}` (what `main` prints) appends, so nothing is said twice.
    #[error("reading {path}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}")]
    ConfigParse {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("invalid configuration:\n{}", list(.0))]
    ConfigInvalid(Vec<Problem>),
    // The node agent (`daemon::run`) could not start, or had to stop. Context only, as above.
    #[error("reading the host name")]
    HostName(#[source] nix::errno::Errno),
    /// A start-up step (loading the datapath, programming NAT64, the service sink) failed.
    #[error("{step}")]
    Startup {
        step: &'static str,
        #[source]
        source: Box<Error>,
    },
    #[error("binding {key} {addr}")]
    Listen {
        key: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to the API server (in-cluster config or $KUBECONFIG)")]
    KubeClient(#[source] kube::Error),
    #[error("opening rtnetlink")]
    Rtnetlink(#[source] crate::node::netlink::NetlinkError),
    #[error("{signal} handler")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the source stopped")]
    SourceStopped,
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

/// One thing wrong with a configuration: its key (`section.key`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub section: &'static str,
    /// The key within `section` (`address`, `ports.tcp`).
    pub key: &'static str,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}: {}", self.section, self.key, self.message)
    }
}

/// The problems of one configuration section, collected so every one is reported at once.
#[derive(Debug)]
pub(crate) struct Problems {
    section: &'static str,
    list: Vec<Problem>,
}

impl Problems {
    pub fn new(section: &'static str) -> Self {
        Self {
            section,
            list: Vec::new(),
        }
    }

    pub fn add(&mut self, key: &'static str, message: impl Into<String>) {
        self.list.push(Problem {
            section: self.section,
            key,
            message: message.into(),
        });
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }
}

/// Problems as the bulleted list of an invalid-configuration message.
fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
