//! The agent's configuration: a YAML file (see `manifests/configmap.yaml` and `docs/agent.md`),
//! overridden by command-line flags, validated as a whole before the agent touches anything.
//!
//! Keys are camelCase like Kubernetes objects; unknown keys are errors (a typo must not silently
//! fall back to a default). Every problem is reported at once, each with its key path.

use std::{
    net::{Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::{
    Error, Result,
    names::{is_dns_subdomain, is_label_value},
    node::candidate::{is_ula, unusable_node_address},
    problem::{Problem, Problems},
};

/// `/proc/sys` as the agent sees it: its own network namespace's sysctls, the node's (where
/// `node::sysctl` reads them, and `node.sysctlDir`'s default).
pub const PROC_SYS: &str = "/proc/sys";

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    pub node: NodeConfig,
    pub source: SourceConfig,
    pub datapath: DatapathConfig,
    pub services: ServicesConfig,
    pub cni: CniConfig,
    pub routing: RoutingConfig,
    pub metrics: MetricsConfig,
    pub healthz: HealthzConfig,
    pub logging: LoggingConfig,
    /// NAT64 from pods to the IPv4 internet (`docs/nat64.md`); off by default.
    pub nat64: crate::nat64::Nat64Config,
    /// LoadBalancer IP assignment (`docs/lb.md`); off by default.
    pub load_balancer: crate::lb::config::LbConfig,
    /// BGP through BIRD (`docs/routing.md`); off by default.
    pub bgp: crate::routing::config::BgpConfig,
    /// Neighbor Discovery for pods in the uplink's on-link prefix (`docs/routing.md`); off by
    /// default.
    pub ndp: crate::ndp::config::NdpConfig,
}

/// This node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeConfig {
    /// The Node object's name. Default: `$NODE_NAME` (the DaemonSet sets it from the downward
    /// API), else the host name.
    pub name: Option<String>,
    /// Pins the node's IPv6 address (must be configured on an interface of this node). Default:
    /// chosen automatically, see `node::address`.
    pub address: Option<Ipv6Addr>,
    /// The interface the uplink programs attach to. Default: the interface holding the node
    /// address.
    pub uplink: Option<String>,
    /// The pod CIDR. Default: the IPv6 entry of the own Node's `spec.podCIDRs`.
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<Ipv6Net>,
    /// Where the agent keeps small state across restarts (the chosen node address) and its
    /// status file for `sixlane-agent status`.
    pub state_dir: PathBuf,
    /// Where the agent writes the sysctls it needs (`node::sysctl`): a `/proc/sys` of this
    /// node's network namespace. The DaemonSet mounts the host's `/proc/sys/net` under
    /// `/host/proc/sys` because the runtime mounts the container's own read-only.
    pub sysctl_dir: PathBuf,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: None,
            address: None,
            uplink: None,
            pod_cidr: None,
            state_dir: "/var/lib/sixlane".into(),
            sysctl_dir: PROC_SYS.into(),
        }
    }
}

/// Where the desired state comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SourceMode {
    /// Watch the API server (in-cluster config, or `$KUBECONFIG`).
    #[default]
    Kubernetes,
    /// A directory of Kubernetes YAML (Service, EndpointSlice, Node).
    Static,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceConfig {
    pub mode: SourceMode,
    /// Static mode: the manifest directory (`*.yaml`, `*.yml`, `*.json`; multi-document files).
    pub manifest_dir: Option<PathBuf>,
    /// Static mode: how often the directory is re-read for changes.
    pub poll_interval_ms: u64,
    /// Changes are applied once the sources have been quiet this long (coalesces the bursts of
    /// EndpointSlice updates one rollout makes).
    pub debounce_ms: u64,
    /// A Service whose EndpointSlices all disappear keeps its previous backends this long
    /// (slice replacement is delete + create); see `reconcile`.
    pub slice_gap_hold_ms: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            mode: SourceMode::Kubernetes,
            manifest_dir: None,
            poll_interval_ms: 1000,
            debounce_ms: 100,
            slice_gap_hold_ms: 2000,
        }
    }
}

