//! The crate's one error type. Each variant names what the agent was doing and on which object,
//! path or key, so an operator can act on the message alone.
//!
//! A message is that context only: the cause is the `#[source]`, and whoever prints an error
//! prints its chain (`main` with anyhow's `{:#}`, logs, status and readiness reasons with
//! [`sixlane_attach::chain`]), so every cause is said once.
//!
//! This module imports only leaf modules of the crate (ones that import nothing of it), so any
//! module can return an [`Error`] without an import cycle.

use std::{
    fmt, io,
    net::{Ipv6Addr, SocketAddr},
    path::PathBuf,
};

use ipnet::Ipv6Net;

use crate::{
    node::candidate::{Rejected, Unusable},
    problem::Problem,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Pins and attachment (the layout, tc filters, TCX links).
    #[error(transparent)]
    Attach(#[from] sixlane_attach::Error),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    // Loading the eBPF object.
    #[error(
        "the embedded eBPF object is empty: it was built with AYA_BUILD_SKIP or by a stub build"
    )]
    EmptyObject,
    #[error("parsing the eBPF object")]
    Object(#[from] aya_obj::ParseError),
    #[error("loading the eBPF object")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}")]
    Program {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("program {0} is not in the eBPF object")]
    NoSuchProgram(String),
    #[error("program {0} is not a tc classifier")]
    NotClassifier(String),
    #[error("pinning {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },

    // The pinned maps.
    #[error("map {name}")]
    Map {
        name: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "pinned map {name} at {path} does not match this build ({diffs}); \
         remove it to start with empty state or run a build with the same map layout"
    )]
    IncompatibleMap {
        name: String,
        path: PathBuf,
        diffs: MapDiffs,
    },
    #[error("map {name} is not pinned at {path}: load the datapath first (sixlane-agent load)")]
    MapNotPinned { name: String, path: PathBuf },
    #[error("map {map}")]
    Syscall {
        map: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("services: map {map} not opened")]
    MapNotOpened { map: &'static str },

    // Configuration: the agent's, and NAT64's alone (`sixlane-agent nat64 apply`).
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
    #[error("invalid NAT64 configuration:\n{}", list(.0))]
    Nat64Config(Vec<Problem>),
    #[error("invalid NAT64 configuration")]
    Nat64Parse(#[source] serde_yaml_ng::Error),
    #[error(
        "{0:?} is not a BGP community (ASN:value with 16-bit parts, or large ASN:value:value with 32-bit parts)"
    )]
    BgpCommunity(String),

    // Neighbor Discovery on the uplink.
    #[error("neighbor discovery: {what} on {uplink}")]
    Ndp {
        what: &'static str,
        uplink: String,
        #[source]
        source: io::Error,
    },

    // BGP: writing BIRD's configuration.
    #[error("bgp peer {peer}: reading its passwordFile {path}")]
    BgpPasswordRead {
        peer: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bgp peer {peer}: passwordFile {path} {why}")]
    BgpPasswordUnusable {
        peer: String,
        path: PathBuf,
        why: &'static str,
    },

    // The node agent (`daemon::run`) could not start, or had to stop.
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
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to the API server (in-cluster config or $KUBECONFIG)")]
    KubeClient(#[source] kube::Error),
    #[error("opening rtnetlink")]
    Rtnetlink(#[source] io::Error),
    #[error("{signal} handler")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the source stopped")]
    SourceStopped,
    /// An API request of LoadBalancer IP assignment (`lb::writer`) or source validation.
    #[error("{request}")]
    Kube {
        request: KubeRequest,
        #[source]
        source: kube::Error,
    },

    // The static source's manifests (`source::manifests`).
    #[error("{path}: document {doc}")]
    ManifestYaml {
        path: PathBuf,
        doc: usize,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: document {doc}")]
    ManifestDocument {
        path: PathBuf,
        doc: usize,
        #[source]
        source: Box<Error>,
    },
    #[error("items[{index}]")]
    ManifestItem {
        index: usize,
        #[source]
        source: Box<Error>,
    },
    /// `kind` is the manifest's (a `List` kind), whatever it says.
    #[error("{kind}: items is not a list")]
    ManifestItems { kind: String },
    #[error("{kind}")]
    ManifestDecode {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{kind} with apiVersion {api_version:?} (want {want})")]
    ManifestApiVersion {
        kind: String,
        api_version: String,
        want: &'static str,
    },
    #[error("not a Kubernetes object (no apiVersion/kind)")]
    NotKubernetesObject,

    // Node setup (`node`): the address, rtnetlink, the CNI plugin and conflist, sysctls.
    #[error("node.address {addr} is not configured on any interface of this node")]
    NodeAddressNotLocal { addr: Ipv6Addr },
    #[error("node.address {addr} on {interface} cannot be used: {why}")]
    NodeAddressUnusable {
        addr: Ipv6Addr,
        interface: String,
        why: Unusable,
    },
    #[error(
        "no usable IPv6 address on this node (need a global or ULA address that is not \
         temporary, deprecated or tentative){}",
        rejected_list(.0)
    )]
    NoNodeAddress(Vec<Rejected>),
    #[error("{request}")]
    Netlink {
        request: NetlinkRequest,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {0} does not exist")]
    NoSuchLink(String),
    #[error(
        "CNI plugin {path} is not installed (the DaemonSet's install-cni init container copies it; \
         set cni.checkBinaries: false to skip this check)"
    )]
    CniPluginMissing { path: PathBuf },
    #[error("CNI plugin {path} is not executable")]
    CniPluginNotExecutable { path: PathBuf },
    #[error(
        "cannot set {key}={value}, which {needed_by} needs (mount the host's /proc/sys/net under \
         node.sysctlDir, the DaemonSet's proc-sys-net volume, or run `sysctl -w {key}={value}` \
         on the node): writing {path}"
    )]
    SysctlWrite {
        key: &'static str,
        value: &'static str,
        needed_by: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{key}: wrote {value} to {path}, but {read} still reads {got:?}: {path} is not this \
         node's (point node.sysctlDir at the host's /proc/sys, or run `sysctl -w {key}={value}` \
         on the node)"
    )]
    SysctlNotApplied {
        key: &'static str,
        value: &'static str,
        path: PathBuf,
        read: PathBuf,
        /// What the sysctl's file holds (trimmed).
        got: String,
    },

    // BGP (`routing`): BIRD's control socket, its configuration check and its process.
    #[error("connecting to BIRD's control socket {path}")]
    BirdConnect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{command:?} on BIRD's control socket {path}")]
    BirdIo {
        path: PathBuf,
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("{command:?} on BIRD's control socket {path}: no complete answer within {secs} s")]
    BirdTimeout {
        path: PathBuf,
        command: String,
        secs: u64,
    },
    #[error("{command:?} on BIRD's control socket {path}: unexpected line {line:?}")]
    BirdProtocol {
        path: PathBuf,
        command: String,
        line: String,
    },
    /// BIRD answered with a run-time (8xxx) or parse-time (9xxx) error; `message` is BIRD's.
    #[error("BIRD refused {command:?}: {code:04} {message}")]
    BirdRefused {
        command: String,
        code: u16,
        message: String,
    },
    #[error("{path} cannot be sent to BIRD's control socket (quote or line break in the path)")]
    BirdPath { path: PathBuf },
    #[error("running {binary}")]
    BirdSpawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `bird -p` refused a rendered configuration; `output` is what it printed.
    #[error("{binary} -p rejected {path}: {output}")]
    BirdConfigInvalid {
        binary: PathBuf,
        path: PathBuf,
        output: String,
    },
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

