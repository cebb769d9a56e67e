//! The demo's network: a fabric (the data centre's switch and router) joining two IPv6-only
//! Kubernetes nodes and an outside client, plus a simulated IPv4-only internet behind it.
//!
//! ```text
//!               sld-outside  fd00:100::99
//!                    │
//!  sld-node1 ──eth0──┤ br0 (sld-fabric)  fd00:100::1, DNS64 fd00:100::53, 198.18.0.1
//!  fd00:100::11      │                      │ routes pod CIDRs via the nodes
//!  198.18.0.11       │                      └── inet ── sld-inet (IPv4 only)
//!  pods fd00:10:244:1::/64                           198.19.0.80 HTTP, 198.19.0.53 DNS
//!  sld-node2 ──eth0──┘
//!  fd00:100::12, 198.18.0.12, pods fd00:10:244:2::/64
//! ```
//!
//! Addresses: ULA for IPv6, the benchmarking range 198.18.0.0/15 for the IPv4 "internet";
//! nothing leaves the machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Context as _;
use sixlane_testkit::{NetNs, cmd, dns64::Unbound};

pub const FABRIC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);
pub const DNS64: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x53);
pub const OUTSIDE: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x99);
pub const FABRIC4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const INET_GW: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
pub const WEB4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 80);
pub const AUTH4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 53);
/// The NAT64 prefix: network-specific (the Well-Known Prefix would refuse the simulated
/// internet's non-global addresses, RFC 6052 §3.1).
pub const NAT64_PREFIX: &str = "fd00:6464::/96";
/// Every node's pod CIDR is inside this (what NAT64 accepts as sources).
pub const POD_SUPERNET: &str = "fd00:10:244::/56";
/// A name with only an A record, served by the internet's DNS.
pub const IPV4_ONLY_NAME: &str = "ipv4only.demo";

/// One simulated Kubernetes node.
pub struct NodeSpec {
    pub name: &'static str,
    pub v6: Ipv6Addr,
    pub v4: Ipv4Addr,
    pub pod_cidr: &'static str,
}

pub const NODES: [NodeSpec; 2] = [
    NodeSpec {
        name: "node1",
        v6: Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x11),
        v4: Ipv4Addr::new(198, 18, 0, 11),
        pod_cidr: "fd00:10:244:1::/64",
    },
    NodeSpec {
        name: "node2",
        v6: Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x12),
        v4: Ipv4Addr::new(198, 18, 0, 12),
        pod_cidr: "fd00:10:244:2::/64",
    },
];

/// The namespaces and the resolvers running in them (held for their guards: dropping them
/// stops the resolvers and deletes the namespaces).
pub struct Network {
    #[allow(dead_code, reason = "held for its drop guard")]
    pub fabric: NetNs,
    pub nodes: Vec<NetNs>,
    pub outside: NetNs,
    #[allow(dead_code, reason = "held for its drop guard")]
    pub inet: NetNs,
    #[allow(dead_code, reason = "held for its drop guard")]
    pub authority: Unbound,
    #[allow(dead_code, reason = "held for its drop guard")]
    pub dns64: Unbound,
}

fn ns(name: &str) -> anyhow::Result<NetNs> {
    NetNs::named(format!("{}{name}", super::teardown::PREFIX))
        .with_context(|| format!("creating namespace {name}"))
}

/// A veth with end `a` (named `a_name`) in `a_ns` and end `b` in `b_ns`, both up.
fn wire(a_ns: &NetNs, a_name: &str, b_ns: &NetNs, b_name: &str) -> anyhow::Result<()> {
    cmd::ip(&[
        "link",
        "add",
        a_name,
        "netns",
        a_ns.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "netns",
        b_ns.name(),
    ])?;
    a_ns.ip(&["link", "set", a_name, "up"])?;
    b_ns.ip(&["link", "set", b_name, "up"])?;
    Ok(())
}

fn quiet_ipv6(ns: &NetNs) -> anyhow::Result<()> {
    // Addresses are unique by construction: no DAD delay anywhere.
    ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    Ok(())
}

