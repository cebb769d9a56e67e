//! The fabric's upstream router: FRR (zebra and bgpd, through testkit's harness) in
//! `sld-fabric`, AS 65000, peering over BGP with the BIRD each node's agent runs beside itself.
//!
//! It is configured as an operator configures a router in front of a cluster (eBGP with each
//! node, IPv6 unicast, ECMP across nodes) and never told where a pod or a Service is: it learns
//! the pod CIDRs, the Service ClusterIP range (from both nodes: ECMP) and the LoadBalancer
//! addresses over BGP, and passes each node's pod CIDR on to the other (`routing.mode: bgp`).
//!
//! Its files (configuration, vty sockets, pid files, logs) are in the demo's directory; its
//! daemons end by PID when [`Router`] drops. After Ctrl-C or `--keep`, `teardown` ends them by
//! PID like every other process in the demo's namespaces and removes the directory.

use std::{
    fmt::Write as _,
    net::Ipv6Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ipnet::Ipv6Net;
use sixlane_testkit::{
    NetNs, TempDir, fib,
    frr::{Frr, FrrConfig, Neighbor, RemoteAs},
};

use super::net::{self, NODES, NodeSpec};

/// The router's AS.
pub const ASN: u32 = 65000;
/// Every node's AS: one for the whole cluster, as operators usually have it.
pub const NODE_ASN: u32 = 64512;
/// How long BGP may take to bring a route to the router's FIB: sessions start within a
/// second of BIRD, and FRR batches updates for well under one.
const CONVERGE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The running router.
pub struct Router {
    frr: Frr,
}

/// Where the router keeps its files (vtysh's `--vty_socket`).
pub fn dir(demo_dir: &Path) -> PathBuf {
    demo_dir.join("router")
}

impl Router {
    /// Starts FRR in the fabric with both nodes as neighbors (their sessions come up once the
    /// nodes' BIRD runs).
    pub fn start(fabric: &NetNs, demo_dir: &Path) -> anyhow::Result<Self> {
        let config = NODES
            .iter()
            .fold(FrrConfig::new(ASN, net::FABRIC4), |c, n| {
                c.neighbor(Neighbor::new(n.v6, RemoteAs::Asn(NODE_ASN)))
            });
        let dir = TempDir::at(dir(demo_dir))?;
        let frr = Frr::start_in(fabric, config, dir).context("starting FRR")?;
        Ok(Self { frr })
    }

    /// `vtysh -c <command>` against this router.
    pub fn vtysh(&self, command: &str) -> anyhow::Result<String> {
        Ok(self.frr.vtysh(&[command])?)
    }

    /// The nodes whose paths to `prefix` the router uses (best or ECMP), per bgpd.
    fn bgp_nodes(&self, prefix: Ipv6Net) -> anyhow::Result<Vec<&'static str>> {
        let table = self.frr.bgp_ipv6()?;
        let peers = table.used_peers(&prefix.to_string());
        Ok(node_names(peers.iter().filter_map(|p| p.parse().ok())))
    }

    /// Each session's state, for a message saying why routes are missing.
    fn sessions(&self) -> String {
        let Ok(all) = self.frr.neighbors() else {
            return "bgpd does not answer".into();
        };
        let states: Vec<String> = all
            .iter()
            .map(|(addr, s)| format!("{addr} {}", s.bgp_state))
            .collect();
        states.join(", ")
    }

    /// Waits until the router routes every `(prefix, nodes)` of `want` to exactly those nodes,
    /// both in bgpd's table and in its kernel FIB; fails naming what is still missing.
    pub fn wait_routes(&mut self, fabric: &NetNs, want: &[Want]) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            self.frr.check_alive()?;
            let mut missing = String::new();
            for w in want {
                let (bgp, fib) = (self.bgp_nodes(w.prefix)?, fib_nodes(fabric, w.prefix)?);
                if bgp != w.nodes || fib != w.nodes {
                    let _ = write!(
                        missing,
                        "\n  {} should go to {} (bgpd: to {}; the kernel FIB: to {})",
                        w.prefix,
                        list(&w.nodes),
                        list(&bgp),
                        list(&fib)
                    );
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if start.elapsed() > CONVERGE {
                bail!(
                    "after {} s the router's routes from BGP are still not what the nodes announce:{missing}\n  \
                     sessions: {}; its logs are in {}",
                    CONVERGE.as_secs(),
                    self.sessions(),
                    self.frr.dir().display()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A route the router must have: `prefix` via exactly `nodes` (sorted names).
pub struct Want {
    pub prefix: Ipv6Net,
    pub nodes: Vec<&'static str>,
}

impl Want {
    pub fn new(prefix: &str, nodes: &[&'static NodeSpec]) -> anyhow::Result<Self> {
        let prefix = prefix.parse().with_context(|| format!("prefix {prefix}"))?;
        let mut nodes: Vec<&'static str> = nodes.iter().map(|n| n.name).collect();
        nodes.sort();
        Ok(Self { prefix, nodes })
    }
}

/// `node1 and node2`, or `no node`.
fn list(nodes: &[&str]) -> String {
    if nodes.is_empty() {
        "no node".into()
    } else {
        nodes.join(" and ")
    }
}

/// The names of the nodes `addrs` belong to (global or link-local), sorted.
fn node_names(addrs: impl Iterator<Item = Ipv6Addr>) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = addrs
        .filter_map(|a| NODES.iter().find(|n| n.v6 == a || n.link_local == a))
        .map(|n| n.name)
        .collect();
    v.sort();
    v
}

/// The nodes the fabric's kernel FIB forwards `prefix` to, by a route BGP installed.
fn fib_nodes(fabric: &NetNs, prefix: Ipv6Net) -> anyhow::Result<Vec<&'static str>> {
    Ok(match fib::route(fabric, prefix)? {
        Some(r) if r.protocol == "bgp" => node_names(r.gateways().into_iter()),
        _ => Vec::new(),
    })
}

/// Fails unless every IPv6 route in the fabric's main table is connected (`kernel`) or
/// learned over BGP: nobody wrote one by hand.
pub fn check_no_static_routes(fabric: &NetNs) -> anyhow::Result<()> {
    let written: Vec<String> = fib::routes(fabric)?
        .into_iter()
        .filter(|r| r.protocol != "kernel" && r.protocol != "bgp")
        .map(|r| format!("{} (proto {})", r.dst, r.protocol))
        .collect();
    if !written.is_empty() {
        bail!(
            "the fabric has routes neither connected nor learned over BGP: {}",
            written.join(", ")
        );
    }
    Ok(())
}

/// Waits until each node has a route to every other node's pod CIDR that BIRD installed from
/// what it learned over BGP.
pub fn wait_nodes_learn(nodes: &[NetNs]) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let mut missing = Vec::new();
        for (spec, ns) in NODES.iter().zip(nodes) {
            let learned = ns.ip(&["-6", "route", "show", "proto", "bird"])?;
            for other in NODES.iter().filter(|o| o.name != spec.name) {
                if !learned.contains(other.pod_cidr) {
                    missing.push(format!("{} lacks {}", spec.name, other.pod_cidr));
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > CONVERGE {
            bail!(
                "after {} s the nodes still have not learned each other's pods over BGP: {}",
                CONVERGE.as_secs(),
                missing.join(", ")
            );
        }
        std::thread::sleep(POLL);
    }
}
