//! One trial's link, rebuilt for every trial (no neighbour entry, proxy entry or pin survives
//! into the next):
//!
//! ```text
//!  netns router                     netns node                         netns pod
//!  rdev fd00:77:1:2::ff/64 <-veth-> up fd00:77:1:2::1/64   pod-side <-veth-> eth POD/128
//!  (only the connected /64:          forwarding on; POD/128 via the       default via fe80::1
//!   reaches POD by ND alone)         pod's veth, fe80::1 on it
//! ```

use std::net::{Ipv6Addr, TcpListener};

use anyhow::Context as _;
use ipnet::Ipv6Net;
use serde_json::Value;
use sixlane_testkit::{NetNs, Veth};

/// The provider's on-link /64, and who is on it.
pub const PREFIX: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0xfd00, 0x77, 1, 2, 0, 0, 0, 0), 64);
pub const NODE_ADDR: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 1, 2, 0, 0, 0, 1);
pub const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 1, 2, 0, 0, 0, 0xff);
/// The pod's address: inside the /64, in the node's pod CIDR.
pub const POD: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 1, 2, 0, 0, 0xa, 1);
pub const POD_CIDR: &str = "fd00:77:1:2:a::/80";
/// The pod's TCP listener (connections complete in its backlog, never accepted).
pub const PORT: u16 = 8080;
/// The node's address on the pod's veth, the pod's gateway.
const POD_GW: &str = "fe80::1";

pub struct Link {
    // Field order is drop order: the listener, links, then namespaces.
    _listener: TcpListener,
    pub uplink: Veth,
    _pod_link: Veth,
    pub router: NetNs,
    pub node: NetNs,
    _pod: NetNs,
    pub node_mac: [u8; 6],
    pub router_mac: [u8; 6],
}

impl Link {
    pub fn new() -> anyhow::Result<Self> {
        let router = NetNs::new()?;
        let node = NetNs::new()?;
        let pod = NetNs::new()?;
        for ns in [&router, &node, &pod] {
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        }
        node.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        let uplink = Veth::new(Some(&node), Some(&router))?;
        let addr = |end: &sixlane_testkit::veth::End, a: String| {
            end.ip(&["addr", "add", &a, "dev", "{}", "nodad"])
        };
        addr(&uplink.a, format!("{NODE_ADDR}/64"))?;
        addr(&uplink.b, format!("{ROUTER}/64"))?;
        let pod_link = Veth::new(Some(&node), Some(&pod))?;
        addr(&pod_link.a, format!("{POD_GW}/64"))?;
        addr(&pod_link.b, format!("{POD}/128"))?;
        node.ip(&[
            "-6",
            "route",
            "add",
            &format!("{POD}/128"),
            "dev",
            &pod_link.a.name,
        ])?;
        pod.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            POD_GW,
            "dev",
            &pod_link.b.name,
        ])?;
        let listener = pod
            .enter(|| TcpListener::bind((POD, PORT)))
            .context("the pod's listener")?;
        let node_mac = mac_of(&node, &uplink.a.name)?;
        let router_mac = mac_of(&router, &uplink.b.name)?;
        Ok(Self {
            _listener: listener,
            uplink,
            _pod_link: pod_link,
            router,
            node,
            _pod: pod,
            node_mac,
            router_mac,
        })
    }

    /// The node's end of the link (the uplink).
    pub fn up(&self) -> &str {
        &self.uplink.a.name
    }

    /// The router's end of the link.
    pub fn rdev(&self) -> &str {
        &self.uplink.b.name
    }

    /// The node's link-local addresses on the uplink.
    pub fn node_link_locals(&self) -> anyhow::Result<Vec<Ipv6Addr>> {
        let out = self.node.ip(&[
            "-j",
            "-6",
            "addr",
            "show",
            "dev",
            self.up(),
            "scope",
            "link",
        ])?;
        let v: Value = serde_json::from_str(&out)?;
        let addrs = v[0]["addr_info"].as_array().cloned().unwrap_or_default();
        Ok(addrs
            .iter()
            .filter_map(|a| a["local"].as_str()?.parse().ok())
            .collect())
    }

    /// Forgets the router's neighbour entry for the pod (absent already is fine).
    pub fn forget_pod(&self) -> anyhow::Result<()> {
        self.router.ip(&[
            "-6",
            "neigh",
            "flush",
            "to",
            &POD.to_string(),
            "dev",
            self.rdev(),
        ])?;
        Ok(())
    }
}

fn mac_of(ns: &NetNs, dev: &str) -> anyhow::Result<[u8; 6]> {
    let v: Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", "dev", dev])?)?;
    let s = v[0]["address"]
        .as_str()
        .with_context(|| format!("no MAC for {dev}: {v}"))?;
    let bytes = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<Vec<u8>, _>>()
        .with_context(|| format!("MAC {s:?}"))?;
    bytes
        .try_into()
        .map_err(|b| anyhow::anyhow!("MAC {b:?} is not 6 bytes"))
}
