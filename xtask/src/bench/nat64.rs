//! NAT64: an IPv6-only client reaching an IPv4-only server through a node. The limit is plain IPv4 routing through the same node (the same client, dual-stack
//! only for that); the peer is Tayga (Debian's userspace TUN translator) with nft masquerade for
//! the stateful part (Lencse's "tayga + iptables" setup); ours is sixlane's stateful NAT64 in the
//! node's tc programs. A second reference, `direct6`, is native IPv6 through the same node to
//! the server's IPv6 address (given back for that mode only): what the client's IPv6 stack
//! costs by itself, so the translation's own share of any gap is visible. A third, `nat44`, is
//! the kernel's own stateful NAT in the same family (conntrack + nft masquerade of the client's
//! IPv4 address on the node): what "state + rewrite" costs without a protocol change (NAT64's
//! bar there is to be at least as cheap).
//!
//! ```text
//!  cli ns: c6 fd00:a::2/64 + 198.18.0.2/24 <-veth-> node ns: hc6 fd00:a::1/64 + 198.18.0.1/24
//!  node ns: hs4 198.19.0.1/24 <-veth-> srv ns: s4 198.19.0.2/24 (IPv4 only)
//!  prefix fd00:6464::/96 (network-specific: the Well-Known Prefix must not carry 198.18/15)
//! ```

use std::{net::SocketAddr, process::Command};

use anyhow::{Context as _, bail};
use sixlane_testkit::{ChildGuard, PinDir, names};

use super::{
    Ctx, Metric, Mode, Role, Scenario, Values,
    measure::{self, KB_PORT, KbServer},
    sources,
    topo::{self, Path3},
};
use crate::sh;

pub struct Nat64;

const PREFIX: &str = "fd00:6464::/96";
const SERVER4: &str = "198.19.0.2";
/// `SERVER4` embedded in the prefix.
const SERVER6: &str = "fd00:6464::c613:2";
/// The server's own IPv6 address, given back for the `direct6` mode only.
const SRV6: &str = "fd00:b::2";
/// Connections in flight for `crr8_rate`.
const CRR_CONNS: usize = 8;
/// The client's second addresses, the sources of `crr8_rate`'s connections (see
/// `measure::crr_many`). The IPv6 one is deprecated (preferred lifetime 0), so the kernel never
/// picks it as the source of the other measurements; bound explicitly, it works as any other.
const CLI2_4: &str = "198.18.0.3";
const CLI2_6: &str = "fd00:a::3";

/// [`topo::Path3`] plus IPv4: the client dual-stack (for the direct IPv4 limit), the server
/// IPv4 only (its IPv6 address is removed).
struct Topo(Path3);

impl std::ops::Deref for Topo {
    type Target = Path3;
    fn deref(&self) -> &Path3 {
        &self.0
    }
}

impl Topo {
    fn new() -> anyhow::Result<Self> {
        let t = Path3::new()?;
        t.node.sysctl("net.ipv4.ip_forward", "1")?;
        t.cli.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
        let add4 =
            |end: &sixlane_testkit::veth::End, a: &str| end.ip(&["addr", "add", a, "dev", "{}"]);
        add4(&t.to_cli.a, "198.18.0.1/24")?;
        add4(&t.to_cli.b, "198.18.0.2/24")?;
        add4(&t.to_cli.b, &format!("{CLI2_4}/24"))?;
        t.to_cli.b.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{CLI2_6}/64"),
            "dev",
            "{}",
            "nodad",
            "preferred_lft",
            "0",
        ])?;
        add4(&t.to_srv.a, "198.19.0.1/24")?;
        add4(&t.to_srv.b, &format!("{SERVER4}/24"))?;
        t.srv.ip(&["-6", "route", "del", "default"])?;
        t.to_srv
            .b
            .ip(&["-6", "addr", "flush", "dev", "{}", "scope", "global"])?;
        t.cli
            .ip(&["route", "add", "default", "via", "198.18.0.1"])?;
        t.srv
            .ip(&["route", "add", "default", "via", "198.19.0.1"])?;
        Ok(Self(t))
    }

    /// Gives the server its IPv6 address and route back (`topo::SRV`, via the node), for the
    /// native IPv6 reference.
    fn restore_ipv6(&self) -> anyhow::Result<()> {
        self.to_srv.b.ip(&[
            "addr",
            "add",
            &format!("{}/64", super::topo::SRV),
            "dev",
            "{}",
            "nodad",
        ])?;
        self.srv.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &super::topo::NODE_SRV.to_string(),
        ])?;
        Ok(())
    }

    fn hc6(&self) -> &str {
        self.ncli()
    }

    fn hs4(&self) -> &str {
        &self.to_srv.a.name
    }
}