impl SourceConfig {
    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.debounce_ms)
    }
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
    pub fn slice_gap_hold(&self) -> Duration {
        Duration::from_millis(self.slice_gap_hold_ms)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DatapathConfig {
    // The pin root is the global `--pin-root` flag / `$SIXLANE_PIN_ROOT`: every subcommand and
    // the CNI conflist must agree on it.
    /// Replace pinned maps whose layout differs from this build (their state is lost).
    pub replace_incompatible_maps: bool,
    /// Sizes (max entries) of state maps, by name (`SL_CT: 1048576`); see
    /// `layout::RESIZABLE_MAPS`. Overrides the sizes NAT64 derives from its pool. Changing a
    /// size needs `replaceIncompatibleMaps` (the pinned map is re-created, its state lost).
    pub map_sizes: std::collections::BTreeMap<String, u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicesConfig {
    /// This proxy's `service.kubernetes.io/service-proxy-name`. Services labelled with another
    /// name are left to that proxy; unlabelled ones are ours (kube-proxy semantics).
    pub proxy_name: Option<String>,
    /// Deliver service traffic between pods of this node straight into the destination pod
    /// (`bpf_redirect_peer` from the sending pod's veth), bypassing the node's IP forwarding,
    /// netfilter and the destination veth's egress qdisc. Off: such traffic is forwarded by
    /// the kernel like any other (needed when something shapes or filters it there, e.g. the
    /// `bandwidth` plugin's pod ingress limit).
    pub pod_fast_path: bool,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self {
            proxy_name: None,
            pod_fast_path: true,
        }
    }
}

/// How pods use the datapath (the CNI plugin's `dataplane` key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Dataplane {
    /// Pod creation fails when the datapath is not loaded.
    #[default]
    Required,
    /// Pods get plumbing without programs when the datapath is missing.
    Optional,
    /// Never attach programs to pods.
    Off,
}

impl Dataplane {
    pub const fn as_str(self) -> &'static str {
        match self {
            Dataplane::Required => "required",
            Dataplane::Optional => "optional",
            Dataplane::Off => "off",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CniConfig {
    /// Where the conflist is written (kubelet/containerd read it from here).
    pub conf_dir: PathBuf,
    /// The conflist's file name; sorts first so the runtime picks it.
    pub conf_name: String,
    /// Where the `sixlane` binary (IPAM built in) must be installed (by the DaemonSet's
    /// init container).
    pub bin_dir: PathBuf,
    /// Fail when the binaries are missing (off only for tests and manual setups).
    pub check_binaries: bool,
    /// host-local-format IPAM store.
    pub data_dir: PathBuf,
    /// Pod interface MTU. Default: the uplink's MTU.
    pub mtu: Option<u32>,
    pub dataplane: Dataplane,
    /// How the plugin attaches the pod programs: `tc` (clsact + cls_bpf filters, no RCU grace
    /// period per pod) or `tcx` (pinned TCX links).
    pub attach: sixlane_attach::AttachMode,
    pub log_file: PathBuf,
    pub log_level: String,
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            conf_dir: "/etc/cni/net.d".into(),
            conf_name: "10-sixlane.conflist".into(),
            bin_dir: "/opt/cni/bin".into(),
            check_binaries: true,
            data_dir: "/var/lib/cni/networks".into(),
            mtu: None,
            dataplane: Dataplane::Required,
            attach: sixlane_attach::AttachMode::Tc,
            log_file: "/var/log/sixlane-cni.log".into(),
            log_level: "info".into(),
        }
    }
}

/// How traffic reaches other nodes' pods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RoutingMode {
    /// A route per remote node: its pod CIDR via its InternalIP (all nodes on one link).
    #[default]
    Static,
    /// The routes to other nodes' pod CIDRs are learned over BGP (`bgp`, with `bgp.import`):
    /// BIRD installs them; the agent installs none and leaves routes of other protocols alone.
    Bgp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RoutingConfig {
    pub mode: RoutingMode,
    /// The `rtm_protocol` marking the agent's routes, so a restarted agent finds (and removes
    /// stale) routes of its own and never touches anyone else's.
    pub protocol: u8,
    /// Routing table for pod CIDR routes (254 = main).
    pub table: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            mode: RoutingMode::Static,
            protocol: DEFAULT_RT_PROTOCOL,
            table: 254,
        }
    }
}

/// `rtm_protocol` of sixlane's routes (not in iproute2's `rt_protos` list of assigned values).
pub const DEFAULT_RT_PROTOCOL: u8 = 0x6c;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsConfig {
    /// Prometheus `/metrics`, `/healthz`, `/readyz` and `/status`. `null` disables.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 9660))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthzConfig {
    /// kube-proxy-compatible healthz (`/healthz`, `/livez`). `null` disables.
    pub kube_proxy_listen: Option<SocketAddr>,
    /// Serve `healthCheckNodePort` for `externalTrafficPolicy: Local` services.
    pub health_check_node_ports: bool,
    /// Address the healthCheckNodePort servers bind.
    pub node_port_address: Ipv6Addr,
    /// kube-proxy's `healthzTimeout`: unhealthy when a change has waited longer than this.
    pub stale_after_ms: u64,
}

