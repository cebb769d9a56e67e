//! The demo's network: a fabric (the data centre's switch and upstream router) joining two
//! IPv6-only Kubernetes nodes, an outside client on a network of its own, and a simulated
//! IPv4-only internet behind it.
//!
//! ```text
//!  sld-outside  fd00:300::99
//!       │  its own link; fd00:300::1 on the fabric's side
//!  sld-fabric: the upstream router (FRR, AS 65000) ── inet ── sld-inet (IPv4 only)
//!       │  br0 fd00:100::1, fe80::1, 198.18.0.1,          198.19.0.80 HTTP, 198.19.0.53 DNS
//!       │  DNS64 fd00:100::53
//!   ┌───┴───────────────────────┐
//!  sld-node1 (eth0, AS 64512)  sld-node2 (eth0, AS 64512)
//!  fd00:100::11, fe80::11      fd00:100::12, fe80::12
//!  198.18.0.11                 198.18.0.12
//!  pods fd00:10:244:1::/64     pods fd00:10:244:2::/64
//! ```
//!
//! Nobody writes a route here for a pod, a Service or another node: the fabric's router learns
//! them over BGP from the nodes, and the nodes learn each other's pod CIDRs from it (see
//! `router.rs`). The nodes and the outside client only have a default route to the fabric,
//! their uplink. IPv4 needs no route either: each node's NAT64 pool is its own IPv4 address on
//! the fabric's 198.18.0.0/24, so replies from the internet reach it on-link (BGP here is IPv6
//! only). The nodes' link-local addresses are fixed so the router's next hops say which node
//! they are.
//!
//! Addresses: ULA for IPv6, the benchmarking range 198.18.0.0/15 for the IPv4 "internet";
//! nothing leaves the machine.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::Context as _;
use sixlane_testkit::{NetNs, cmd, dns64::Unbound};

pub const FABRIC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);
pub const DNS64: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x53);
/// The fabric's link-local address on br0 (a BGP speaker on a link announces with one).
pub const FABRIC_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub const OUTSIDE: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x300, 0, 0, 0, 0, 0, 0x99);
/// The fabric's address on the outside client's network.
pub const OUTSIDE_GW: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x300, 0, 0, 0, 0, 0, 1);
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
    /// Its link-local address on the fabric: the router's next hop towards it.
    pub link_local: Ipv6Addr,
    pub v4: Ipv4Addr,
    pub pod_cidr: &'static str,
}

pub const NODES: [NodeSpec; 2] = [
    NodeSpec {
        name: "node1",
        v6: Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x11),
        link_local: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x11),
        v4: Ipv4Addr::new(198, 18, 0, 11),
        pod_cidr: "fd00:10:244:1::/64",
    },
    NodeSpec {
        name: "node2",
        v6: Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x12),
        link_local: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x12),
        v4: Ipv4Addr::new(198, 18, 0, 12),
        pod_cidr: "fd00:10:244:2::/64",
    },
];

/// The namespaces and the resolvers running in them (held for their guards: dropping them
/// stops the resolvers and deletes the namespaces).
pub struct Network {
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

/// Replaces `dev`'s generated link-local address with `addr`.
fn fixed_link_local(ns: &NetNs, dev: &str, addr: Ipv6Addr) -> anyhow::Result<()> {
    ns.ip(&["link", "set", dev, "addrgenmode", "none"])?;
    ns.ip(&["-6", "addr", "flush", "dev", dev, "scope", "link"])?;
    addr6(ns, dev, addr, 64)
}

/// An address with a prefix length, as `ip addr add` takes it, without duplicate address
/// detection.
fn addr6(ns: &NetNs, dev: &str, addr: Ipv6Addr, len: u8) -> anyhow::Result<()> {
    ns.ip(&["addr", "add", &format!("{addr}/{len}"), "dev", dev, "nodad"])?;
    Ok(())
}

/// The fabric: a forwarding namespace whose bridge br0 is the nodes' segment.
fn fabric() -> anyhow::Result<NetNs> {
    let fabric = ns("fabric")?;
    quiet_ipv6(&fabric)?;
    fabric.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    fabric.sysctl("net.ipv4.ip_forward", "1")?;
    fabric.ip(&["link", "add", "br0", "type", "bridge"])?;
    // Its link-local address from the start (a bridge makes one only once it has carrier):
    // the router announces routes to the nodes with it.
    fabric.ip(&["link", "set", "br0", "addrgenmode", "none"])?;
    fabric.ip(&["link", "set", "br0", "up"])?;
    for a in [FABRIC6, DNS64, FABRIC_LL] {
        addr6(&fabric, "br0", a, 64)?;
    }
    fabric.ip(&["addr", "add", &format!("{FABRIC4}/24"), "dev", "br0"])?;
    Ok(fabric)
}

/// A node on br0, with a default route to the fabric (its uplink) and nothing more specific.
fn node(fabric: &NetNs, spec: &NodeSpec) -> anyhow::Result<NetNs> {
    let node = ns(spec.name)?;
    quiet_ipv6(&node)?;
    node.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    wire(&node, "eth0", fabric, spec.name)?;
    fabric.ip(&["link", "set", spec.name, "master", "br0"])?;
    addr6(&node, "eth0", spec.v6, 64)?;
    fixed_link_local(&node, "eth0", spec.link_local)?;
    node.ip(&["addr", "add", &format!("{}/24", spec.v4), "dev", "eth0"])?;
    node.ip(&["-6", "route", "add", "default", "via", &FABRIC6.to_string()])?;
    node.ip(&["-4", "route", "add", "default", "via", &FABRIC4.to_string()])?;
    Ok(node)
}

/// The outside client, on a link of its own to the fabric: what it reaches, it reaches
/// through the router.
fn outside(fabric: &NetNs) -> anyhow::Result<NetNs> {
    let outside = ns("outside")?;
    quiet_ipv6(&outside)?;
    wire(&outside, "eth0", fabric, "outside")?;
    addr6(fabric, "outside", OUTSIDE_GW, 64)?;
    addr6(&outside, "eth0", OUTSIDE, 64)?;
    let gw = OUTSIDE_GW.to_string();
    outside.ip(&["-6", "route", "add", "default", "via", &gw])?;
    Ok(outside)
}

/// The IPv4-only internet behind the fabric, with its web server.
fn inet(fabric: &NetNs, dir: &Path) -> anyhow::Result<NetNs> {
    let inet = ns("inet")?;
    wire(&inet, "eth0", fabric, "inet")?;
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
    Ok(inet)
}

/// Builds the whole network (and starts the internet's web server and both resolvers).
pub fn build(dir: &Path) -> anyhow::Result<Network> {
    let fabric = fabric()?;
    let nodes = NODES
        .iter()
        .map(|spec| node(&fabric, spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outside = outside(&fabric)?;
    let inet = inet(&fabric, dir)?;
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