impl Scenario for Nat64 {
    fn name(&self) -> &'static str {
        "nat64"
    }

    fn about(&self) -> &'static str {
        "IPv6-only client -> node -> IPv4-only server: NAT64 vs plain IPv4 routing"
    }

    fn modes(&self) -> Vec<Mode> {
        vec![
            Mode {
                name: "direct4",
                role: Role::Limit,
                about: "no translation: the client uses IPv4 through the same node",
            },
            Mode {
                name: "direct6",
                role: Role::Peer,
                about: "no translation: native IPv6 to the server's IPv6 address, same node",
            },
            Mode {
                name: "nat44",
                role: Role::Peer,
                about: "no translation: IPv4 through the same node, nft masquerade (conntrack)",
            },
            Mode {
                name: "tayga",
                role: Role::Peer,
                about: "Tayga TUN (stateless NAT64, dynamic pool) + nft masquerade",
            },
            Mode {
                name: "sixlane",
                role: Role::Ours,
                about: "sixlane's stateful NAT64 in the node's tc programs",
            },
        ]
    }

    fn metrics(&self) -> Vec<Metric> {
        let m = Metric::new;
        vec![
            m("throughput_1", "Gbit/s", true),
            m("throughput_4", "Gbit/s", true),
            m("crr_rate", "conn/s", true),
            m("crr_p50", "us", false),
            m("crr8_rate", "conn/s", true),
            m("rr_rate", "req/s", true),
            m("rr_p50", "us", false),
            super::FROM_POD_NS,
        ]
    }

    fn trial(&self, mode: &Mode, ctx: &Ctx) -> anyhow::Result<Values> {
        let t = Topo::new()?;
        let pins = PinDir::new()?;
        let (dst, _tayga) = match mode.name {
            "direct4" => (SERVER4, None),
            "nat44" => {
                topo::nft(&t.node, &masquerade(CLIENT4_NET, t.hs4()))?;
                (SERVER4, None)
            }
            "direct6" => {
                t.restore_ipv6()?;
                (SRV6, None)
            }
            "tayga" => (SERVER6, Some(Tayga::start(&t)?)),
            "sixlane" => {
                sixlane(&t, &pins, ctx)?;
                (SERVER6, None)
            }
            other => bail!("unknown mode {other}"),
        };
        // The path works (and neighbours are resolved) before anything is measured. Tayga can
        // lose the first echo while it starts reading its TUN device: retry until one answers.
        t.cli
            .exec("ping", &["-c", "1", "-i", "0.2", "-w", "10", dst])?;
        let listen = if mode.name == "direct6" {
            SRV6
        } else {
            SERVER4
        };
        let mut values = measure(&t, ctx, dst, listen)?;
        super::from_pod_ns(ctx, pins.path(), &mut values)?;
        if mode.name == "nat44" && masqueraded(&t)? == 0 {
            bail!("nat44 masqueraded nothing: the nft rule was not on the path");
        }
        if mode.name == "sixlane" {
            let out = sixlane_counters(&pins, ctx)?;
            if out == 0 {
                bail!("sixlane translated nothing: the programs were not on the path");
            }
        }
        Ok(values)
    }
}

/// Loads sixlane into the trial's pin directory, programs NAT64 and attaches the programs
/// (pod programs on the client-facing interface, uplink programs on the server side).
fn sixlane(t: &Topo, pins: &PinDir, ctx: &Ctx) -> anyhow::Result<()> {
    let root = pins.path().to_string_lossy().into_owned();
    let agent = ctx.agent.to_string_lossy().into_owned();
    sh::output(Command::new(&agent).args(["--pin-root", &root, "load"]))?;
    let cfg = std::env::temp_dir().join(format!("{}.yaml", names::unique('c')));
    std::fs::write(
        &cfg,
        format!(
            "mode: translate\nprefix: {PREFIX}\npool: [198.19.0.1]\nports: 1024-65535\npodCIDRs: [fd00:a::/64]\n"
        ),
    )?;
    let res = sh::output(Command::new(&agent).args([
        "--pin-root",
        &root,
        "nat64",
        "apply",
        "--config",
        &cfg.to_string_lossy(),
    ]));
    let _ = std::fs::remove_file(&cfg);
    res?;
    let clients = [topo::CLI, CLI2_6.parse()?];
    sources::record(&t.node, pins, t.hc6(), &clients)?;
    sh::output(t.node.command(&agent).args([
        "--pin-root",
        &root,
        "nat64",
        "attach",
        "--pod",
        t.hc6(),
        "--uplink",
        t.hs4(),
    ]))?;
    Ok(())
}

