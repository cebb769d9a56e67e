//! `BgpConfig`: the `bgp` section of the agent's YAML. BIRD 2 speaks BGP for the node; this says
//! with whom (peers, and which nodes peer with each), as whom (ASN and router ID, overridable
//! per node), what may be announced (allow-lists, communities, local preference) and which
//! prefixes are learned (`import`, with `routing.mode: bgp`). Checked as a whole, every problem
//! naming its key (`bgp.peers[1].asn`); [`BgpConfig::for_node`] resolves it for one node.
//!
//! ```yaml
//! bgp:
//!   enabled: true
//!   localASN: 64512
//!   routerID: 10.0.0.1            # default: derived from the node name (router_id.rs)
//!   nodes: [{name: node-a, localASN: 64513, routerID: 10.0.0.2}]
//!   gracefulRestartSeconds: 120
//!   peers:
//!     - {name: tor1, address: "2001:db8::1", asn: 65000, port: 179, bfd: true,
//!        passwordFile: /etc/sixlane/bgp/tor1, holdTime: 90, keepaliveTime: 30,
//!        nodes: [node-a], nodeSelector: {rack: r1}}
//!   import: [fd00:10:244::/56]    # routing.mode: bgp only
//!   announce: {podCIDRs: true, clusterIPRanges: [fd00:10:96::/108],
//!              externalIPs: [2001:db8:100::/64], loadBalancerIPs: [2001:db8:200::/64]}
//!   communities: {loadBalancerIP: ["65000:100", "65000:1:2"]}
//!   localPreference: {loadBalancerIP: 200}
//!   bird: {supervise: true, dir: /run/sixlane/bird, binary: /usr/sbin/bird}
//! ```
//!
//! It imports only leaf modules (`names`, `problem`, `router_id`, `bird::paths`) and the crate's
//! error, so `config` can hold it.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    str::FromStr,
};

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use crate::{
    Error,
    names::{is_dns_subdomain, is_label_value, is_qualified_name},
    problem::{Problem, Problems},
    routing::{bird, router_id},
};

/// The ASN every node uses unless configured (the first private 16-bit ASN, Calico's default).
pub const DEFAULT_ASN: u32 = 64512;
/// `AS_TRANS` (RFC 6793): stands in for 4-byte ASNs towards old speakers, never a real AS.
const AS_TRANS: u32 = 23456;
/// The largest restart time the graceful restart capability can carry (12 bits).
const MAX_RESTART_TIME: u32 = 4095;
/// Peer names become BIRD protocol names (`peer_<name>`); BIRD's symbols are at most 64 bytes.
const MAX_PEER_NAME: usize = 32;
/// BIRD's hold time when none is configured (`keepaliveTime` stays within half of it).
pub const BIRD_HOLD_TIME: u32 = 240;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BgpConfig {
    /// Off by default; `routing.mode: bgp` requires it.
    pub enabled: bool,
    #[serde(rename = "localASN")]
    pub local_asn: u32,
    /// Default: derived from the node name ([`router_id::derive`]).
    #[serde(rename = "routerID")]
    pub router_id: Option<Ipv4Addr>,
    /// Per-node ASN and router ID, by node name.
    pub nodes: Vec<NodeOverride>,
    /// How long peers keep our routes while a session is down for a restart (both ends must
    /// have graceful restart on).
    #[serde(rename = "gracefulRestartSeconds")]
    pub graceful_restart_secs: u32,
    pub peers: Vec<PeerConfig>,
    /// Prefixes accepted from peers, each with its longer prefixes (`routing.mode: bgp`: the
    /// other nodes' pod CIDRs, installed into the kernel by BIRD).
    pub import: Vec<Ipv6Net>,
    pub announce: AnnounceConfig,
    /// Communities added to what is announced, by kind.
    pub communities: PerKind<Vec<Community>>,
    /// `LOCAL_PREF` of what is announced, by kind (sent to iBGP peers only).
    pub local_preference: PerKind<Option<u32>>,
    pub bird: BirdConfig,
}

impl Default for BgpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            local_asn: DEFAULT_ASN,
            router_id: None,
            nodes: Vec::new(),
            graceful_restart_secs: 120,
            peers: Vec::new(),
            import: Vec::new(),
            announce: AnnounceConfig::default(),
            communities: PerKind::default(),
            local_preference: PerKind::default(),
            bird: BirdConfig::default(),
        }
    }
}

