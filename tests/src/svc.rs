//! Helpers for the service datapath tests: model builders, raw ICMPv6 packets, counters.

use std::net::Ipv6Addr;

use sixlane_testkit::{NetNs, Veth};

use sixlane_agent::{
    PinLayout, metrics,
    model::{Backend, Protocol, Service, ServiceId, ServicePort, TrafficPolicy},
};
use sixlane_common::metrics::{Direction, Reason};
use sixlane_testkit::packet::{self, ETH_HLEN, MAC_A, MAC_B, checksum};

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("IPv6 address")
}

/// A ready endpoint.
pub fn backend(addr: Ipv6Addr, port: u16, local: bool) -> Backend {
    Backend {
        addr,
        port,
        ready: true,
        serving: true,
        terminating: false,
        local,
    }
}

/// A ClusterIP Service with one TCP port.
pub fn service(name: &str, vip: Ipv6Addr, port: u16, backends: Vec<Backend>) -> Service {
    Service {
        id: ServiceId {
            namespace: "test".into(),
            name: name.into(),
        },
        cluster_ips: vec![vip],
        external_ips: vec![],
        load_balancer_ips: vec![],
        ports: vec![port_of("tcp", Protocol::Tcp, port, backends)],
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        session_affinity: None,
        health_check_node_port: None,
    }
}

pub fn port_of(name: &str, protocol: Protocol, port: u16, backends: Vec<Backend>) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol,
        port,
        node_port: None,
        backends,
    }
}

/// Swaps the Ethernet addresses (what the datapath does to a frame it sends back).
pub fn swap_macs(mut pkt: Vec<u8>) -> Vec<u8> {
    let (a, b) = pkt.split_at_mut(6);
    a.swap_with_slice(&mut b[..6]);
    pkt
}

/// Ethernet (`MAC_A` → `MAC_B`) + IPv6 + an ICMPv6 message with `rest` as bytes 4..8 and
/// `body` after them; checksum computed with the testkit's RFC 1071 code.
pub fn icmp6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![ty, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(body);
    let pseudo = checksum::pseudo_v6(&src.octets(), &dst.octets(), icmp.len() as u32, 58);
    let c = checksum::compute(&icmp, pseudo);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = Vec::new();
    p.extend_from_slice(&MAC_B);
    p.extend_from_slice(&MAC_A);
    p.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&icmp);
    p
}

/// The IP packet of a frame (what an ICMPv6 error quotes).
pub fn ip_part(frame: &[u8]) -> &[u8] {
    &frame[ETH_HLEN..]
}

/// ICMPv6 echo reply as the datapath writes it: `src` answering `dst`, MACs swapped.
pub fn echo_reply(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut rest = [0u8; 4];
    rest[..2].copy_from_slice(&id.to_be_bytes());
    rest[2..].copy_from_slice(&seq.to_be_bytes());
    swap_macs(icmp6(src, dst, 129, 0, rest, payload))
}

/// Sum of every counter's packets, and one (direction, reason) counter.
pub fn counters(layout: &PinLayout, dir: Direction, reason: Reason) -> (u64, u64) {
    let rows = metrics::read(layout).expect("reading counters");
    let total = rows.iter().map(|r| r.packets).sum();
    (total, metrics::get(&rows, dir, reason).packets)
}

/// `packet::verify_checksums`, panicking with a description.
pub fn assert_checksums(pkt: &[u8]) {
    if let Err(e) = packet::verify_checksums(pkt) {
        panic!("{e}: {}", packet::describe(pkt));
    }
}

/// The host side of one pod's veth in a [`PodsNode`].
pub struct PodLink {
    pub ifindex: u32,
    /// The host-side end's MAC (a frame delivered into the pod comes from it).
    pub host_mac: [u8; 6],
    /// The pod-side end's MAC.
    pub pod_mac: [u8; 6],
}

/// A namespace standing in for a node with two local pods' veths (`a`, `b`): a /128 route and a
/// permanent neighbour on each for its pod addresses, so the datapath's FIB lookups resolve in
/// `BPF_PROG_TEST_RUN` fixtures. The pod ends sit in a second namespace; nothing is ever sent.
pub struct PodsNode {
    // Drop order: links, then namespaces.
    pub a_veth: Veth,
    pub b_veth: Veth,
    pub ns: NetNs,
    pub pods_ns: NetNs,
    pub a: PodLink,
    pub b: PodLink,
}

impl PodsNode {
    pub fn new(a_pods: &[Ipv6Addr], b_pods: &[Ipv6Addr]) -> Self {
        use crate::nat64::{ifindex, mac_of, route_pods};
        let ns = NetNs::new().expect("netns");
        let pods_ns = NetNs::new().expect("pods netns");
        for (k, v) in [
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ] {
            ns.sysctl(k, v).expect("sysctl");
        }
        let a_veth = Veth::new(Some(&ns), Some(&pods_ns)).expect("veth a");
        let b_veth = Veth::new(Some(&ns), Some(&pods_ns)).expect("veth b");
        let link = |v: &Veth, pods: &[Ipv6Addr]| {
            let l = PodLink {
                ifindex: ifindex(&ns, &v.a.name),
                host_mac: mac_of(&v.a),
                pod_mac: mac_of(&v.b),
            };
            route_pods(&v.a, pods, l.pod_mac);
            l
        };
        let a = link(&a_veth, a_pods);
        let b = link(&b_veth, b_pods);
        Self {
            a_veth,
            b_veth,
            ns,
            pods_ns,
            a,
            b,
        }
    }
}

/// `frame` as the datapath delivers it into the pod behind `to`: Ethernet addresses of that
/// veth pair, hop limit decremented as a router would.
pub fn into_pod(mut frame: Vec<u8>, to: &PodLink) -> Vec<u8> {
    frame[..6].copy_from_slice(&to.pod_mac);
    frame[6..12].copy_from_slice(&to.host_mac);
    frame[ETH_HLEN + 7] -= 1;
    frame
}