impl Default for HealthzConfig {
    fn default() -> Self {
        Self {
            kube_proxy_listen: Some(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 10256))),
            health_check_node_ports: true,
            node_port_address: Ipv6Addr::UNSPECIFIED,
            stale_after_ms: 60_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `sixlane_agent=debug,kube=warn`). `$SIXLANE_LOG` overrides.
    pub level: String,
    /// Forward the eBPF programs' aya-log records (at debug level, target `sixlane_agent::ebpf`).
    pub ebpf: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            ebpf: true,
        }
    }
}

impl Config {
    /// Reads and parses (not yet validates) a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| Error::ConfigParse {
            path: path.to_owned(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Self, serde_yaml_ng::Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(text)
    }

    /// Checks everything that can be checked without touching the system; all problems at once.
    pub fn validate(&self) -> Result<()> {
        let mut p = self.node.problems();
        p.extend(self.source.problems());
        p.extend(self.services.problems());
        p.extend(self.cni.problems());
        p.extend(self.routing.problems());
        p.extend(self.healthz.problems());
        p.extend(self.logging.problems());
        p.extend(self.datapath.problems());
        p.extend(self.nat64.problems());
        p.extend(self.load_balancer.problems());
        p.extend(self.bgp.problems());
        p.extend(self.ndp.problems());
        p.extend(
            self.bgp
                .routing_problems(self.routing.mode == RoutingMode::Bgp),
        );
        p.extend(self.cross_section_problems());
        if p.is_empty() {
            Ok(())
        } else {
            Err(Error::ConfigInvalid(p))
        }
    }

    /// Settings that are fine alone but not together.
    fn cross_section_problems(&self) -> Vec<Problem> {
        let mut healthz = Problems::new("healthz");
        if let (Some(m), Some(h)) = (self.metrics.listen, self.healthz.kube_proxy_listen)
            && m.port() == h.port()
            && m.port() != 0
        {
            healthz.add(
                "kubeProxyListen",
                format!("port {} is also metrics.listen's", h.port()),
            );
        }
        let mut nat64 = Problems::new("nat64");
        if self.nat64.mode == crate::nat64::config::Mode::Route
            && self.routing.mode == RoutingMode::Bgp
        {
            nat64.add(
                "mode",
                "route mode installs a static route to nat64.gateway, but routing.mode is bgp: \
                 advertise the prefix through BGP and set nat64.mode: off on this node",
            );
        }
        let mut p = healthz.into_vec();
        p.extend(nat64.into_vec());
        p
    }
}

impl NodeConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("node");
        if let Some(name) = &self.name
            && !is_dns_subdomain(name)
        {
            p.add(
                "name",
                format!("{name:?} is not a valid Kubernetes node name (a DNS subdomain)"),
            );
        }
        if let Some(a) = self.address
            && let Some(why) = unusable_node_address(a)
        {
            p.add("address", format!("{a} is {why}"));
        }
        if let Some(u) = &self.uplink
            && !is_ifname(u)
        {
            p.add(
                "uplink",
                format!("{u:?} is not an interface name (1-15 bytes, no '/', ':' or spaces)"),
            );
        }
        if let Some(net) = self.pod_cidr {
            pod_cidr_problems(net, &mut p);
        }
        for (key, dir) in [
            ("stateDir", &self.state_dir),
            ("sysctlDir", &self.sysctl_dir),
        ] {
            if !dir.is_absolute() {
                p.add(key, format!("{} must be absolute", dir.display()));
            }
        }
        p.into_vec()
    }
}

/// `node.podCIDR`: a network address, room for pods, routable.
fn pod_cidr_problems(net: Ipv6Net, p: &mut Problems) {
    if net != net.trunc() {
        p.add(
            "podCIDR",
            format!("{net} has host bits set (did you mean {}?)", net.trunc()),
        );
    }
    if net.prefix_len() > 120 {
        p.add(
            "podCIDR",
            format!("{net} is too small for pods (use /120 or larger, /64 is usual)"),
        );
    }
    if unusable_node_address(net.network()).is_some() && !is_ula(net.network()) {
        p.add(
            "podCIDR",
            format!("{net} is not a global or ULA unicast range"),
        );
    }
}