/// One node's own ASN and router ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeOverride {
    pub name: String,
    #[serde(default, rename = "localASN")]
    pub local_asn: Option<u32>,
    #[serde(default, rename = "routerID")]
    pub router_id: Option<Ipv4Addr>,
}

/// A BGP neighbour: a router the nodes it applies to open a session with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerConfig {
    /// `[a-z0-9_]`, unique: BIRD's protocol for it is `peer_<name>`.
    pub name: String,
    /// IPv6 only (parsed as any address so that an IPv4 one is reported as such).
    pub address: IpAddr,
    pub asn: u32,
    /// Default [`BGP_PORT`].
    #[serde(default)]
    pub port: Option<u16>,
    /// TCP MD5 signature key: the file's content, one trailing newline removed (a mounted
    /// Secret). Read when BIRD's configuration is written, never logged.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Seconds: 0 (no keepalives) or 3..=65535. Default: BIRD's (240).
    #[serde(default)]
    pub hold_time: Option<u32>,
    /// Seconds, at most half the hold time. Default: a third of the hold time.
    #[serde(default)]
    pub keepalive_time: Option<u32>,
    /// BFD on the session (the router must run BFD too).
    #[serde(default)]
    pub bfd: bool,
    /// Only these nodes peer (by name). Empty: no limit.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Only nodes with all these labels peer (and with `nodes`). Empty: no limit.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
}

/// BGP's TCP port.
pub const BGP_PORT: u16 = 179;

impl PeerConfig {
    fn session(&self) -> (IpAddr, u16) {
        (self.address, self.port.unwrap_or(BGP_PORT))
    }

    /// Whether some node could open a session with both peers: false only when their node
    /// lists are disjoint or their selectors want different values for one label.
    fn may_share_a_node(&self, other: &PeerConfig) -> bool {
        let names_disjoint = !self.nodes.is_empty()
            && !other.nodes.is_empty()
            && !self.nodes.iter().any(|n| other.nodes.contains(n));
        let labels_clash = self
            .node_selector
            .iter()
            .any(|(k, v)| other.node_selector.get(k).is_some_and(|w| w != v));
        !(names_disjoint || labels_clash)
    }

    /// Whether the node `name` with `labels` opens a session with this peer.
    pub fn applies_to(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.nodes.is_empty() || self.nodes.iter().any(|n| n == name))
            && self
                .node_selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// What may be announced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnounceConfig {
    /// The node's own pod CIDR(s).
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: bool,
    /// The Service ClusterIP ranges every node announces. Unset: the cluster's `ServiceCIDR`
    /// objects; empty: none (and no `internalTrafficPolicy: Local` /128s either: a ClusterIP
    /// is announced only inside these ranges).
    #[serde(rename = "clusterIPRanges")]
    pub cluster_ip_ranges: Option<Vec<Ipv6Net>>,
    /// Allow-list: only external IPs inside these are announced (as /128s).
    #[serde(rename = "externalIPs")]
    pub external_ips: Vec<Ipv6Net>,
    /// Allow-list: only LoadBalancer IPs inside these are announced (as /128s).
    #[serde(rename = "loadBalancerIPs")]
    pub load_balancer_ips: Vec<Ipv6Net>,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        Self {
            pod_cidrs: true,
            cluster_ip_ranges: None,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
        }
    }
}

/// A setting per kind of announced address (ClusterIP ranges and ClusterIPs share one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerKind<T> {
    #[serde(rename = "podCIDR")]
    pub pod_cidr: T,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: T,
    #[serde(rename = "externalIP")]
    pub external_ip: T,
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: T,
}

/// A BGP community: standard `ASN:value` (RFC 1997) or large `ASN:value:value` (RFC 8092).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Community {
    Standard(u16, u16),
    Large(u32, u32, u32),
}