/// An rtnetlink request of node setup (`node::netlink`), as its error names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetlinkRequest {
    ListLinks,
    ListAddresses,
    ListRoutes,
    AddRoute { dst: Ipv6Net, via: Ipv6Addr },
    RemoveRoute { dst: Ipv6Net },
}

impl fmt::Display for NetlinkRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetlinkRequest::ListLinks => f.write_str("listing links"),
            NetlinkRequest::ListAddresses => f.write_str("listing addresses"),
            NetlinkRequest::ListRoutes => f.write_str("listing routes"),
            NetlinkRequest::AddRoute { dst, via } => write!(f, "adding route {dst} via {via}"),
            NetlinkRequest::RemoveRoute { dst } => write!(f, "removing route {dst}"),
        }
    }
}

/// An API request of the agent's own (not its watches), as its error names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeRequest {
    GetLease {
        lease: String,
    },
    WriteLease {
        lease: String,
        create: bool,
    },
    PatchStatus {
        service: String,
    },
    CreateEvent {
        service: String,
    },
    /// Source validation's backfill, for the pods' opt-out annotations (`pod_sources`).
    ListPods {
        node: String,
    },
}

impl fmt::Display for KubeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeRequest::GetLease { lease } => write!(f, "reading Lease {lease}"),
            KubeRequest::WriteLease {
                lease,
                create: true,
            } => write!(f, "creating Lease {lease}"),
            KubeRequest::WriteLease { lease, .. } => write!(f, "updating Lease {lease}"),
            KubeRequest::PatchStatus { service } => {
                write!(f, "writing the status of Service {service}")
            }
            KubeRequest::CreateEvent { service } => {
                write!(f, "creating an Event for Service {service}")
            }
            KubeRequest::ListPods { node } => write!(f, "listing the Pods of node {node}"),
        }
    }
}

