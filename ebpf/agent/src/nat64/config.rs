//! `Nat64Config`: the operator's NAT64 settings (the `nat64:` key of the agent's YAML), checked
//! as a whole and turned into the datapath's `Config` and source allow-list.
//!
//! ```yaml
//! nat64:
//!   mode: translate            # off (default) | translate | route
//!   prefix: 64:ff9b::/96       # RFC 6052 prefix, length 32/40/48/56/64/96
//!   pool: [198.51.100.7]       # IPv4 addresses the node translates to (translate mode)
//!   ports: 61001-65535         # or {tcp: .., udp: .., icmp: ..} (ICMP: echo identifiers)
//!   podCIDRs: [fd00:10::/56]   # sources allowed to use NAT64 (all the cluster's pods)
//!   gateway: fd00:1::7         # route mode: the NAT64 node the prefix is routed to
//!   timeouts: {udp: 300, tcpEstablished: 7200, tcpTransitory: 240, icmp: 60}   # seconds
//!   endpointIndependentFiltering: true
//!   unsolicitedTcp: hold       # or drop: IPv4 SYNs to the dynamic range without a session
//!   clampMss: true
//!   ipv4Mtu: 1500              # smallest IPv4 path MTU expected (pod route MTU/advmss)
//!   staticBindings:            # IPv4-initiated traffic to pods (`super::statics`)
//!     - {protocol: tcp, ipv4: "198.51.100.7:8080", ipv6: "[fd00:10::a]:80"}
//! ```

use std::{
    collections::BTreeSet,
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    str::FromStr,
    time::Duration,
};

use ipnet::Ipv6Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use sixlane_common::nat64::{
    addr::{self, Prefix},
    maps::{self, MAX_POOL_ADDRS, PortRange},
};

use super::statics::{self, StaticBinding};
use crate::{
    Error, Result,
    problem::{Problem, Problems},
};

/// What this node does with the NAT64 prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// No NAT64: prefix traffic is routed like any other IPv6.
    #[default]
    Off,
    /// This node has IPv4 and translates in its tc programs.
    Translate,
    /// This node has no IPv4: it routes the prefix to `gateway`, a node that translates.
    Route,
}

/// What an IPv4 SYN to a pool address and a port of the dynamic range meets when no session
/// matches it (RFC 6146 §3.5.2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnsolicitedTcp {
    /// The RFC's default (and Jool's, `drop-externally-initiated-tcp` off): held 6 s so the
    /// pod's own SYN for the same tuple completes a simultaneous open (RFC 5382 REQ-2, TCP hole
    /// punching), then answered with ICMP Port Unreachable (`super::held`), so the client
    /// fails fast instead of timing out.
    #[default]
    Hold,
    /// Dropped silently: the "drop externally initiated connections" policy (no simultaneous
    /// open, no answer that tells a scanner the address translates).
    Drop,
}

/// Where ICMPv6 errors translated from ICMPv4 ones come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorSource {
    /// The IPv4 router that sent the error, under the prefix: traceroute shows the real hops
    /// (Jool's `source-icmpv6-errors-better`, its default).
    #[default]
    Router,
    /// The destination of the packet the error quotes (RFC 6146 §3.5 read literally).
    Destination,
}

/// The IPv4 Identification of packets translated from IPv6 ones without a Fragment Header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Identification {
    /// Generated for every packet (RFC 7915 §5.1), unpredictable (RFC 7739).
    #[default]
    Generate,
    /// 0 on packets with DF set: atomic datagrams, never reassembled (RFC 6864 §4.1).
    ZeroWithDf,
}

/// An inclusive port range, written `lo-hi` or as one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub lo: u16,
    pub hi: u16,
}

impl Span {
    pub const fn new(lo: u16, hi: u16) -> Self {
        Self { lo, hi }
    }

    pub fn len(&self) -> u32 {
        PortRange {
            lo: self.lo,
            hi: self.hi,
        }
        .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|e| format!("{p:?} is not a port: {e}"))
        };
        match s.split_once('-') {
            Some((lo, hi)) => Ok(Self::new(port(lo)?, port(hi)?)),
            None => {
                let p = port(s)?;
                Ok(Self::new(p, p))
            }
        }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u16),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(p) => Ok(Self::new(p, p)),
            Raw::Text(t) => t.parse().map_err(de::Error::custom),
        }
    }
}