/// Builds the whole network (and starts the internet's web server and both resolvers).
pub fn build(dir: &std::path::Path) -> anyhow::Result<Network> {
    let fabric = ns("fabric")?;
    quiet_ipv6(&fabric)?;
    fabric.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    fabric.sysctl("net.ipv4.ip_forward", "1")?;
    fabric.ip(&["link", "add", "br0", "type", "bridge"])?;
    fabric.ip(&["link", "set", "br0", "up"])?;
    for a in [format!("{FABRIC6}/64"), format!("{DNS64}/64")] {
        fabric.ip(&["addr", "add", &a, "dev", "br0", "nodad"])?;
    }
    fabric.ip(&["addr", "add", &format!("{FABRIC4}/24"), "dev", "br0"])?;

    let mut nodes = Vec::new();
    for spec in &NODES {
        let node = ns(spec.name)?;
        quiet_ipv6(&node)?;
        node.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        wire(&node, "eth0", &fabric, spec.name)?;
        fabric.ip(&["link", "set", spec.name, "master", "br0"])?;
        node.ip(&[
            "addr",
            "add",
            &format!("{}/64", spec.v6),
            "dev",
            "eth0",
            "nodad",
        ])?;
        node.ip(&["addr", "add", &format!("{}/24", spec.v4), "dev", "eth0"])?;
        node.ip(&["-6", "route", "add", "default", "via", &FABRIC6.to_string()])?;
        node.ip(&["-4", "route", "add", "default", "via", &FABRIC4.to_string()])?;
        // The fabric knows where each node's pods are (static routes; BGP in real life).
        fabric.ip(&[
            "-6",
            "route",
            "add",
            spec.pod_cidr,
            "via",
            &spec.v6.to_string(),
        ])?;
        nodes.push(node);
    }

    let outside = ns("outside")?;
    quiet_ipv6(&outside)?;
    wire(&outside, "eth0", &fabric, "outside")?;
    fabric.ip(&["link", "set", "outside", "master", "br0"])?;
    outside.ip(&[
        "addr",
        "add",
        &format!("{OUTSIDE}/64"),
        "dev",
        "eth0",
        "nodad",
    ])?;
    outside.ip(&["-6", "route", "add", "default", "via", &FABRIC6.to_string()])?;

    let inet = ns("inet")?;
    wire(&inet, "eth0", &fabric, "inet")?;
    fabric.ip(&["addr", "add", &format!("{INET_GW}/24"), "dev", "inet"])?;
    for a in [WEB4, AUTH4] {
        inet.ip(&["addr", "add", &format!("{a}/24"), "dev", "eth0"])?;
    }
    inet.ip(&["-4", "route", "add", "default", "via", &INET_GW.to_string()])?;
    // IPv4 only: the internet cannot speak IPv6 at all.
    inet.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;

    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(
        www.join("index.html"),
        format!("Hello from the IPv4-only internet ({WEB4})\n"),
    )?;
    let log = std::fs::File::create(dir.join("inet-httpd.log"))?;
    let web = inet
        .command("busybox")
        .args(["httpd", "-f", "-p", &format!("{WEB4}:80"), "-h"])
        .arg(&www)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the internet's web server")?;
    // Not guarded: it lives in sld-inet and ends with it (teardown kills namespace members).
    drop(web);

    let authority = Unbound::authority(
        &inet,
        IpAddr::V4(AUTH4),
        "demo",
        &[(IPV4_ONLY_NAME, IpAddr::V4(WEB4))],
    )
    .context("starting the internet's DNS server")?;
    let dns64 = Unbound::dns64(
        &fabric,
        IpAddr::V6(DNS64),
        NAT64_PREFIX,
        &[("demo", IpAddr::V4(AUTH4))],
    )
    .context("starting the DNS64 resolver")?;
    Ok(Network {
        fabric,
        nodes,
        outside,
        inet,
        authority,
        dns64,
    })
}