impl FromStr for Community {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BgpCommunity(s.to_owned());
        let parts: Vec<&str> = s.split(':').collect();
        match parts[..] {
            [a, b] => Ok(Self::Standard(
                a.parse().map_err(|_| bad())?,
                b.parse().map_err(|_| bad())?,
            )),
            [a, b, c] => Ok(Self::Large(
                a.parse().map_err(|_| bad())?,
                b.parse().map_err(|_| bad())?,
                c.parse().map_err(|_| bad())?,
            )),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for Community {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<Community> for String {
    fn from(c: Community) -> Self {
        c.to_string()
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standard(a, b) => write!(f, "{a}:{b}"),
            Self::Large(a, b, c) => write!(f, "{a}:{b}:{c}"),
        }
    }
}

/// The BIRD process: its files and who runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BirdConfig {
    /// Whether the agent starts BIRD (and restarts it when it dies). Default: yes with
    /// `source.mode: static`; no with `kubernetes`, where BIRD is the pod's second container.
    pub supervise: Option<bool>,
    /// BIRD's configuration file and control socket.
    pub dir: PathBuf,
    pub binary: PathBuf,
}

impl Default for BirdConfig {
    fn default() -> Self {
        Self {
            supervise: None,
            dir: bird::paths::DEFAULT_DIR.into(),
            binary: "/usr/sbin/bird".into(),
        }
    }
}

impl BirdConfig {
    /// Whether the agent runs BIRD, given whether the source is static manifests.
    pub fn supervised(&self, static_source: bool) -> bool {
        self.supervise.unwrap_or(static_source)
    }
}

/// The BGP settings of one node: its ASN and router ID, and the peers it opens sessions with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeBgp {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// The peers that apply to this node, by name.
    pub peers: Vec<PeerConfig>,
}

impl BgpConfig {
    /// This node's settings: the per-node override, else the cluster-wide ASN and router ID
    /// (else one derived from `name`); the peers whose `nodes` and `nodeSelector` match.
    pub fn for_node(&self, name: &str, labels: &BTreeMap<String, String>) -> NodeBgp {
        let own = self.nodes.iter().find(|n| n.name == name);
        let mut peers: Vec<PeerConfig> = self
            .peers
            .iter()
            .filter(|p| p.applies_to(name, labels))
            .cloned()
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        NodeBgp {
            asn: own.and_then(|o| o.local_asn).unwrap_or(self.local_asn),
            router_id: own
                .and_then(|o| o.router_id)
                .or(self.router_id)
                .unwrap_or_else(|| router_id::derive(name)),
            peers,
        }
    }

    /// The ClusterIP ranges to announce: the configured ones, else the cluster's (`ServiceCIDR`).
    pub fn cluster_ranges<'a>(&'a self, from_cluster: &'a [Ipv6Net]) -> &'a [Ipv6Net] {
        self.announce
            .cluster_ip_ranges
            .as_deref()
            .unwrap_or(from_cluster)
    }

    /// Whether routers learn the ClusterIP ranges from this cluster (so clients outside it can
    /// reach ClusterIPs).
    pub fn announces_cluster_ip_ranges(&self) -> bool {
        self.enabled
            && self
                .announce
                .cluster_ip_ranges
                .as_ref()
                .is_none_or(|r| !r.is_empty())
    }

    /// Whether the agent needs the cluster's `ServiceCIDR` objects.
    pub fn uses_service_cidrs(&self) -> bool {
        self.enabled && self.announce.cluster_ip_ranges.is_none()
    }

