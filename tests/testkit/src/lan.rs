//! A router's LAN, for BGP tests and benches: the router's namespace, forwarding, with a bridge
//! holding its addresses, and hosts (each its own namespace) on the bridge by veth. Every
//! address is known in advance, the link-local ones too: a BGP router installs a neighbor's
//! link-local address as the next hop, and a test asserts on which host that is.
//!
//! ```text
//!   router: bridge `lan`  <prefix>::1/64, fe80::1
//!   host i (1..=n):       <prefix>::(i+1)/64, fe80::(i+1) on a veth whose peer is in `lan`
//! ```
//!
//! Duplicate address detection is off in every namespace: addresses are usable at once.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::{NetNs, Result, Veth};

/// The router's bridge.
pub const BRIDGE: &str = "lan";

/// A host on the LAN. Field order is drop order: the link, then the namespace.
#[derive(Debug)]
pub struct Host {
    link: Veth,
    ns: NetNs,
    addr: Ipv6Addr,
    link_local: Ipv6Addr,
}

impl Host {
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// Its global address on the LAN.
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    pub fn link_local(&self) -> Ipv6Addr {
        self.link_local
    }

    /// Its interface on the LAN (in its namespace).
    pub fn dev(&self) -> &str {
        &self.link.a.name
    }
}

/// The LAN. Field order is drop order: the hosts, then the router's namespace.
#[derive(Debug)]
pub struct Lan {
    hosts: Vec<Host>,
    router: NetNs,
    prefix: Ipv6Net,
}

/// Address `n` of `prefix`'s network (`n` = 1: `<prefix>::1`).
fn nth(prefix: Ipv6Net, n: u16) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(prefix.network()) + u128::from(n))
}

fn link_local(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n)
}

fn no_dad(ns: &NetNs) -> Result<()> {
    ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0")
}

impl Lan {
    /// The router's namespace with the LAN `prefix` (a /64) on its bridge, and `hosts` hosts.
    pub fn new(prefix: Ipv6Net, hosts: u16) -> Result<Self> {
        let router = NetNs::new()?;
        no_dad(&router)?;
        router.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        router.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        // Its link-local address from the start (a bridge makes one only once it has
        // carrier): a BGP speaker on the LAN needs one to announce with.
        router.ip(&["link", "set", BRIDGE, "addrgenmode", "none"])?;
        router.ip(&["link", "set", BRIDGE, "up"])?;
        for a in [nth(prefix, 1), link_local(1)] {
            router.ip(&["addr", "add", &format!("{a}/64"), "dev", BRIDGE, "nodad"])?;
        }
        let mut lan = Self {
            hosts: Vec::new(),
            router,
            prefix,
        };
        for _ in 0..hosts {
            lan.add_host()?;
        }
        Ok(lan)
    }

    /// One more host; returns its number.
    pub fn add_host(&mut self) -> Result<u16> {
        let i = self.hosts.len() as u16 + 1;
        let ns = NetNs::new()?;
        no_dad(&ns)?;
        let link = Veth::new_down(Some(&ns), Some(&self.router))?;
        link.b.ip(&["link", "set", "{}", "master", BRIDGE])?;
        link.b.ip(&["link", "set", "{}", "up"])?;
        link.a.ip(&["link", "set", "{}", "addrgenmode", "none"])?;
        let (addr, ll) = (nth(self.prefix, i + 1), link_local(i + 1));
        for a in [addr, ll] {
            link.a
                .ip(&["addr", "add", &format!("{a}/64"), "dev", "{}", "nodad"])?;
        }
        link.a.ip(&["link", "set", "{}", "up"])?;
        self.hosts.push(Host {
            link,
            ns,
            addr,
            link_local: ll,
        });
        Ok(i)
    }

    pub fn router(&self) -> &NetNs {
        &self.router
    }

    /// The router's global address on the LAN.
    pub fn router_addr(&self) -> Ipv6Addr {
        nth(self.prefix, 1)
    }

    /// Host `i` (from 1).
    pub fn host(&self, i: u16) -> &Host {
        &self.hosts[usize::from(i - 1)]
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The number of the host whose address, global or link-local, `addr` is.
    pub fn host_of(&self, addr: Ipv6Addr) -> Option<u16> {
        (1..=self.hosts.len() as u16).find(|&i| {
            let h = self.host(i);
            h.addr == addr || h.link_local == addr
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_plan() {
        let p: Ipv6Net = "fd00:f::/64".parse().unwrap();
        assert_eq!(nth(p, 1), "fd00:f::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(nth(p, 3), "fd00:f::3".parse::<Ipv6Addr>().unwrap());
        assert_eq!(link_local(2), "fe80::2".parse::<Ipv6Addr>().unwrap());
    }
}