impl SourceConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("source");
        match (self.mode, &self.manifest_dir) {
            (SourceMode::Static, None) => {
                p.add("manifestDir", "required when source.mode is static");
            }
            (SourceMode::Kubernetes, Some(_)) => {
                p.add("manifestDir", "only used when source.mode is static");
            }
            _ => {}
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            p.add(
                "pollIntervalMs",
                format!("{} is outside 10..=60000", self.poll_interval_ms),
            );
        }
        if self.debounce_ms > 10_000 {
            p.add(
                "debounceMs",
                format!("{} delays every change by more than 10 s", self.debounce_ms),
            );
        }
        if self.slice_gap_hold_ms > 60_000 {
            p.add(
                "sliceGapHoldMs",
                format!("{} is above 60000", self.slice_gap_hold_ms),
            );
        }
        p.into_vec()
    }
}

impl DatapathConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("datapath");
        for (name, size) in &self.map_sizes {
            if !sixlane_common::layout::RESIZABLE_MAPS.contains(&name.as_str()) {
                p.add(
                    "mapSizes",
                    format!(
                        "{name:?} is not a resizable map (one of {})",
                        sixlane_common::layout::RESIZABLE_MAPS.join(", ")
                    ),
                );
            }
            if *size == 0 || *size > 1 << 24 {
                p.add(
                    "mapSizes",
                    format!("{name}: {size} entries is outside 1..=16777216"),
                );
            }
        }
        p.into_vec()
    }
}

impl ServicesConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("services");
        if let Some(name) = &self.proxy_name
            && (name.is_empty() || name.len() > 63 || !is_label_value(name))
        {
            p.add("proxyName", format!("{name:?} is not a valid label value"));
        }
        p.into_vec()
    }
}

impl CniConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("cni");
        for (key, dir) in [
            ("confDir", &self.conf_dir),
            ("binDir", &self.bin_dir),
            ("dataDir", &self.data_dir),
            ("logFile", &self.log_file),
        ] {
            if !dir.is_absolute() {
                p.add(key, format!("{} must be absolute", dir.display()));
            }
        }
        let name = &self.conf_name;
        if name.contains('/') || !name.ends_with(".conflist") || name.starts_with('.') {
            p.add(
                "confName",
                format!("{name:?} must be a plain file name ending in .conflist"),
            );
        }
        if let Some(mtu) = self.mtu
            && !(1280..=65535).contains(&mtu)
        {
            p.add(
                "mtu",
                format!("{mtu} is outside 1280 (IPv6's minimum link MTU)..=65535"),
            );
        }
        if !["debug", "info", "warn", "error"].contains(&self.log_level.as_str()) {
            p.add(
                "logLevel",
                format!(
                    "{:?} is not one of debug, info, warn, error",
                    self.log_level
                ),
            );
        }
        p.into_vec()
    }
}

impl RoutingConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("routing");
        if matches!(self.protocol, 0..=4) {
            p.add(
                "protocol",
                format!(
                    "{} is reserved for the kernel (use a value above 4, e.g. the default {DEFAULT_RT_PROTOCOL})",
                    self.protocol
                ),
            );
        }
        if self.table == 0 || self.table == 255 {
            p.add(
                "table",
                format!(
                    "{} is not a usable table (255 is local, 0 unspecified)",
                    self.table
                ),
            );
        }
        p.into_vec()
    }
}

impl HealthzConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("healthz");
        if self.stale_after_ms < 1000 {
            p.add(
                "staleAfterMs",
                format!(
                    "{} is shorter than a second; healthz would flap",
                    self.stale_after_ms
                ),
            );
        }
        p.into_vec()
    }
}

impl LoggingConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("logging");
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.level) {
            p.add(
                "level",
                format!("{:?} is not a tracing filter: {e}", self.level),
            );
        }
        p.into_vec()
    }
}

/// An IPv6 network from a Kubernetes field (`podCIDRs` entries); IPv4 ones give `None`.
pub fn ipv6_net(s: &str) -> Option<Ipv6Net> {
    match s.parse::<IpNet>().ok()? {
        IpNet::V6(n) => Some(n),
        IpNet::V4(_) => None,
    }
}