    /// Everything wrong with the section, all at once (empty: valid). Keys are relative to
    /// `bgp`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("bgp");
        asn_problems(&mut p, "localASN", self.local_asn);
        if let Some(id) = self.router_id {
            router_id_problems(&mut p, "routerID", id);
        }
        self.node_problems(&mut p);
        if !(1..=MAX_RESTART_TIME).contains(&self.graceful_restart_secs) {
            p.add(
                "gracefulRestartSeconds",
                format!(
                    "{} is outside 1..={MAX_RESTART_TIME} (the graceful restart capability's range)",
                    self.graceful_restart_secs
                ),
            );
        }
        if self.enabled && self.peers.is_empty() {
            p.add("peers", "BGP is enabled but no peer is configured");
        }
        let mut names = BTreeSet::new();
        for (i, peer) in self.peers.iter().enumerate() {
            if !names.insert(&peer.name) {
                p.add(
                    format!("peers[{i}].name"),
                    format!("{:?} is also an earlier peer's name", peer.name),
                );
            }
            peer_problems(&mut p, i, peer);
        }
        self.same_session_problems(&mut p);
        prefix_problems(&mut p, "import", &self.import);
        let a = &self.announce;
        prefix_problems(
            &mut p,
            "announce.clusterIPRanges",
            a.cluster_ip_ranges.as_deref().unwrap_or_default(),
        );
        prefix_problems(&mut p, "announce.externalIPs", &a.external_ips);
        prefix_problems(&mut p, "announce.loadBalancerIPs", &a.load_balancer_ips);
        for (key, dir) in [
            ("bird.dir", &self.bird.dir),
            ("bird.binary", &self.bird.binary),
        ] {
            if !dir.is_absolute() {
                p.add(key, format!("{} must be absolute", dir.display()));
            }
        }
        p.into_vec()
    }

    /// What `routing.mode` requires of this section: `bgp` (routes to other nodes' pods
    /// learned from peers) needs BGP on and something to learn; `static` learns nothing.
    pub fn routing_problems(&self, routes_from_bgp: bool) -> Vec<Problem> {
        let mut p = Problems::new("bgp");
        if routes_from_bgp && !self.enabled {
            p.add(
                "enabled",
                "routing.mode: bgp learns the routes to other nodes' pods over BGP: enable it",
            );
        }
        if routes_from_bgp && self.import.is_empty() {
            p.add(
                "import",
                "routing.mode: bgp needs the prefixes to learn from peers (the pod CIDRs)",
            );
        }
        if !routes_from_bgp && !self.import.is_empty() {
            p.add(
                "import",
                "only used with routing.mode: bgp (static routing installs the routes to other nodes' pods itself)",
            );
        }
        p.into_vec()
    }

    /// Two peers at one address and port that one node could both open: BIRD would run two
    /// sessions with the same neighbor, and the router accepts only one of them.
    fn same_session_problems(&self, p: &mut Problems) {
        for (i, b) in self.peers.iter().enumerate() {
            let earlier = self.peers[..i]
                .iter()
                .position(|a| a.session() == b.session() && a.may_share_a_node(b));
            if let Some(j) = earlier {
                p.add(
                    format!("peers[{i}].address"),
                    format!(
                        "{} is also peers[{j}]'s ({:?}) address and port, and a node could open both sessions (give them disjoint nodes or nodeSelector values)",
                        b.address, self.peers[j].name
                    ),
                );
            }
        }
    }

    fn node_problems(&self, p: &mut Problems) {
        let mut names = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !is_dns_subdomain(&n.name) {
                p.add(
                    format!("nodes[{i}].name"),
                    format!("{:?} is not a valid Kubernetes node name", n.name),
                );
            } else if !names.insert(&n.name) {
                p.add(
                    format!("nodes[{i}].name"),
                    format!("{:?} is listed before", n.name),
                );
            }
            if let Some(asn) = n.local_asn {
                asn_problems(p, format!("nodes[{i}].localASN"), asn);
            }
            if let Some(id) = n.router_id {
                router_id_problems(p, format!("nodes[{i}].routerID"), id);
            }
        }
    }
}

fn peer_problems(p: &mut Problems, i: usize, peer: &PeerConfig) {
    let key = |field: &str| format!("peers[{i}].{field}");
    let name_ok = !peer.name.is_empty()
        && peer.name.len() <= MAX_PEER_NAME
        && peer
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        p.add(
            key("name"),
            format!(
                "{:?} must be 1 to {MAX_PEER_NAME} of a-z, 0-9 and _ (it names BIRD's protocol)",
                peer.name
            ),
        );
    }
    if let Some(why) = unusable_peer_address(peer.address) {
        p.add(key("address"), format!("{} is {why}", peer.address));
    }
    asn_problems(p, key("asn"), peer.asn);
    if peer.port == Some(0) {
        p.add(key("port"), "0 is not a port");
    }
    if let Some(path) = &peer.password_file
        && !path.is_absolute()
    {
        p.add(
            key("passwordFile"),
            format!("{} must be absolute", path.display()),
        );
    }
    timer_problems(p, i, peer);
    for (j, n) in peer.nodes.iter().enumerate() {
        if !is_dns_subdomain(n) {
            p.add(
                format!("peers[{i}].nodes[{j}]"),
                format!("{n:?} is not a valid Kubernetes node name"),
            );
        }
    }
    for (k, v) in &peer.node_selector {
        if !is_qualified_name(k) {
            p.add(
                key("nodeSelector"),
                format!("{k:?} is not a valid label key"),
            );
        }
        if !is_label_value(v) {
            p.add(
                key("nodeSelector"),
                format!("{k}: {v:?} is not a valid label value"),
            );
        }
    }
}

/// BIRD's rules for the hold and keepalive times.
fn timer_problems(p: &mut Problems, i: usize, peer: &PeerConfig) {
    if let Some(h) = peer.hold_time
        && (h == 1 || h == 2 || h > 65535)
    {
        p.add(
            format!("peers[{i}].holdTime"),
            format!("{h} is neither 0 (no keepalives) nor in 3..=65535"),
        );
    }
    let Some(k) = peer.keepalive_time else {
        return;
    };
    let hold = peer.hold_time.unwrap_or(BIRD_HOLD_TIME);
    if !(1..=65535).contains(&k) {
        p.add(
            format!("peers[{i}].keepaliveTime"),
            format!("{k} is outside 1..=65535"),
        );
    } else if hold == 0 {
        p.add(
            format!("peers[{i}].keepaliveTime"),
            format!("{k}: a hold time of 0 sends no keepalives"),
        );
    } else if k * 2 > hold {
        // BIRD warns above half; peers drop a session after one lost keepalive otherwise.
        p.add(
            format!("peers[{i}].keepaliveTime"),
            format!("{k} is more than half the hold time ({hold}); a third is usual"),
        );
    }
}