fn sixlane_counters(pins: &PinDir, ctx: &Ctx) -> anyhow::Result<u64> {
    let root = pins.path().to_string_lossy().into_owned();
    let out = sh::output(Command::new(&ctx.agent).args([
        "--pin-root",
        &root,
        "--json",
        "nat64",
        "counters",
    ]))?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    Ok(rows
        .iter()
        .filter(|r| r["reason"] == "nat64_out")
        .filter_map(|r| r["packets"].as_u64())
        .sum())
}

/// Tayga's dynamic pool: the IPv4 sources it gives IPv6 clients, masqueraded on the uplink.
const TAYGA_POOL: &str = "198.18.128.0/17";
/// The client's IPv4 network (`nat44`'s masqueraded sources).
const CLIENT4_NET: &str = "198.18.0.0/24";

/// An nft table (in the node namespace, gone with it) that masquerades `from` leaving `oif`.
fn masquerade(from: &str, oif: &str) -> String {
    format!(
        "table ip slbench64 {{\n chain post {{ type nat hook postrouting priority srcnat;\n  ip saddr {from} oifname \"{oif}\" counter masquerade\n }}\n}}\n"
    )
}

/// Packets the masquerade rule matched (for NAT, the first packet of each connection).
fn masqueraded(t: &Topo) -> anyhow::Result<u64> {
    let out = t
        .node
        .exec("nft", &["-j", "list", "table", "ip", "slbench64"])?;
    masquerade_packets(&out)
}

/// The packet count of the masquerading rule in `nft -j` output: its `counter` expression
/// must exist, the rule must masquerade, and there must be exactly one such rule (a count
/// that could belong to some other rule proves nothing).
fn masquerade_packets(json: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = serde_json::from_str(json).context("nft JSON")?;
    let items = v["nftables"]
        .as_array()
        .context("nft JSON without an nftables array")?;
    let mut found = None;
    for expr in items.iter().filter_map(|i| i["rule"]["expr"].as_array()) {
        if !expr.iter().any(|e| e.get("masquerade").is_some()) {
            continue;
        }
        let packets = expr
            .iter()
            .find_map(|e| e["counter"]["packets"].as_u64())
            .context("masquerade rule without a counter")?;
        if found.replace(packets).is_some() {
            bail!("more than one masquerade rule");
        }
    }
    found.context("no masquerade rule")
}

/// Tayga on a TUN device in the node namespace, plus nft masquerade of its dynamic pool.
struct Tayga {
    _child: ChildGuard,
    dir: std::path::PathBuf,
}

impl Tayga {
    fn start(t: &Topo) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(names::unique('y'));
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("tayga.conf");
        std::fs::write(
            &conf,
            format!(
                "tun-device nat64\nipv4-addr 198.18.255.1\nprefix {PREFIX}\nipv6-addr fd00:64::1\n\
                 dynamic-pool {TAYGA_POOL}\ndata-dir {}\n",
                dir.display()
            ),
        )?;
        let conf_s = conf.to_string_lossy().into_owned();
        t.node.exec("tayga", &["-c", &conf_s, "--mktun"])?;
        t.node.ip(&["link", "set", "nat64", "up"])?;
        t.node.ip(&["route", "add", TAYGA_POOL, "dev", "nat64"])?;
        t.node
            .ip(&["route", "add", "198.18.255.1/32", "dev", "nat64"])?;
        t.node.ip(&["-6", "route", "add", PREFIX, "dev", "nat64"])?;
        t.node
            .ip(&["-6", "route", "add", "fd00:64::1/128", "dev", "nat64"])?;
        topo::nft(&t.node, &masquerade(TAYGA_POOL, t.hs4()))?;
        let child = ChildGuard::spawn(
            t.node
                .command("tayga")
                .args(["-c", &conf_s, "--nodetach"])
                .stdout(std::process::Stdio::null()),
        )?;
        Ok(Self { _child: child, dir })
    }
}

