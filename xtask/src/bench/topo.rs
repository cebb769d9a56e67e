//! Benchmark topologies, rebuilt for every trial (stale TIME_WAIT sockets, conntrack entries or
//! netfilter tables from an earlier trial would distort the next one).
//!
//! ```text
//!  netns cli                netns node ("the node")                   netns srv
//!  cli fd00:a::2/64 <-veth-> ncli fd00:a::1/64   nsrv fd00:b::1/64 <-veth-> srv fd00:b::2/64
//!  default via fd00:a::1     forwarding on, no DAD anywhere             default via fd00:b::1
//! ```

use std::{
    net::Ipv6Addr,
    thread,
    time::{Duration, Instant},
};

use anyhow::bail;
use sixlane_testkit::{NetNs, Veth};

pub const CLI: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 2);
pub const NODE_CLI: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 1);
pub const NODE_SRV: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xb, 0, 0, 0, 0, 0, 1);
pub const SRV: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xb, 0, 0, 0, 0, 0, 2);

/// client → node → server over two veth pairs.
pub struct Path3 {
    // Field order is drop order: links first, then namespaces.
    pub to_cli: Veth,
    pub to_srv: Veth,
    pub cli: NetNs,
    pub node: NetNs,
    pub srv: NetNs,
}

impl Path3 {
    pub fn new() -> anyhow::Result<Self> {
        let cli = NetNs::new()?;
        let node = NetNs::new()?;
        let srv = NetNs::new()?;
        let to_cli = Veth::new(Some(&node), Some(&cli))?;
        let to_srv = Veth::new(Some(&node), Some(&srv))?;
        for ns in [&cli, &node, &srv] {
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        }
        node.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        let addr = |end: &sixlane_testkit::veth::End, a: Ipv6Addr| {
            end.ip(&["addr", "add", &format!("{a}/64"), "dev", "{}", "nodad"])
        };
        addr(&to_cli.a, NODE_CLI)?;
        addr(&to_cli.b, CLI)?;
        addr(&to_srv.a, NODE_SRV)?;
        addr(&to_srv.b, SRV)?;
        cli.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &NODE_CLI.to_string(),
        ])?;
        srv.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &NODE_SRV.to_string(),
        ])?;
        let t = Self {
            to_cli,
            to_srv,
            cli,
            node,
            srv,
        };
        // Resolve neighbours now so no trial measures ND. The first echo of a fresh topology
        // can be lost while the path settles: retry until one answers.
        t.cli.exec(
            "ping",
            &["-6", "-c", "1", "-i", "0.2", "-w", "5", &SRV.to_string()],
        )?;
        Ok(t)
    }

    /// The node's interface towards the client.
    pub fn ncli(&self) -> &str {
        &self.to_cli.a.name
    }
}

/// Waits until something listens on TCP `port` in `ns`.
pub fn wait_listen(ns: &NetNs, port: u16) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let out = ns.exec("ss", &["-Hltn", &format!("sport = :{port}")])?;
        if !out.trim().is_empty() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on port {port} in {} after 5 s", ns.name())
}

/// Loads nft `rules` (`nft -f -`) in `ns`; the tables go with the namespace.
pub fn nft(ns: &NetNs, rules: &str) -> anyhow::Result<()> {
    crate::sh::input(ns.command("nft").args(["-f", "-"]), rules)
}