/// Why a peer cannot be at `a`, if it cannot.
fn unusable_peer_address(a: IpAddr) -> Option<&'static str> {
    let IpAddr::V6(v6) = a else {
        return Some("IPv4: sixlane's BGP sessions are IPv6 only");
    };
    if v6.is_unspecified() {
        Some("unspecified")
    } else if v6.is_loopback() {
        Some("loopback")
    } else if v6.is_multicast() {
        Some("multicast")
    } else if v6.is_unicast_link_local() {
        Some("link-local (BIRD would need the interface; use the router's global or ULA address)")
    } else if v6.to_ipv4_mapped().is_some() {
        Some("IPv4-mapped: sixlane's BGP sessions are IPv6 only")
    } else {
        None
    }
}

fn asn_problems(p: &mut Problems, key: impl Into<Cow<'static, str>>, asn: u32) {
    if asn == 0 || asn == u32::MAX {
        p.add(key, format!("{asn} is reserved (an ASN is 1..=4294967294)"));
    } else if asn == AS_TRANS {
        p.add(
            key,
            format!("{asn} is AS_TRANS, which stands in for 4-byte ASNs and is never a real AS"),
        );
    }
}

fn router_id_problems(p: &mut Problems, key: impl Into<Cow<'static, str>>, id: Ipv4Addr) {
    if let Some(why) = router_id::unusable(id) {
        p.add(key, format!("{id} is {why}"));
    }
}