/// Port (or ICMP identifier) ranges of the pool, per protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Ports {
    pub tcp: Span,
    pub udp: Span,
    pub icmp: Span,
}

/// Jool's default pool4 range: above Linux's default ephemeral ports (32768–60999), so the
/// node's own connections from the pool address do not collide with NAT64 bindings.
pub const DEFAULT_PORTS: Span = Span::new(61001, 65535);

impl Default for Ports {
    fn default() -> Self {
        Self {
            tcp: DEFAULT_PORTS,
            udp: DEFAULT_PORTS,
            icmp: DEFAULT_PORTS,
        }
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PerProto {
            tcp: Option<Span>,
            udp: Option<Span>,
            icmp: Option<Span>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            All(Span),
            PerProto(PerProto),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::All(s) => Self {
                tcp: s,
                udp: s,
                icmp: s,
            },
            Raw::PerProto(p) => Self {
                tcp: p.tcp.unwrap_or(DEFAULT_PORTS),
                udp: p.udp.unwrap_or(DEFAULT_PORTS),
                icmp: p.icmp.unwrap_or(DEFAULT_PORTS),
            },
        })
    }
}

/// Session lifetimes without traffic, in seconds (RFC 6146 §3.5; Jool's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeouts {
    pub udp: u64,
    pub tcp_established: u64,
    pub tcp_transitory: u64,
    pub icmp: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            udp: 300,
            tcp_established: 7200,
            tcp_transitory: 240,
            icmp: 60,
        }
    }
}

impl Timeouts {
    pub fn udp(&self) -> Duration {
        Duration::from_secs(self.udp)
    }
    pub fn tcp_established(&self) -> Duration {
        Duration::from_secs(self.tcp_established)
    }
    pub fn tcp_transitory(&self) -> Duration {
        Duration::from_secs(self.tcp_transitory)
    }
    pub fn icmp(&self) -> Duration {
        Duration::from_secs(self.icmp)
    }
}

/// The `nat64:` section of the agent configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Nat64Config {
    pub mode: Mode,
    /// Pref64::/n. Default: the Well-Known Prefix `64:ff9b::/96`, which refuses non-global
    /// IPv4 destinations (RFC 6052 §3.1); a network-specific prefix lifts that.
    pub prefix: Ipv6Net,
    /// IPv4 addresses translated packets leave from (at most 16). A pod keeps one address as
    /// long as it has ports there.
    pub pool: Vec<Ipv4Addr>,
    pub ports: Ports,
    /// IPv6 sources allowed to use the translator: the cluster's pod CIDRs (not only this
    /// node's: nodes in route mode send their pods' traffic here).
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<Ipv6Net>,
    /// Route mode: the address of a translating node the prefix is routed to.
    pub gateway: Option<Ipv6Addr>,
    pub timeouts: Timeouts,
    /// An IPv4 host may send UDP to a pod's existing binding without the pod having sent to it
    /// first (RFC 4787 endpoint-independent filtering, what STUN/WebRTC need; Jool's default).
    /// Off: only peers the pod talked to get through. TCP always needs the pod to open.
    pub endpoint_independent_filtering: bool,
    pub unsolicited_tcp: UnsolicitedTcp,
    /// Clamp the MSS of SYNs to what the IPv4 side carries.
    pub clamp_mss: bool,
    /// Smallest IPv4 path MTU to plan for: sizes the MTU and advmss of the pods' route to the
    /// prefix ([`Nat64Config::pod_route`]).
    pub ipv4_mtu: u32,
    /// IPv6 packets translated from IPv4 get traffic class 0 instead of the IPv4 TOS (Jool's
    /// `zeroize-traffic-class`).
    pub zero_traffic_class: bool,
    /// IPv4 packets translated from IPv6 get this TOS instead of the traffic class (Jool's
    /// `override-tos` with `tos`).
    pub override_tos: Option<u8>,
    pub icmpv6_error_source: ErrorSource,
    pub ipv4_identification: Identification,
    /// Pool address and port ↔ IPv6 transport address mappings IPv4 hosts may open sessions
    /// through (translate mode; ports outside the dynamic range).
    pub static_bindings: Vec<StaticBinding>,
}

