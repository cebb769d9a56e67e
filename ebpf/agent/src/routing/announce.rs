//! What this node announces over BGP: a pure function of the node, the desired service state
//! and the configuration, re-evaluated on every change so the announcements follow the cluster.
//!
//! - The node's pod CIDR(s), if `announce.podCIDRs`.
//! - The ClusterIP ranges, from every node: the router spreads them by ECMP.
//! - External IPs and LoadBalancer IPs inside their allow-lists, as /128s:
//!   `externalTrafficPolicy: Cluster` from every node; `Local` only from a node with a ready
//!   local endpoint (withdrawn when its last one goes), so outside traffic only reaches nodes
//!   that keep it local.
//! - The ClusterIP of an `internalTrafficPolicy: Local` Service, as a /128 only from nodes
//!   with a ready local endpoint, inside the ClusterIP ranges (which are still announced by
//!   all).
//! - An address several Services use is announced while any of them qualifies.
//! - A node labelled `node.kubernetes.io/exclude-from-external-load-balancers` announces no
//!   service address (its pod CIDRs only).
//!
//! One announcement per prefix: when a prefix qualifies as several kinds (an address both an
//! external and a LoadBalancer IP), it carries every kind's communities and the highest local
//! preference, and is counted as the first kind in [`Kind`]'s order.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
};

use ipnet::Ipv6Net;
use serde::Serialize;

use crate::{
    model::{DesiredState, Service, TrafficPolicy},
    routing::config::{BgpConfig, Community, PerKind},
};

/// The well-known label (`v1.LabelNodeExcludeBalancers`) that takes a node out of load
/// balancing: its presence, whatever its value, counts.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// Whether a node with `labels` announces no service address.
pub fn excluded(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key(EXCLUDE_LABEL)
}

/// The kind of an announced prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    PodCidr,
    ClusterIpRange,
    ClusterIp,
    ExternalIp,
    LoadBalancerIp,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::PodCidr,
        Kind::ClusterIpRange,
        Kind::ClusterIp,
        Kind::ExternalIp,
        Kind::LoadBalancerIp,
    ];

    /// As metrics and the CLI name it.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::PodCidr => "podCIDR",
            Kind::ClusterIpRange => "clusterIPRange",
            Kind::ClusterIp => "clusterIP",
            Kind::ExternalIp => "externalIP",
            Kind::LoadBalancerIp => "loadBalancerIP",
        }
    }

    /// This kind's entry of a per-kind setting (ranges and ClusterIPs share `clusterIP`).
    pub fn of<T>(self, setting: &PerKind<T>) -> &T {
        match self {
            Kind::PodCidr => &setting.pod_cidr,
            Kind::ClusterIpRange | Kind::ClusterIp => &setting.cluster_ip,
            Kind::ExternalIp => &setting.external_ip,
            Kind::LoadBalancerIp => &setting.load_balancer_ip,
        }
    }
}

/// One prefix to announce, with its BGP attributes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Announcement {
    pub prefix: Ipv6Net,
    pub kind: Kind,
    /// Sorted, each once.
    pub communities: Vec<Community>,
    pub local_pref: Option<u32>,
}

/// What the announcements depend on.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The node carries [`EXCLUDE_LABEL`].
    pub node_excluded: bool,
    /// The node's own pod CIDR(s).
    pub pod_cidrs: &'a [Ipv6Net],
    /// The ClusterIP ranges in force ([`BgpConfig::cluster_ranges`]).
    pub cluster_ranges: &'a [Ipv6Net],
    /// The node's desired service state (backends marked `local` are this node's).
    pub services: &'a DesiredState,
    pub cfg: &'a BgpConfig,
}

/// Everything this node announces, sorted by prefix, one entry per prefix.
pub fn announcements(input: &Input<'_>) -> Vec<Announcement> {
    let mut kinds: BTreeMap<Ipv6Net, BTreeSet<Kind>> = BTreeMap::new();
    let mut add = |prefix: Ipv6Net, kind| {
        kinds.entry(prefix.trunc()).or_default().insert(kind);
    };
    if input.cfg.announce.pod_cidrs {
        for c in input.pod_cidrs {
            add(*c, Kind::PodCidr);
        }
    }
    if !input.node_excluded {
        for r in input.cluster_ranges {
            add(*r, Kind::ClusterIpRange);
        }
        for svc in input.services.services.values() {
            for (addr, kind) in service_addresses(svc, input) {
                add(Ipv6Net::from(addr), kind);
            }
        }
    }
    kinds
        .into_iter()
        .map(|(prefix, kinds)| attributes(prefix, &kinds, input.cfg))
        .collect()
}

