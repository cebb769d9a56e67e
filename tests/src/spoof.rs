//! Source validation tests' tools: a pod claiming another address (as a spoofing workload would,
//! by adding it to its interface), sending echo requests from a chosen source, and the counts
//! that show where they went.

use std::net::Ipv6Addr;

use sixlane_agent::{PinLayout, metrics};
use sixlane_common::metrics::{Direction, Reason};
use sixlane_testkit::NetNs;

/// Adds `addr` to the pod's `eth0` (no DAD), so its packets may carry it as their source.
pub fn claim(pod: &NetNs, addr: Ipv6Addr) {
    pod.ip(&[
        "addr",
        "add",
        &format!("{addr}/128"),
        "dev",
        "eth0",
        "nodad",
    ])
    .unwrap();
}

/// Sends `n` echo requests from `src` to `dst` (replies may go to whoever owns `src`: not
/// waited for). `src` may be an interface name, for a link-local source.
pub fn ping_from(pod: &NetNs, src: &str, dst: &str, n: u32) {
    pod.exec_output(
        "ping",
        &[
            "-6",
            "-c",
            &n.to_string(),
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            src,
            dst,
        ],
    )
    .unwrap();
}

/// Echo requests the namespace's stack has received (`Icmp6InEchos`).
pub fn echoes_received(ns: &NetNs) -> u64 {
    let snmp = ns.exec("cat", &["/proc/net/snmp6"]).unwrap();
    snmp.lines()
        .find_map(|l| l.strip_prefix("Icmp6InEchos"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Icmp6InEchos in /proc/net/snmp6")
}

/// Packets dropped as spoofed (`src_spoofed`, ingress).
pub fn spoofed(layout: &PinLayout) -> u64 {
    count(layout, Reason::SrcSpoofed)
}

/// Ingress packets counted under `r`.
pub fn count(layout: &PinLayout, r: Reason) -> u64 {
    metrics::get(&metrics::read(layout).unwrap(), Direction::Ingress, r).packets
}