pub fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::parse(yaml).unwrap().validate() {
            Ok(()) => Vec::new(),
            Err(Error::ConfigInvalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn empty_file_is_the_default_and_valid() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("{}\n").unwrap(), Config::default());
        Config::default().validate().unwrap();
        assert!(Config::default().services.pod_fast_path);
        let c = Config::parse("services:\n  podFastPath: false\n").unwrap();
        assert!(!c.services.pod_fast_path);
    }

    #[test]
    fn the_shipped_configmap_example_is_valid() {
        let text = include_str!("../../../manifests/config.example.yaml");
        let c = Config::parse(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.routing.mode, RoutingMode::Static);
    }

    #[test]
    fn the_daemonset_configmap_is_valid() {
        use serde::Deserialize as _;
        let text = include_str!("../../../manifests/configmap.yaml");
        let cfg = serde_yaml_ng::Deserializer::from_str(text)
            .map(|d| serde_json::Value::deserialize(d).unwrap())
            .find(|d| d["metadata"]["name"] == "sixlane-agent-config")
            .expect("sixlane-agent-config");
        let c = Config::parse(cfg["data"]["config.yaml"].as_str().unwrap()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.source.mode, SourceMode::Kubernetes);
        assert_eq!(c.logging.format, LogFormat::Json);
        // The DaemonSet's proc-sys-net mount.
        assert_eq!(c.node.sysctl_dir, Path::new("/host/proc/sys"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        for yaml in [
            "nodes: {}\n",
            "node:\n  adress: fd00::1\n",
            "cni:\n  mtu: 1500\n  conf_dir: /x\n",
            "cni:\n  attach: xdp\n",
            "routing:\n  mode: ospf\n",
            "bgp:\n  peer: []\n",
            "bgp:\n  peers: [{name: a, address: 'fd00::1', asn: 1, hold: 3}]\n",
        ] {
            let e = Config::parse(yaml).unwrap_err().to_string();
            assert!(
                e.contains("unknown field") || e.contains("unknown variant"),
                "{yaml}: {e}"
            );
        }
    }

    #[test]
    fn validation_table() {
        // (yaml, substrings every one of which must appear in some problem; empty = valid)
        let table: &[(&str, &[&str])] = &[
            ("node:\n  address: fd00::10\n", &[]),
            (
                "node:\n  address: fe80::1\n",
                &["node.address: fe80::1 is link-local"],
            ),
            ("node:\n  address: '::1'\n", &["loopback"]),
            ("node:\n  address: ff02::1\n", &["multicast"]),
            ("node:\n  address: '::ffff:192.0.2.1'\n", &["IPv4-mapped"]),
            ("node:\n  address: 'fec0::1'\n", &["neither global"]),
            ("node:\n  name: Node_1\n", &["node.name"]),
            ("node:\n  uplink: eth0:1\n", &["node.uplink"]),
            ("node:\n  uplink: averyveryverylongname\n", &["node.uplink"]),
            ("node:\n  podCIDR: fd00:10:1::/64\n", &[]),
            (
                "node:\n  podCIDR: fd00:10:1::5/64\n",
                &["host bits set (did you mean fd00:10:1::/64?)"],
            ),
            ("node:\n  podCIDR: fd00:10:1::/124\n", &["too small"]),
            ("node:\n  stateDir: var/lib\n", &["node.stateDir"]),
            ("node:\n  sysctlDir: host/proc/sys\n", &["node.sysctlDir"]),
            (
                "source:\n  mode: static\n",
                &["source.manifestDir: required"],
            ),
            (
                "source:\n  mode: static\n  manifestDir: /etc/sixlane/manifests\n",
                &[],
            ),
            ("source:\n  manifestDir: /x\n", &["only used when"]),
            ("source:\n  pollIntervalMs: 0\n", &["source.pollIntervalMs"]),
            ("source:\n  debounceMs: 20000\n", &["source.debounceMs"]),
            ("services:\n  proxyName: sixlane\n", &[]),
            ("services:\n  proxyName: '-bad'\n", &["services.proxyName"]),
            ("cni:\n  mtu: 1000\n", &["cni.mtu: 1000 is outside 1280"]),
            ("cni:\n  mtu: 9000\n", &[]),
            ("datapath:\n  mapSizes: {SL_CT: 1048576}\n", &[]),
            (
                "datapath:\n  mapSizes: {SL_METRICS: 10}\n",
                &["datapath.mapSizes: \"SL_METRICS\" is not a resizable map"],
            ),
            (
                "datapath:\n  mapSizes: {SL_CT: 0}\n",
                &["outside 1..=16777216"],
            ),
            (
                "nat64:\n  mode: translate\n  prefix: fd00:6464::/96\n  pool: [198.18.0.11]\n  podCIDRs: [fd00:10:244::/56]\n",
                &[],
            ),
            (
                "nat64:\n  mode: translate\n  prefix: fd00:6464::/96\n",
                &["nat64.pool"],
            ),
            ("nat64:\n  prefix: fd00:6464::/72\n", &["nat64.prefix"]),
            (
                "nat64:\n  mode: route\n  gateway: fd00::11\nrouting:\n  mode: bgp\n",
                &["nat64.mode: route mode installs"],
            ),
            ("cni:\n  confDir: etc/cni\n", &["cni.confDir"]),
            ("cni:\n  confName: sixlane.conf\n", &["cni.confName"]),
            ("cni:\n  confName: ../x.conflist\n", &["cni.confName"]),
            ("cni:\n  logLevel: trace\n", &["cni.logLevel"]),
            ("cni:\n  dataplane: optional\n", &[]),
            ("cni:\n  attach: tcx\n", &[]),
            ("cni:\n  attach: tc\n", &[]),
            (
                "routing:\n  mode: bgp\n",
                &["bgp.enabled: routing.mode: bgp learns", "bgp.import"],
            ),
            (
                "routing:\n  mode: bgp\nbgp:\n  enabled: true\n  peers: [{name: tor, address: 'fd00::1', asn: 65000}]\n  import: ['fd00:10:244::/56']\n",
                &[],
            ),
            (
                "bgp:\n  import: ['fd00:10:244::/56']\n",
                &["bgp.import: only used with routing.mode: bgp"],
            ),
            (
                "bgp:\n  peers: [{name: tor, address: '192.0.2.1', asn: 0}]\n",
                &[
                    "bgp.peers[0].address: 192.0.2.1 is IPv4",
                    "bgp.peers[0].asn: 0",
                ],
            ),
            (
                "bgp:\n  routerID: 224.1.1.1\n",
                &["bgp.routerID: 224.1.1.1 is in 224.0.0.0/3"],
            ),
            (
                "bgp:\n  announce: {externalIPs: ['2001:db8::1/64']}\n",
                &["bgp.announce.externalIPs[0]: 2001:db8::1/64 is not a prefix"],
            ),
            (
                "routing:\n  protocol: 2\n",
                &["routing.protocol: 2 is reserved"],
            ),
            ("routing:\n  table: 255\n", &["routing.table"]),
            (
                "metrics:\n  listen: '[::]:10256'\n",
                &["healthz.kubeProxyListen: port 10256"],
            ),
            ("metrics:\n  listen: null\n", &[]),
            ("healthz:\n  staleAfterMs: 10\n", &["healthz.staleAfterMs"]),
            (
                "logging:\n  format: json\n  level: 'sixlane_agent=debug'\n",
                &[],
            ),
            ("logging:\n  level: 'a=b=c'\n", &["logging.level"]),
            (
                // Several problems are all reported.
                "node:\n  address: fe80::1\ncni:\n  mtu: 100\nrouting:\n  protocol: 0\n",
                &["node.address", "cni.mtu", "routing.protocol"],
            ),
        ];
        for (yaml, want) in table {
            let got = problems(yaml);
            if want.is_empty() {
                assert!(got.is_empty(), "{yaml:?} should be valid, got {got:?}");
            }
            for w in *want {
                assert!(
                    got.iter().any(|g| g.contains(w)),
                    "{yaml:?}: expected a problem containing {w:?}, got {got:?}"
                );
            }
        }
    }

    #[test]
    fn invalid_error_lists_every_problem() {
        let e = Config::parse("cni:\n  mtu: 100\nrouting:\n  table: 0\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid configuration:\n  - cni.mtu"), "{e}");
        assert!(e.contains("\n  - routing.table"), "{e}");
    }

    #[test]
    fn ipv6_net_filters_ipv4() {
        assert_eq!(
            ipv6_net("fd00:10::/64"),
            Some("fd00:10::/64".parse().unwrap())
        );
        assert_eq!(ipv6_net("10.0.0.0/24"), None);
        assert_eq!(ipv6_net("bogus"), None);
    }

    #[test]
    fn load_balancer_problems_are_listed_with_the_rest() {
        let e = Config::parse("loadBalancer:\n  enabled: true\ncni:\n  mtu: 100\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\n  - loadBalancer.pools: enabled without a pool"),
            "{e}"
        );
        assert!(e.contains("\n  - cni.mtu"), "{e}");
    }
}