impl Drop for Tayga {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// iperf3 with 1 and 4 streams, kbench CRR and RR (see `measure`), towards `dst`.
fn measure(t: &Topo, ctx: &Ctx, dst: &str, listen: &str) -> anyhow::Result<Values> {
    let mut v = Values::new();
    for (name, streams) in [("throughput_1", 1), ("throughput_4", 4)] {
        v.insert(name, measure::iperf3(&t.cli, &t.srv, ctx, dst, streams)?);
    }
    let ip: std::net::IpAddr = dst.parse().with_context(|| format!("address {dst}"))?;
    let to = SocketAddr::from((ip, KB_PORT));
    let listen: std::net::IpAddr = listen
        .parse()
        .with_context(|| format!("address {listen}"))?;
    let _server = KbServer::start(&t.srv, ctx, SocketAddr::from((listen, KB_PORT)))?;
    let crr = measure::crr(&t.cli, ctx, to)?;
    v.insert("crr_rate", crr.rate);
    v.insert("crr_p50", crr.p50_us);
    // The sustained rate with 8 connections in flight, the shape of published NAT64
    // connect-rate figures (wrk -t1 -c8); from a second client address, so every
    // connection opens a new binding, with the sequential run's still in the pool, as on a
    // busy node.
    let from_s = if ip.is_ipv6() { CLI2_6 } else { CLI2_4 };
    let from: std::net::IpAddr = from_s.parse().context("client address")?;
    // The node resolves the second address on first use; without this, the first connections'
    // SYN-ACKs were lost to it (8 SYN retransmissions and a 1 s stall in native IPv6).
    t.cli.exec(
        "ping",
        &["-c", "1", "-i", "0.2", "-w", "10", "-I", from_s, dst],
    )?;
    let crr8 = measure::crr_many(&t.cli, ctx, to, CRR_CONNS, from)?;
    v.insert("crr8_rate", crr8.rate);
    let rr = measure::rr(&t.cli, ctx, to)?;
    v.insert("rr_rate", rr.rate);
    v.insert("rr_p50", rr.p50_us);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::masquerade_packets;

    /// `nft -j list table ip slbench64` (nft 1.0.6) after `masquerade(CLIENT4_NET, "hs4")`,
    /// with `packets` filled in.
    fn listing(packets: &str) -> String {
        format!(
            r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6", "json_schema_version": 1}}}},
 {{"table": {{"family": "ip", "name": "slbench64", "handle": 1}}}},
 {{"chain": {{"family": "ip", "table": "slbench64", "name": "post", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}}},
 {{"rule": {{"family": "ip", "table": "slbench64", "chain": "post", "handle": 2, "expr": [
   {{"match": {{"op": "==", "left": {{"payload": {{"protocol": "ip", "field": "saddr"}}}}, "right": {{"prefix": {{"addr": "198.18.0.0", "len": 24}}}}}}}},
   {{"match": {{"op": "==", "left": {{"meta": {{"key": "oifname"}}}}, "right": "hs4"}}}},
   {{"counter": {{"packets": {packets}, "bytes": 4242}}}},
   {{"masquerade": null}}]}}}}]}}"#
        )
    }

    #[test]
    fn reads_the_masquerade_rules_packets() {
        assert_eq!(masquerade_packets(&listing("17")).unwrap(), 17);
        assert_eq!(masquerade_packets(&listing("0")).unwrap(), 0);
    }

    /// The error `masquerade_packets` gives for `json`.
    fn refusal(json: &str) -> String {
        format!("{:#}", masquerade_packets(json).unwrap_err())
    }

    #[test]
    fn refuses_listings_that_prove_nothing() {
        let no_counter = listing("1").replace(r#"{"counter": {"packets": 1, "bytes": 4242}},"#, "");
        assert!(refusal(&no_counter).contains("without a counter"));
        let no_masq = listing("1").replace(r#"{"masquerade": null}"#, r#"{"accept": null}"#);
        assert!(refusal(&no_masq).contains("no masquerade rule"));
        let mut two: serde_json::Value = serde_json::from_str(&listing("1")).unwrap();
        let items = two["nftables"].as_array_mut().unwrap();
        items.push(items.last().unwrap().clone());
        assert!(refusal(&two.to_string()).contains("more than one"));
        assert!(refusal("table ip slbench64 { }").contains("nft JSON"));
    }
}