impl Default for Nat64Config {
    fn default() -> Self {
        Self {
            mode: Mode::Off,
            prefix: Ipv6Net::new(Ipv6Addr::from(addr::WKP), addr::WKP_LEN)
                .expect("the Well-Known Prefix is a valid /96"),
            pool: Vec::new(),
            ports: Ports::default(),
            pod_cidrs: Vec::new(),
            gateway: None,
            timeouts: Timeouts::default(),
            endpoint_independent_filtering: true,
            unsolicited_tcp: UnsolicitedTcp::Hold,
            clamp_mss: true,
            ipv4_mtu: 1500,
            zero_traffic_class: false,
            override_tos: None,
            icmpv6_error_source: ErrorSource::Router,
            ipv4_identification: Identification::Generate,
            static_bindings: Vec::new(),
        }
    }
}

/// The route pods get towards the prefix (CNI 1.1 route fields), sized so TCP never needs
/// Packet Too Big when IPv4 paths are smaller than the pod link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodRoute {
    pub prefix: Ipv6Net,
    /// IPv6 packets towards the prefix: the IPv4 path MTU plus the 20 bytes translation
    /// removes, capped at the pod link's MTU.
    pub mtu: u32,
    /// The MSS pods advertise on these connections: what fits that MTU (IPv6 + TCP = 60).
    pub advmss: u32,
}

impl Nat64Config {
    /// Parses a YAML document holding either the `nat64:` section alone or a whole agent
    /// configuration with a `nat64:` key.
    pub fn from_yaml(text: &str) -> Result<Self> {
        /// A whole agent configuration: its other sections are the agent's to check.
        #[derive(Deserialize)]
        struct Whole {
            nat64: Nat64Config,
        }
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(Error::Nat64Parse)?;
        // Parsed from the text, not from `v`: errors then name the key path and the line
        // (`nat64.staticBindings[1].ipv4: ... at line 7`).
        if v.get("nat64").is_some() {
            serde_yaml_ng::from_str::<Whole>(text)
                .map(|w| w.nat64)
                .map_err(Error::Nat64Parse)
        } else {
            serde_yaml_ng::from_str(text).map_err(Error::Nat64Parse)
        }
    }

    /// The datapath flags of the header options (traffic class, TOS, error source, ID).
    fn header_flags(&self) -> u8 {
        let mut f = 0;
        if self.zero_traffic_class {
            f |= maps::CFG_ZERO_TRAFFIC_CLASS;
        }
        if self.override_tos.is_some() {
            f |= maps::CFG_OVERRIDE_TOS;
        }
        if self.icmpv6_error_source == ErrorSource::Destination {
            f |= maps::CFG_ICMP6_FROM_DESTINATION;
        }
        if self.ipv4_identification == Identification::ZeroWithDf {
            f |= maps::CFG_ZERO_ID_WITH_DF;
        }
        f
    }

    /// The prefix as RFC 6052 sees it, if its length is valid.
    pub fn rfc6052_prefix(&self) -> Option<Prefix> {
        Prefix::new(self.prefix.network().octets(), self.prefix.prefix_len())
    }

    /// Whether the prefix is the Well-Known Prefix (non-global IPv4 destinations refused).
    pub fn is_wkp(&self) -> bool {
        self.rfc6052_prefix().is_some_and(|p| p.is_wkp())
    }