/// Each entry of `list` (at `key`) is a prefix: no host bits.
fn prefix_problems(p: &mut Problems, key: &str, list: &[Ipv6Net]) {
    for (i, net) in list.iter().enumerate() {
        if *net != net.trunc() {
            p.add(
                format!("{key}[{i}]"),
                format!(
                    "{net} is not a prefix: host bits set (did you mean {}?)",
                    net.trunc()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(yaml: &str) -> BgpConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn problems(yaml: &str) -> Vec<String> {
        parse(yaml)
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const TWO_PEERS: &str = "
enabled: true
localASN: 64512
nodes:
  - {name: node-a, localASN: 64513, routerID: 10.0.0.1}
  - {name: node-c, routerID: 10.0.0.3}
peers:
  - {name: tor1, address: '2001:db8::1', asn: 65000, nodes: [node-a, node-b]}
  - {name: tor2, address: '2001:db8:1::1', asn: 65001, nodeSelector: {rack: r2}}
  - {name: all, address: '2001:db8:2::1', asn: 65002, port: 1179}
";

    #[test]
    fn defaults() {
        let c = BgpConfig::default();
        assert!(!c.enabled);
        assert_eq!(c.local_asn, 64512);
        assert_eq!(c.graceful_restart_secs, 120);
        assert!(c.announce.pod_cidrs);
        assert_eq!(c.announce.cluster_ip_ranges, None);
        assert_eq!(c.bird.dir, Path::new("/run/sixlane/bird"));
        assert!(c.bird.supervised(true));
        assert!(!c.bird.supervised(false));
        assert!(c.problems().is_empty());
        assert_eq!(parse("{}"), c);
    }

    #[test]
    fn for_node_resolves_overrides_and_selects_peers() {
        let c = parse(TWO_PEERS);
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let rack = |r: &str| BTreeMap::from([("rack".to_string(), r.to_string())]);
        let names = |n: &NodeBgp| n.peers.iter().map(|p| p.name.clone()).collect::<Vec<_>>();

        let a = c.for_node("node-a", &rack("r1"));
        assert_eq!((a.asn, a.router_id), (64513, Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(names(&a), ["all", "tor1"], "sorted by name");

        let b = c.for_node("node-b", &rack("r2"));
        assert_eq!(b.asn, 64512);
        assert_eq!(b.router_id, router_id::derive("node-b"));
        assert_eq!(names(&b), ["all", "tor1", "tor2"]);

        // A node override with only a router ID keeps the cluster-wide ASN.
        let n = c.for_node("node-c", &BTreeMap::new());
        assert_eq!((n.asn, n.router_id), (64512, Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(names(&n), ["all"]);

        // nodes AND nodeSelector.
        let mut both = c.clone();
        both.peers[1].nodes = vec!["node-d".into()];
        assert_eq!(
            names(&both.for_node("node-b", &rack("r2"))),
            ["all", "tor1"]
        );
        assert_eq!(
            names(&both.for_node("node-d", &rack("r2"))),
            ["all", "tor2"]
        );
        assert_eq!(names(&both.for_node("node-d", &rack("r1"))), ["all"]);
    }

    #[test]
    fn cluster_ranges_come_from_the_config_or_the_cluster() {
        let cluster: Vec<Ipv6Net> = vec!["fd00:10:96::/108".parse().unwrap()];
        let mut c = parse("enabled: true\n");
        assert!(c.uses_service_cidrs());
        assert_eq!(c.cluster_ranges(&cluster), cluster.as_slice());
        c.announce.cluster_ip_ranges = Some(vec![]);
        assert!(!c.uses_service_cidrs());
        assert!(c.cluster_ranges(&cluster).is_empty(), "empty means none");
        c.enabled = false;
        c.announce.cluster_ip_ranges = None;
        assert!(!c.uses_service_cidrs(), "BGP off needs nothing");
    }

    #[test]
    fn communities_parse_and_print() {
        let c = parse(
            "communities: {podCIDR: ['65000:100'], loadBalancerIP: ['4200000000:1:2', '0:0']}\n",
        );
        assert_eq!(c.communities.pod_cidr, [Community::Standard(65000, 100)]);
        assert_eq!(
            c.communities.load_balancer_ip,
            [
                Community::Large(4_200_000_000, 1, 2),
                Community::Standard(0, 0)
            ]
        );
        assert_eq!(Community::Large(1, 2, 3).to_string(), "1:2:3");
        for bad in [
            "65536:1",
            "1",
            "1:2:3:4",
            "a:b",
            "-1:2",
            "1:4294967296:0",
            "",
        ] {
            let e = serde_yaml_ng::from_str::<BgpConfig>(&format!(
                "communities: {{externalIP: ['{bad}']}}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                // serde_yaml_ng names the list, the message the entry.
                e.contains("communities.externalIP")
                    && e.contains(&format!("{bad:?} is not a BGP community")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_errors() {
        for yaml in [
            "enable: true\n",
            "peers: [{name: a, address: '2001:db8::1', asn: 1, password: x}]\n",
            "nodes: [{name: a, asn: 1}]\n",
            "announce: {podCidrs: true}\n",
            "communities: {pod: []}\n",
            "bird: {socket: /x}\n",
        ] {
            let e = serde_yaml_ng::from_str::<BgpConfig>(yaml)
                .unwrap_err()
                .to_string();
            assert!(e.contains("unknown field"), "{yaml}: {e}");
        }
        let e =
            serde_yaml_ng::from_str::<BgpConfig>("peers: [{name: a, address: '2001:db8::1'}]\n")
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("peers[0]") && e.contains("missing field `asn`"),
            "{e}"
        );
    }

    #[test]
    fn validation_table() {
        let peer = |extra: &str| {
            format!(
                "enabled: true\npeers:\n  - {{name: tor1, address: '2001:db8::1', asn: 65000{extra}}}\n"
            )
        };
        // (yaml, substrings every one of which must appear in some problem; empty = valid)
        let table: Vec<(String, Vec<&str>)> = vec![
            (peer(""), vec![]),
            (peer(", port: 1179, holdTime: 9, keepaliveTime: 3, bfd: true"), vec![]),
            (peer(", holdTime: 0"), vec![]),
            (peer(", passwordFile: /etc/sixlane/bgp/tor1"), vec![]),
            ("enabled: true\n".into(), vec!["bgp.peers: BGP is enabled but no peer"]),
            ("localASN: 0\n".into(), vec!["bgp.localASN: 0 is reserved"]),
            ("localASN: 4294967295\n".into(), vec!["bgp.localASN: 4294967295 is reserved"]),
            ("localASN: 23456\n".into(), vec!["bgp.localASN: 23456 is AS_TRANS"]),
            ("localASN: 4294967294\n".into(), vec![]),
            ("routerID: 224.0.0.1\n".into(), vec!["bgp.routerID: 224.0.0.1 is in 224.0.0.0/3"]),
            ("routerID: 240.1.2.3\n".into(), vec!["bgp.routerID: 240.1.2.3 is in 224.0.0.0/3"]),
            ("routerID: 0.0.0.1\n".into(), vec!["bgp.routerID: 0.0.0.1 is in 0.0.0.0/8"]),
            ("routerID: 127.0.0.1\n".into(), vec!["bgp.routerID: 127.0.0.1 is in 127.0.0.0/8"]),
            ("routerID: 10.0.0.1\n".into(), vec![]),
            (
                "nodes: [{name: a, routerID: 239.0.0.1}, {name: b, localASN: 0}, {name: a}, {name: B_1}]\n".into(),
                vec![
                    "bgp.nodes[0].routerID: 239.0.0.1 is in 224.0.0.0/3",
                    "bgp.nodes[1].localASN: 0 is reserved",
                    "bgp.nodes[2].name: \"a\" is listed before",
                    "bgp.nodes[3].name: \"B_1\" is not a valid Kubernetes node name",
                ],
            ),
            ("gracefulRestartSeconds: 0\n".into(), vec!["bgp.gracefulRestartSeconds: 0 is outside 1..=4095"]),
            ("gracefulRestartSeconds: 4096\n".into(), vec!["bgp.gracefulRestartSeconds"]),
            (
                "peers: [{name: a, address: '2001:db8::1', asn: 0}]\n".into(),
                vec!["bgp.peers[0].asn: 0 is reserved"],
            ),
            (
                "peers:\n  - {name: tor1, address: '2001:db8::1', asn: 1}\n  - {name: tor2, address: '2001:db8::2', asn: 23456}\n".into(),
                vec!["bgp.peers[1].asn: 23456 is AS_TRANS"],
            ),
            (
                "peers: [{name: Tor-1, address: '2001:db8::1', asn: 1}]\n".into(),
                vec!["bgp.peers[0].name: \"Tor-1\" must be 1 to 32 of a-z, 0-9 and _"],
            ),
            (
                format!("peers: [{{name: {}, address: '2001:db8::1', asn: 1}}]\n", "a".repeat(33)),
                vec!["bgp.peers[0].name"],
            ),
            (
                "peers:\n  - {name: tor, address: '2001:db8::1', asn: 1}\n  - {name: tor, address: '2001:db8::2', asn: 1}\n".into(),
                vec!["bgp.peers[1].name: \"tor\" is also an earlier peer's name"],
            ),
            (
                "peers: [{name: a, address: 192.0.2.1, asn: 1}]\n".into(),
                vec!["bgp.peers[0].address: 192.0.2.1 is IPv4"],
            ),
            (
                "peers: [{name: a, address: 'fe80::1', asn: 1}]\n".into(),
                vec!["bgp.peers[0].address: fe80::1 is link-local"],
            ),
            (
                "peers: [{name: a, address: '::ffff:192.0.2.1', asn: 1}]\n".into(),
                vec!["bgp.peers[0].address: ::ffff:192.0.2.1 is IPv4-mapped"],
            ),
            ("peers: [{name: a, address: 'ff02::2', asn: 1}]\n".into(), vec!["multicast"]),
            (peer(", port: 0"), vec!["bgp.peers[0].port: 0 is not a port"]),
            (
                peer(", passwordFile: secrets/tor1"),
                vec!["bgp.peers[0].passwordFile: secrets/tor1 must be absolute"],
            ),
            (peer(", holdTime: 2"), vec!["bgp.peers[0].holdTime: 2 is neither 0"]),
            (peer(", holdTime: 65536"), vec!["bgp.peers[0].holdTime"]),
            (
                peer(", holdTime: 9, keepaliveTime: 9"),
                vec!["bgp.peers[0].keepaliveTime: 9 is more than half the hold time (9)"],
            ),
            (
                peer(", keepaliveTime: 240"),
                vec!["bgp.peers[0].keepaliveTime: 240 is more than half the hold time (240)"],
            ),
            (
                peer(", holdTime: 0, keepaliveTime: 1"),
                vec!["bgp.peers[0].keepaliveTime: 1: a hold time of 0 sends no keepalives"],
            ),
            (peer(", holdTime: 9, keepaliveTime: 5"), vec!["more than half"]),
            (peer(", holdTime: 10, keepaliveTime: 5"), vec![]),
            (peer(", keepaliveTime: 120"), vec![]),
            (peer(", keepaliveTime: 0"), vec!["bgp.peers[0].keepaliveTime: 0 is outside 1..=65535"]),
            (
                peer(", nodes: [node-a, Node_B]"),
                vec!["bgp.peers[0].nodes[1]: \"Node_B\" is not a valid Kubernetes node name"],
            ),
            (
                peer(", nodeSelector: {'topology.kubernetes.io/zone': z1, rack: ''}"),
                vec![],
            ),
            (
                peer(", nodeSelector: {'-bad': x, rack: '-x'}"),
                vec![
                    "bgp.peers[0].nodeSelector: \"-bad\" is not a valid label key",
                    "bgp.peers[0].nodeSelector: rack: \"-x\" is not a valid label value",
                ],
            ),
            (
                "import: ['fd00:10:244::1/56']\n".into(),
                vec!["bgp.import[0]: fd00:10:244::1/56 is not a prefix: host bits set (did you mean fd00:10:244::/56?)"],
            ),
            (
                "announce: {clusterIPRanges: ['fd00:10:96::/108', 'fd00:10:96::1/108']}\n".into(),
                vec!["bgp.announce.clusterIPRanges[1]: fd00:10:96::1/108 is not a prefix"],
            ),
            (
                "announce: {externalIPs: ['2001:db8:100::5/64']}\n".into(),
                vec!["bgp.announce.externalIPs[0]: 2001:db8:100::5/64 is not a prefix"],
            ),
            (
                "announce: {loadBalancerIPs: ['2001:db8:200::/64', '2001:db8:200::7/120']}\n".into(),
                vec!["bgp.announce.loadBalancerIPs[1]"],
            ),
            (
                "announce: {loadBalancerIPs: ['2001:db8:200::7/128']}\n".into(),
                vec![],
            ),
            (
                "peers: [{name: a, address: '2001:db8::1', asn: 1}, {name: b, address: '2001:db8::1', asn: 2}]\n".into(),
                vec!["bgp.peers[1].address: 2001:db8::1 is also peers[0]'s (\"a\") address and port"],
            ),
            (
                "peers: [{name: a, address: '2001:db8::1', asn: 1, nodes: [n1, n2]}, {name: b, address: '2001:db8::1', asn: 1, nodes: [n2]}]\n".into(),
                vec!["bgp.peers[1].address"],
            ),
            (
                "peers: [{name: a, address: '2001:db8::1', asn: 1, nodeSelector: {rack: r1}}, {name: b, address: '2001:db8::1', asn: 1, port: 179, nodes: [n1]}]\n".into(),
                vec!["bgp.peers[1].address"],
            ),
            // Disjoint nodes, clashing selectors, or another port: separate sessions.
            (
                "peers: [{name: a, address: '2001:db8::1', asn: 1, nodes: [n1]}, {name: b, address: '2001:db8::1', asn: 1, nodes: [n2]}]\n".into(),
                vec![],
            ),
            (
                "peers: [{name: a, address: '2001:db8::1', asn: 1, nodeSelector: {rack: r1}}, {name: b, address: '2001:db8::1', asn: 1, nodeSelector: {rack: r2}}]\n".into(),
                vec![],
            ),
            (
                "peers: [{name: a, address: '2001:db8::1', asn: 1}, {name: b, address: '2001:db8::1', asn: 1, port: 1179}]\n".into(),
                vec![],
            ),
            ("bird: {dir: run/bird}\n".into(), vec!["bgp.bird.dir: run/bird must be absolute"]),
            ("bird: {binary: bird}\n".into(), vec!["bgp.bird.binary: bird must be absolute"]),
        ];
        for (yaml, want) in &table {
            let got = problems(yaml);
            if want.is_empty() {
                assert!(got.is_empty(), "{yaml:?} should be valid, got {got:?}");
            }
            for w in want {
                assert!(
                    got.iter().any(|g| g.contains(w)),
                    "{yaml:?}: expected a problem containing {w:?}, got {got:?}"
                );
            }
        }
    }

    #[test]
    fn routing_mode_rules() {
        let keys = |c: &BgpConfig, bgp: bool| {
            c.routing_problems(bgp)
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        let off = BgpConfig::default();
        assert!(keys(&off, false).is_empty());
        let got = keys(&off, true);
        assert!(
            got[0].starts_with("bgp.enabled: routing.mode: bgp"),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("bgp.import: routing.mode: bgp needs"),
            "{got:?}"
        );
        let on = parse("enabled: true\nimport: ['fd00:10:244::/56']\n");
        assert!(keys(&on, true).is_empty());
        let got = keys(&on, false);
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("bgp.import: only used with routing.mode: bgp"),
            "{got:?}"
        );
    }
}