/// How a pinned map differs from this build's definition of it: each property that differs,
/// pinned value first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapDiffs(pub Vec<MapDiff>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapDiff {
    /// `bpf_map_type`; `u32::MAX` when the kernel's is unknown to aya.
    Type {
        pinned: u32,
        built: u32,
    },
    KeySize {
        pinned: u32,
        built: u32,
    },
    ValueSize {
        pinned: u32,
        built: u32,
    },
    MaxEntries {
        pinned: u32,
        built: u32,
    },
}

impl MapDiffs {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl MapDiff {
    /// Whether the pinned value is not the built one (a comparison to keep).
    pub fn differs(&self) -> bool {
        let (MapDiff::Type { pinned, built }
        | MapDiff::KeySize { pinned, built }
        | MapDiff::ValueSize { pinned, built }
        | MapDiff::MaxEntries { pinned, built }) = *self;
        pinned != built
    }
}

impl fmt::Display for MapDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, pinned, built) = match *self {
            MapDiff::Type { pinned, built } => ("type", pinned, built),
            MapDiff::KeySize { pinned, built } => ("key size", pinned, built),
            MapDiff::ValueSize { pinned, built } => ("value size", pinned, built),
            MapDiff::MaxEntries { pinned, built } => ("max entries", pinned, built),
        };
        write!(f, "{what} {pinned} != {built}")
    }
}

impl fmt::Display for MapDiffs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
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

/// The rejected candidates of a failed node address choice, each after "; ".
fn rejected_list(r: &[Rejected]) -> String {
    r.iter()
        .map(|r| format!("; {} {}", r.addr, r.why))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enoent() -> io::Error {
        io::Error::from_raw_os_error(libc::ENOENT)
    }

    #[test]
    fn main_prints_each_cause_once() {
        // What `main` prints: anyhow's `{:#}`, the message and every source.
        let e = anyhow::Error::from(Error::io("reading", "/etc/sixlane/nat64.yaml", enoent()));
        assert_eq!(
            format!("{e:#}"),
            "reading /etc/sixlane/nat64.yaml: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_nested_chain_says_each_cause_once() {
        let e = Error::Startup {
            step: "loading the datapath",
            source: Box::new(Error::Attach(sixlane_attach::Error::Io {
                what: "creating",
                path: "/sys/fs/bpf/sixlane/maps".into(),
                source: enoent(),
            })),
        };
        let text = sixlane_attach::chain(&e).to_string();
        assert_eq!(
            text,
            "loading the datapath: creating /sys/fs/bpf/sixlane/maps: \
             No such file or directory (os error 2)"
        );
        assert_eq!(format!("{:#}", anyhow::Error::from(e)), text);
    }

    #[test]
    fn typed_details_read_as_before() {
        let e = Error::IncompatibleMap {
            name: "SL_METRICS".into(),
            path: "/sys/fs/bpf/sixlane/maps/SL_METRICS".into(),
            diffs: MapDiffs(vec![
                MapDiff::ValueSize {
                    pinned: 8,
                    built: 16,
                },
                MapDiff::MaxEntries {
                    pinned: 1,
                    built: 2,
                },
            ]),
        };
        assert!(
            e.to_string()
                .contains("does not match this build (value size 8 != 16, max entries 1 != 2);"),
            "{e}"
        );
        assert!(
            !MapDiff::KeySize {
                pinned: 4,
                built: 4
            }
            .differs()
        );
        let e = Error::NodeAddressUnusable {
            addr: "fe80::1".parse().unwrap(),
            interface: "eth0".into(),
            why: Unusable::LinkLocal,
        };
        assert_eq!(
            e.to_string(),
            "node.address fe80::1 on eth0 cannot be used: link-local (other nodes cannot route \
             to it; kubernetes#130409)"
        );
        let e = Error::Netlink {
            request: NetlinkRequest::AddRoute {
                dst: "fd00:10:2::/64".parse().unwrap(),
                via: "fd00::2".parse().unwrap(),
            },
            source: rtnetlink::Error::RequestFailed,
        };
        assert_eq!(e.to_string(), "adding route fd00:10:2::/64 via fd00::2");
    }
}