    /// Everything wrong with the configuration, all at once (empty: valid). Keys are relative
    /// to `nat64`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("nat64");
        self.prefix_problems(&mut p);
        match self.mode {
            Mode::Off => {}
            Mode::Translate => {
                self.translate_problems(&mut p);
                let cx = statics::Context {
                    pool: &self.pool,
                    ranges: self.ranges(),
                    prefix: self.prefix,
                };
                statics::problems(&self.static_bindings, &cx, &mut p);
            }
            Mode::Route => {
                if self.gateway.is_none() {
                    p.add(
                        "gateway",
                        "route mode needs the address of a translating node",
                    );
                }
            }
        }
        if self.mode != Mode::Translate && !self.static_bindings.is_empty() {
            p.add(
                "staticBindings",
                "only a translating node (mode: translate) has static bindings",
            );
        }
        if !(1260..=65535).contains(&self.ipv4_mtu) {
            p.add(
                "ipv4Mtu",
                format!(
                    "{} is outside 1260-65535 (IPv6's 1280 minus the 20-byte header difference)",
                    self.ipv4_mtu
                ),
            );
        }
        for c in &self.pod_cidrs {
            if c.trunc() != *c {
                p.add("podCIDRs", format!("{c} has host bits set"));
            }
        }
        if self.pod_cidrs.len() > 256 {
            p.add("podCIDRs", "at most 256 CIDRs");
        }
        p.into_vec()
    }

    /// RFC 6052's rules for the prefix (one problem at most: each rule assumes the previous).
    fn prefix_problems(&self, p: &mut Problems) {
        let len = self.prefix.prefix_len();
        if !addr::valid_len(len) {
            p.add(
                "prefix",
                format!(
                    "{} has length /{len}; RFC 6052 allows /32, /40, /48, /56, /64 or /96",
                    self.prefix
                ),
            );
        } else if self.prefix.trunc() != self.prefix {
            p.add(
                "prefix",
                format!("{} has bits set beyond /{len}", self.prefix),
            );
        } else if len == 96 && self.prefix.network().octets()[8] != 0 {
            p.add(
                "prefix",
                format!(
                    "{}: bits 64-71 (the u-octet) must be zero (RFC 6052 §2.2)",
                    self.prefix
                ),
            );
        }
    }

    /// What a translating node needs: a pool the datapath can hold, the sources it serves,
    /// usable port ranges and timeouts.
    fn translate_problems(&self, p: &mut Problems) {
        if self.pool.is_empty() {
            p.add("pool", "translate mode needs at least one IPv4 address");
        }
        if self.pool.len() > MAX_POOL_ADDRS {
            p.add(
                "pool",
                format!(
                    "{} addresses; the datapath holds at most {MAX_POOL_ADDRS}",
                    self.pool.len()
                ),
            );
        }
        let unique: BTreeSet<_> = self.pool.iter().collect();
        if unique.len() != self.pool.len() {
            p.add("pool", "addresses must be distinct");
        }
        for a in &self.pool {
            if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() {
                p.add("pool", format!("{a} cannot be a source address"));
            }
        }
        if self.pod_cidrs.is_empty() {
            p.add(
                "podCIDRs",
                "list the pod CIDRs allowed to use NAT64 (nothing else is translated)",
            );
        }
        for (key, span, min) in [
            ("ports.tcp", self.ports.tcp, 1),
            ("ports.udp", self.ports.udp, 1),
            ("ports.icmp", self.ports.icmp, 0),
        ] {
            if span.is_empty() || span.lo < min {
                p.add(key, format!("{span} is not a usable range"));
            }
        }
        for (key, secs) in [
            ("timeouts.udp", self.timeouts.udp),
            ("timeouts.tcpEstablished", self.timeouts.tcp_established),
            ("timeouts.tcpTransitory", self.timeouts.tcp_transitory),
            ("timeouts.icmp", self.timeouts.icmp),
        ] {
            if secs == 0 {
                p.add(key, "must be at least one second");
            }
        }
    }

    /// Checks the configuration; the error lists every problem.
    pub fn validate(&self) -> Result<()> {
        let p = self.problems();
        if p.is_empty() {
            Ok(())
        } else {
            Err(Error::Nat64Config(p))
        }
    }

    /// The datapath's configuration entry. `hash_key` is the secret of the port selection
    /// hash (kept across restarts by the map programmer).
    pub fn datapath(&self, hash_key: [u32; 4]) -> Result<maps::Config> {
        self.validate()?;
        let prefix = self.rfc6052_prefix().ok_or_else(|| {
            Error::Nat64Config(vec![Problem {
                section: "nat64",
                key: "prefix".into(),
                message: "invalid".into(),
            }])
        })?;
        let mut c = maps::Config {
            prefix: prefix.addr,
            prefix_len: prefix.len,
            hash_key,
            ..Default::default()
        };
        if self.mode == Mode::Translate {
            c.flags |= maps::CFG_ENABLED;
            for (i, a) in self.pool.iter().enumerate() {
                c.addrs[i] = a.octets();
            }
            c.n_addrs = self.pool.len() as u8;
        }
        if prefix.is_wkp() {
            c.flags |= maps::CFG_WKP_STRICT;
        }
        if self.endpoint_independent_filtering {
            c.flags |= maps::CFG_EIF_UDP;
        }
        if self.clamp_mss {
            c.flags |= maps::CFG_CLAMP_MSS;
        }
        c.unsolicited_tcp = match self.unsolicited_tcp {
            UnsolicitedTcp::Hold => maps::UNSOLICITED_HOLD,
            UnsolicitedTcp::Drop => maps::UNSOLICITED_DROP,
        };
        c.flags |= self.header_flags();
        c.tos = self.override_tos.unwrap_or(0);
        // Validated to fit (1260..=65535).
        c.ipv4_mtu = self.ipv4_mtu as u16;
        c.ports = self.ranges();
        if self.mode == Mode::Translate {
            // Validated: at most MAX_STATIC_BINDINGS.
            c.statics = self.static_bindings.len() as u16;
        }
        Ok(c)
    }

    /// The dynamic port ranges as the datapath holds them: TCP, UDP, ICMP.
    fn ranges(&self) -> [PortRange; 3] {
        let range = |s: Span| PortRange { lo: s.lo, hi: s.hi };
        [
            range(self.ports.tcp),
            range(self.ports.udp),
            range(self.ports.icmp),
        ]
    }

    /// The pods' route to the prefix for a pod link of `pod_mtu`, or `None` when NAT64 is off.
    pub fn pod_route(&self, pod_mtu: u32) -> Option<PodRoute> {
        if self.mode == Mode::Off {
            return None;
        }
        let mtu = pod_mtu.min(self.ipv4_mtu + 20);
        Some(PodRoute {
            prefix: self.prefix,
            mtu,
            advmss: mtu.saturating_sub(60),
        })
    }

    /// Map sizes that fit this pool (for `LoadOptions::max_entries`): two BIB entries per
    /// possible binding, so the binding table never has to evict a live reservation (on a full
    /// LRU map every reservation attempt would evict some other entry), and two session
    /// entries per binding on average. Never below the object's defaults; capped at 4 Mi
    /// entries per map. Changing sizes later replaces the pinned maps (their state is lost).
    pub fn max_entries(&self) -> std::collections::BTreeMap<String, u32> {
        use sixlane_common::layout::{MAP_NAT64_BIB, MAP_NAT64_SESSIONS};
        const BIB_DEFAULT: u64 = 131_072;
        const SESSIONS_DEFAULT: u64 = 262_144;
        const CAP: u64 = 4 << 20;
        let per_addr = u64::from(self.ports.tcp.len())
            + u64::from(self.ports.udp.len())
            + u64::from(self.ports.icmp.len());
        let bindings = per_addr * self.pool.len() as u64;
        let bib = (2 * bindings).clamp(BIB_DEFAULT, CAP);
        let sessions = (2 * bib).clamp(SESSIONS_DEFAULT, CAP);
        [
            (MAP_NAT64_BIB.to_owned(), bib as u32),
            (MAP_NAT64_SESSIONS.to_owned(), sessions as u32),
        ]
        .into()
    }

    /// How long a session may stay idle: by protocol and, for TCP, state.
    pub fn timeout(&self, proto: u8, tcp_state: u8) -> Duration {
        use sixlane_common::nat64::{header, tcp::State};
        match proto {
            header::PROTO_TCP => {
                if State::from_u8(tcp_state).is_established() {
                    self.timeouts.tcp_established()
                } else {
                    self.timeouts.tcp_transitory()
                }
            }
            header::PROTO_UDP => self.timeouts.udp(),
            _ => self.timeouts.icmp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate() -> Nat64Config {
        Nat64Config {
            mode: Mode::Translate,
            prefix: "fd00:6464::/96".parse().unwrap(),
            pool: vec!["198.18.0.1".parse().unwrap()],
            pod_cidrs: vec!["fd00:10::/64".parse().unwrap()],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_off_with_the_well_known_prefix_and_jool_timeouts() {
        let c = Nat64Config::default();
        assert_eq!(c.mode, Mode::Off);
        assert_eq!(c.prefix.to_string(), "64:ff9b::/96");
        assert!(c.is_wkp());
        assert_eq!(c.timeouts.udp(), Duration::from_secs(300));
        assert_eq!(c.timeouts.tcp_established(), Duration::from_secs(7200));
        assert_eq!(c.timeouts.tcp_transitory(), Duration::from_secs(240));
        assert_eq!(c.timeouts.icmp(), Duration::from_secs(60));
        assert_eq!(c.ports.tcp, Span::new(61001, 65535));
        c.validate().unwrap();
        assert_eq!(c.pod_route(1500), None);
    }

    #[test]
    fn yaml_section_or_whole_file() {
        let y = r#"
mode: translate
prefix: fd00:6464::/96
pool: [198.18.0.1, 198.18.0.2]
ports: {tcp: 1024-65535, udp: "2000-3000", icmp: 7}
podCIDRs: [fd00:10::/64]
timeouts: {udp: 30, tcpTransitory: 10}
endpointIndependentFiltering: false
unsolicitedTcp: drop
clampMss: false
ipv4Mtu: 1460
"#;
        let c = Nat64Config::from_yaml(y).unwrap();
        assert_eq!(c.unsolicited_tcp, UnsolicitedTcp::Drop);
        assert_eq!(
            c.datapath([0; 4]).unwrap().unsolicited_tcp,
            maps::UNSOLICITED_DROP
        );
        assert_eq!(c.mode, Mode::Translate);
        assert_eq!(c.pool.len(), 2);
        assert_eq!(c.ports.tcp, Span::new(1024, 65535));
        assert_eq!(c.ports.udp, Span::new(2000, 3000));
        assert_eq!(c.ports.icmp, Span::new(7, 7));
        assert_eq!(c.timeouts.udp, 30);
        assert_eq!(c.timeouts.tcp_established, 7200, "unset keys keep defaults");
        assert!(!c.endpoint_independent_filtering && !c.clamp_mss);
        c.validate().unwrap();
        let whole = format!(
            "node: {{}}\nnat64:\n{}",
            y.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        assert_eq!(Nat64Config::from_yaml(&whole).unwrap(), c);
        // One range for every protocol.
        let one = Nat64Config::from_yaml("ports: 40000-40003").unwrap();
        assert_eq!(one.ports.udp, Span::new(40000, 40003));
        assert_eq!(one.ports.icmp, Span::new(40000, 40003));
        // Typos are errors, not silent defaults.
        assert!(Nat64Config::from_yaml("pools: [198.18.0.1]").is_err());
        assert!(Nat64Config::from_yaml("timeouts: {tcp: 5}").is_err());
        assert!(Nat64Config::from_yaml("ports: 10-x").is_err());
    }

    #[test]
    fn a_parse_error_is_reported_once() {
        let e = anyhow::Error::from(Nat64Config::from_yaml("pools: [198.18.0.1]").unwrap_err());
        let e = format!("{e:#}");
        assert!(e.starts_with("invalid NAT64 configuration: "), "{e}");
        assert_eq!(e.matches("unknown field `pools`").count(), 1, "{e}");
    }

    #[test]
    fn every_problem_is_reported() {
        let c = Nat64Config {
            mode: Mode::Translate,
            prefix: "fd00:6464::/95".parse().unwrap(),
            pool: vec![],
            pod_cidrs: vec!["fd00:10::1/64".parse().unwrap()],
            ports: Ports {
                tcp: Span::new(10, 5),
                udp: Span::new(0, 0),
                icmp: Span::new(0, 10),
            },
            timeouts: Timeouts {
                udp: 0,
                ..Default::default()
            },
            ipv4_mtu: 500,
            ..Default::default()
        };
        let problems = c.problems();
        let keys: Vec<&str> = problems.iter().map(|p| &*p.key).collect();
        for k in [
            "prefix",
            "pool",
            "ports.tcp",
            "ports.udp",
            "timeouts.udp",
            "ipv4Mtu",
            "podCIDRs",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(
            !keys.contains(&"ports.icmp"),
            "identifier 0 is fine for ICMP"
        );
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("nat64.prefix") && err.contains("nat64.pool"),
            "{err}"
        );
    }

    #[test]
    fn prefix_rules() {
        let mut c = translate();
        for ok in [
            "64:ff9b::/96",
            "64:ff9b:1::/48",
            "2001:db8::/32",
            "2001:db8:100::/40",
            "2001:db8:122:344::/64",
        ] {
            c.prefix = ok.parse().unwrap();
            assert!(c.problems().is_empty(), "{ok}: {:?}", c.problems());
        }
        c.prefix = "2001:db8:122:344:100::/96".parse().unwrap();
        assert!(c.problems()[0].message.contains("u-octet"));
        c.prefix = "2001:db8::1/32".parse().unwrap();
        assert!(c.problems()[0].message.contains("beyond"));
        c.prefix = "64:ff9b::/96".parse().unwrap();
        assert!(c.is_wkp());
        c.prefix = "fd00:6464::/96".parse().unwrap();
        assert!(!c.is_wkp());
    }

    #[test]
    fn route_mode_needs_a_gateway() {
        let mut c = Nat64Config {
            mode: Mode::Route,
            ..Default::default()
        };
        assert_eq!(c.problems()[0].key, "gateway");
        c.gateway = Some("fd00:1::7".parse().unwrap());
        c.validate().unwrap();
        // A route-mode node does not translate: the datapath stays disabled.
        let d = c.datapath([0; 4]).unwrap();
        assert_eq!(d.flags & maps::CFG_ENABLED, 0);
    }

    #[test]
    fn static_bindings_are_checked_against_the_pool_and_counted_for_the_datapath() {
        let y = "mode: translate\nprefix: fd00:6464::/96\npool: [198.18.0.1]\n\
                 podCIDRs: [fd00:10::/64]\nports: {tcp: 62000-65535}\nstaticBindings:\n\
                 - {protocol: tcp, ipv4: \"198.18.0.1:8080\", ipv6: \"[fd00:10::a]:80\"}\n\
                 - {protocol: udp, ipv4: \"198.18.0.1:53\", ipv6: \"[fd00:10::a]:53\"}\n";
        let mut c = Nat64Config::from_yaml(y).unwrap();
        c.validate().unwrap();
        assert_eq!(c.datapath([0; 4]).unwrap().statics, 2);
        // A malformed address is named by its path, in a section or a whole configuration.
        let bad = y.replace("198.18.0.1:53", "198.18.0.1");
        for text in [
            bad.clone(),
            format!("node: {{}}\nnat64:\n  {}", bad.replace('\n', "\n  ")),
        ] {
            let e = format!(
                "{:#}",
                anyhow::Error::from(Nat64Config::from_yaml(&text).unwrap_err())
            );
            assert!(e.contains("staticBindings[1].ipv4"), "{e}");
        }
        // Ranges are per protocol: 61500 is in the (default) UDP range, not in the TCP one.
        c.static_bindings[0].ipv4.set_port(61500);
        c.static_bindings[1].ipv4.set_port(61500);
        let keys: Vec<_> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["staticBindings[1].ipv4"]);
        // Only a translating node has them.
        c.mode = Mode::Route;
        c.gateway = Some("fd00:1::7".parse().unwrap());
        let keys: Vec<_> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["staticBindings"]);
        c.mode = Mode::Off;
        assert!(c.validate().is_err());
        c.static_bindings.clear();
        assert_eq!(c.datapath([0; 4]).unwrap().statics, 0);
    }

    #[test]
    fn header_options_from_yaml_to_the_datapath() {
        let d = translate().datapath([0; 4]).unwrap();
        let opts = maps::CFG_ZERO_TRAFFIC_CLASS
            | maps::CFG_OVERRIDE_TOS
            | maps::CFG_ICMP6_FROM_DESTINATION
            | maps::CFG_ZERO_ID_WITH_DF;
        assert_eq!(d.flags & opts, 0, "Jool's defaults: none set");
        let mut c: Nat64Config = serde_yaml_ng::from_str(
            "zeroTrafficClass: true\noverrideTos: 32\nicmpv6ErrorSource: destination\n\
             ipv4Identification: zeroWithDf\n",
        )
        .unwrap();
        c.mode = Mode::Translate;
        c.pool = translate().pool;
        c.pod_cidrs = translate().pod_cidrs;
        let d = c.datapath([0; 4]).unwrap();
        assert_eq!((d.flags & opts, d.tos), (opts, 32));
        let bad = serde_yaml_ng::from_str::<Nat64Config>("icmpv6ErrorSource: quoted\n");
        assert!(bad.unwrap_err().to_string().contains("unknown variant"));
    }

    #[test]
    fn datapath_config() {
        let mut c = translate();
        c.pool.push("198.18.0.2".parse().unwrap());
        c.ports.udp = Span::new(5000, 5999);
        let d = c.datapath([1, 2, 3, 4]).unwrap();
        assert_eq!(d.prefix_len, 96);
        assert_eq!(
            Ipv6Addr::from(d.prefix),
            "fd00:6464::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(d.n_addrs, 2);
        assert_eq!(d.addrs[1], [198, 18, 0, 2]);
        assert_eq!(d.ports[1], PortRange { lo: 5000, hi: 5999 });
        assert_eq!(d.hash_key, [1, 2, 3, 4]);
        // RFC 6146 §3.5.2.2's default: unsolicited SYNs held for a simultaneous open.
        assert_eq!(d.unsolicited_tcp, maps::UNSOLICITED_HOLD);
        assert_eq!(d.ipv4_mtu, 1500);
        assert_ne!(d.flags & maps::CFG_ENABLED, 0);
        assert_eq!(d.flags & maps::CFG_WKP_STRICT, 0);
        assert_ne!(d.flags & maps::CFG_EIF_UDP, 0);
        c.prefix = "64:ff9b::/96".parse().unwrap();
        assert_ne!(c.datapath([0; 4]).unwrap().flags & maps::CFG_WKP_STRICT, 0);
        c.mode = Mode::Translate;
        c.pool.clear();
        assert!(
            c.datapath([0; 4]).is_err(),
            "invalid configs never reach the maps"
        );
    }

    #[test]
    fn pod_route_sized_for_the_ipv4_path() {
        let mut c = translate();
        assert_eq!(
            c.pod_route(1500),
            Some(PodRoute {
                prefix: c.prefix,
                mtu: 1500,
                advmss: 1440
            })
        );
        c.ipv4_mtu = 1460;
        let r = c.pod_route(1500).unwrap();
        assert_eq!((r.mtu, r.advmss), (1480, 1420));
        c.ipv4_mtu = 9000;
        assert_eq!(
            c.pod_route(1500).unwrap().mtu,
            1500,
            "never above the pod link"
        );
    }

    #[test]
    fn map_sizes_fit_the_pool() {
        let mut c = translate();
        // 3 × 4535 ports on one address: below the defaults.
        let m = c.max_entries();
        assert_eq!(m["SL_N64_BIB"], 131_072);
        assert_eq!(m["SL_N64_SESSIONS"], 262_144);
        // 4 addresses × 3 × 64512 ports: 774,144 bindings → 1,548,288 BIB entries.
        c.pool = (1..=4).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
        c.ports = Ports {
            tcp: Span::new(1024, 65535),
            udp: Span::new(1024, 65535),
            icmp: Span::new(1024, 65535),
        };
        let m = c.max_entries();
        assert_eq!(m["SL_N64_BIB"], 1_548_288);
        assert_eq!(m["SL_N64_SESSIONS"], 3_096_576);
        c.pool = (1..=16).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
        assert_eq!(c.max_entries()["SL_N64_BIB"], 4 << 20, "capped");
    }

    #[test]
    fn timeouts_by_protocol_and_state() {
        use sixlane_common::nat64::tcp::State;
        let c = translate();
        assert_eq!(
            c.timeout(6, State::Established as u8),
            Duration::from_secs(7200)
        );
        assert_eq!(
            c.timeout(6, State::V6FinRcv as u8),
            Duration::from_secs(7200)
        );
        assert_eq!(c.timeout(6, State::V6Init as u8), Duration::from_secs(240));
        assert_eq!(c.timeout(6, State::Trans as u8), Duration::from_secs(240));
        assert_eq!(c.timeout(17, 0), Duration::from_secs(300));
        assert_eq!(c.timeout(1, 0), Duration::from_secs(60));
    }
}