/// The /128s one Service qualifies for on this node.
fn service_addresses(svc: &Service, input: &Input<'_>) -> Vec<(Ipv6Addr, Kind)> {
    let local_ready = svc
        .ports
        .iter()
        .flat_map(|p| &p.backends)
        .any(|b| b.local && b.ready);
    let inside = |a: &Ipv6Addr, list: &[Ipv6Net]| list.iter().any(|n| n.contains(a));
    let mut out = Vec::new();
    if svc.internal_traffic_policy == TrafficPolicy::Local && local_ready {
        out.extend(
            svc.cluster_ips
                .iter()
                .filter(|a| inside(a, input.cluster_ranges))
                .map(|a| (*a, Kind::ClusterIp)),
        );
    }
    if svc.external_traffic_policy == TrafficPolicy::Cluster || local_ready {
        let allow = &input.cfg.announce;
        out.extend(
            svc.external_ips
                .iter()
                .filter(|a| inside(a, &allow.external_ips))
                .map(|a| (*a, Kind::ExternalIp)),
        );
        out.extend(
            svc.load_balancer_ips
                .iter()
                .filter(|a| inside(a, &allow.load_balancer_ips))
                .map(|a| (*a, Kind::LoadBalancerIp)),
        );
    }
    out
}

/// The announcement of `prefix` qualifying as `kinds` (not empty).
fn attributes(prefix: Ipv6Net, kinds: &BTreeSet<Kind>, cfg: &BgpConfig) -> Announcement {
    let communities: BTreeSet<Community> = kinds
        .iter()
        .flat_map(|k| k.of(&cfg.communities))
        .copied()
        .collect();
    Announcement {
        prefix,
        kind: *kinds.first().expect("a prefix is added with its kind"),
        communities: communities.into_iter().collect(),
        local_pref: kinds
            .iter()
            .filter_map(|k| *k.of(&cfg.local_preference))
            .max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Protocol, ServiceId, ServicePort};

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A Service with one port whose backends are `(local, ready)`.
    fn svc(name: &str, backends: &[(bool, bool)]) -> Service {
        Service {
            id: ServiceId {
                namespace: "default".into(),
                name: name.into(),
            },
            cluster_ips: vec![ip("fd00:10:96::10")],
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: None,
                backends: backends
                    .iter()
                    .enumerate()
                    .map(|(i, (local, ready))| Backend {
                        addr: ip(&format!("fd00:10:244::{}", i + 1)),
                        port: 8080,
                        ready: *ready,
                        serving: *ready,
                        terminating: false,
                        local: *local,
                    })
                    .collect(),
            }],
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
            session_affinity: None,
            health_check_node_port: None,
        }
    }

    fn lb(mut s: Service, addr: &str, etp: TrafficPolicy) -> Service {
        s.load_balancer_ips = vec![ip(addr)];
        s.external_traffic_policy = etp;
        s
    }

    fn state(services: Vec<Service>) -> DesiredState {
        DesiredState {
            services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
            ..Default::default()
        }
    }

    fn cfg() -> BgpConfig {
        serde_yaml_ng::from_str(
            "enabled: true
announce:
  externalIPs: ['2001:db8:100::/64']
  loadBalancerIPs: ['2001:db8:200::/64']
",
        )
        .unwrap()
    }

    const POD: &str = "fd00:10:244:1::/64";
    const RANGE: &str = "fd00:10:96::/108";

    /// Prefixes (as strings) and their kinds.
    type Announced = Vec<(String, Kind)>;

    /// The announced prefixes and their kinds, as strings.
    fn run(excluded: bool, services: Vec<Service>, cfg: &BgpConfig) -> Announced {
        let desired = state(services);
        let input = Input {
            node_excluded: excluded,
            pod_cidrs: &[net(POD)],
            cluster_ranges: &[net(RANGE)],
            services: &desired,
            cfg,
        };
        announcements(&input)
            .into_iter()
            .map(|a| (a.prefix.to_string(), a.kind))
            .collect()
    }

    fn base() -> Announced {
        vec![
            (RANGE.into(), Kind::ClusterIpRange),
            (POD.into(), Kind::PodCidr),
        ]
    }

    fn with(mut list: Announced, extra: &[(&str, Kind)]) -> Announced {
        list.extend(extra.iter().map(|(p, k)| (p.to_string(), *k)));
        list.sort_by_key(|(p, k)| (net(p), *k));
        list
    }

    #[test]
    fn rules() {
        use Kind::*;
        use TrafficPolicy::{Cluster, Local};
        const LB: &str = "2001:db8:200::5";
        const LB128: &str = "2001:db8:200::5/128";
        let itp_local = |backends: &[(bool, bool)]| {
            let mut s = svc("itp", backends);
            s.internal_traffic_policy = Local;
            s
        };
        let outside_range = {
            let mut s = itp_local(&[(true, true)]);
            s.cluster_ips = vec![ip("fd00:99::1")];
            s
        };
        let external = |addrs: &[&str], etp| {
            let mut s = svc("ext", &[]);
            s.external_ips = addrs.iter().map(|a| ip(a)).collect();
            s.external_traffic_policy = etp;
            s
        };
        // (what, excluded, services, expected)
        let table: Vec<(&str, bool, Vec<Service>, Announced)> = vec![
            (
                "no services: pod CIDR and the ranges",
                false,
                vec![],
                base(),
            ),
            (
                "a ClusterIP Service adds nothing (the range covers it)",
                false,
                vec![svc("a", &[(true, true)])],
                base(),
            ),
            (
                "eTP Cluster LB: from every node, even without local endpoints",
                false,
                vec![lb(svc("a", &[(false, true)]), LB, Cluster)],
                with(base(), &[(LB128, LoadBalancerIp)]),
            ),
            (
                "eTP Cluster LB with no endpoints at all",
                false,
                vec![lb(svc("a", &[]), LB, Cluster)],
                with(base(), &[(LB128, LoadBalancerIp)]),
            ),
            (
                "eTP Local LB with a ready local endpoint",
                false,
                vec![lb(svc("a", &[(false, true), (true, true)]), LB, Local)],
                with(base(), &[(LB128, LoadBalancerIp)]),
            ),
            (
                "eTP Local LB, local endpoint not ready: withdrawn",
                false,
                vec![lb(svc("a", &[(false, true), (true, false)]), LB, Local)],
                base(),
            ),
            (
                "eTP Local LB, endpoints only elsewhere: withdrawn",
                false,
                vec![lb(svc("a", &[(false, true)]), LB, Local)],
                base(),
            ),
            (
                "LB IP outside the allow-list: never",
                false,
                vec![lb(svc("a", &[(true, true)]), "2001:db8:300::5", Cluster)],
                base(),
            ),
            (
                "external IPs: inside the allow-list only",
                false,
                vec![external(&["2001:db8:100::7", "2001:db8:101::7"], Cluster)],
                with(base(), &[("2001:db8:100::7/128", ExternalIp)]),
            ),
            (
                "eTP Local external IP without a local endpoint",
                false,
                vec![external(&["2001:db8:100::7"], Local)],
                base(),
            ),
            (
                "iTP Local with a ready local endpoint: the ClusterIP /128",
                false,
                vec![itp_local(&[(true, true)])],
                with(base(), &[("fd00:10:96::10/128", ClusterIp)]),
            ),
            (
                "iTP Local without one: only the range",
                false,
                vec![itp_local(&[(false, true), (true, false)])],
                base(),
            ),
            (
                "iTP Local ClusterIP outside the ranges: never",
                false,
                vec![outside_range],
                base(),
            ),
            (
                "eTP Local does not govern the ClusterIP",
                false,
                vec![lb(svc("a", &[(true, true)]), LB, Local)],
                with(base(), &[(LB128, LoadBalancerIp)]),
            ),
            (
                "excluded node: pod CIDR only",
                true,
                vec![
                    lb(svc("a", &[(true, true)]), LB, Cluster),
                    itp_local(&[(true, true)]),
                    external(&["2001:db8:100::7"], Cluster),
                ],
                vec![(POD.into(), PodCidr)],
            ),
        ];
        let cfg = cfg();
        for (what, excluded, services, want) in table {
            assert_eq!(run(excluded, services, &cfg), want, "{what}");
        }
    }

    #[test]
    fn a_shared_address_stays_while_any_service_qualifies() {
        use TrafficPolicy::{Cluster, Local};
        const LB: &str = "2001:db8:200::5";
        let cfg = cfg();
        let announced = |services: Vec<Service>| {
            run(false, services, &cfg)
                .iter()
                .any(|(p, _)| p == "2001:db8:200::5/128")
        };
        let a = || lb(svc("a", &[(true, true)]), LB, Local);
        let b = |ready| lb(svc("b", &[(true, ready)]), LB, Local);
        assert!(announced(vec![a(), b(true)]));
        // b stops qualifying: a still holds it.
        assert!(announced(vec![a(), b(false)]));
        // a goes too: withdrawn.
        assert!(!announced(vec![b(false)]));
        // One eTP Cluster user keeps it from every node.
        assert!(announced(vec![b(false), lb(svc("c", &[]), LB, Cluster)]));
        // Announced once.
        let both = run(false, vec![a(), b(true)], &cfg);
        assert_eq!(
            both.iter()
                .filter(|(p, _)| p == "2001:db8:200::5/128")
                .count(),
            1
        );
    }

    #[test]
    fn pod_cidrs_can_be_left_out_and_are_normalised() {
        let cfg = cfg();
        let mut off = cfg.clone();
        off.announce.pod_cidrs = false;
        let desired = state(vec![]);
        let pods = [net("fd00:10:244:1::5/64")];
        let input = Input {
            node_excluded: false,
            pod_cidrs: &pods,
            cluster_ranges: &[],
            services: &desired,
            cfg: &cfg,
        };
        assert_eq!(
            announcements(&input)[0].prefix,
            net("fd00:10:244:1::/64"),
            "a prefix is announced as its network"
        );
        let input = Input { cfg: &off, ..input };
        assert!(announcements(&input).is_empty());
    }

    #[test]
    fn communities_and_local_preference_per_kind() {
        let cfg: BgpConfig = serde_yaml_ng::from_str(
            "announce:
  externalIPs: ['2001:db8:200::/64']
  loadBalancerIPs: ['2001:db8:200::/64']
communities:
  podCIDR: ['65000:1']
  clusterIP: ['65000:2', '65000:1:2']
  externalIP: ['65000:3', '65000:9']
  loadBalancerIP: ['65000:9', '65000:4']
localPreference:
  externalIP: 150
  loadBalancerIP: 200
",
        )
        .unwrap();
        let mut shared = lb(svc("a", &[]), "2001:db8:200::5", TrafficPolicy::Cluster);
        shared.external_ips = vec![ip("2001:db8:200::5")];
        let mut itp = svc("b", &[(true, true)]);
        itp.internal_traffic_policy = TrafficPolicy::Local;
        let desired = state(vec![shared, itp]);
        let input = Input {
            node_excluded: false,
            pod_cidrs: &[net(POD)],
            cluster_ranges: &[net(RANGE)],
            services: &desired,
            cfg: &cfg,
        };
        let got: Vec<(String, Kind, Vec<String>, Option<u32>)> = announcements(&input)
            .into_iter()
            .map(|a| {
                (
                    a.prefix.to_string(),
                    a.kind,
                    a.communities.iter().map(ToString::to_string).collect(),
                    a.local_pref,
                )
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (
                    "2001:db8:200::5/128".into(),
                    Kind::ExternalIp,
                    // Both kinds' communities, each once; the higher local preference.
                    s(&["65000:3", "65000:4", "65000:9"]),
                    Some(200)
                ),
                (
                    RANGE.into(),
                    Kind::ClusterIpRange,
                    s(&["65000:2", "65000:1:2"]),
                    None
                ),
                (
                    "fd00:10:96::10/128".into(),
                    Kind::ClusterIp,
                    s(&["65000:2", "65000:1:2"]),
                    None
                ),
                (POD.into(), Kind::PodCidr, s(&["65000:1"]), None),
            ]
        );
        let mut pref = cfg.clone();
        pref.local_preference.pod_cidr = Some(50);
        let input = Input {
            cfg: &pref,
            ..input
        };
        assert_eq!(announcements(&input)[3].local_pref, Some(50));
    }

    #[test]
    fn the_exclude_label_counts_by_presence() {
        let mut labels = BTreeMap::new();
        assert!(!excluded(&labels));
        labels.insert(EXCLUDE_LABEL.to_string(), String::new());
        assert!(excluded(&labels));
    }

    #[test]
    fn kinds_are_listed_in_order_with_distinct_names() {
        assert!(Kind::ALL.is_sorted());
        let names: BTreeSet<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), Kind::ALL.len());
    }
}
