//! Baseline: the cost of being on the path at all. The direct path through a node (the limit),
//! nftables counting the same packets on the same interface (the peer an operator would use for
//! per-direction counters), and sixlane's TCX counter programs.

use std::{net::SocketAddr, process::Command};

use anyhow::bail;
use sixlane_testkit::PinDir;

use super::{
    Ctx, Metric, Mode, Role, Scenario, Values,
    measure::{self, KB_PORT, KbServer},
    topo::{self, Path3},
};
use crate::sh;

pub struct Baseline;

impl Scenario for Baseline {
    fn name(&self) -> &'static str {
        "baseline"
    }

    fn about(&self) -> &'static str {
        "client -> node -> server over veth; per-direction packet counting on the node's client-facing veth"
    }

    fn modes(&self) -> Vec<Mode> {
        vec![
            Mode {
                name: "direct",
                role: Role::Limit,
                about: "kernel forwarding, nothing attached",
            },
            Mode {
                name: "nft-count",
                role: Role::Peer,
                about: "nftables netdev ingress+egress chains with a counter on the veth",
            },
            Mode {
                name: "sixlane",
                role: Role::Ours,
                about: "sixlane's TCX counter programs (ingress+egress) on the veth",
            },
        ]
    }

    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::new("throughput", "Gbit/s", true),
            Metric::new("rr_rate", "req/s", true),
            Metric::new("rr_p50", "us", false),
            Metric::new("crr_rate", "conn/s", true),
        ]
    }

    fn trial(&self, mode: &Mode, ctx: &Ctx) -> anyhow::Result<Values> {
        let t = Path3::new()?;
        let pins = PinDir::new()?;
        match mode.name {
            "direct" => {}
            "nft-count" => nft_counters(&t)?,
            "sixlane" => sixlane_counters(&t, &pins, ctx)?,
            other => bail!("unknown mode {other}"),
        }
        let values = measure(&t, ctx)?;
        match mode.name {
            "sixlane" => {
                let counted = sixlane_packets(&pins, ctx)?;
                if counted == 0 {
                    bail!("sixlane counters saw no packets: the programs were not on the path");
                }
            }
            "nft-count" => {
                let out = t
                    .node
                    .exec("nft", &["list", "table", "netdev", "slbench"])?;
                if !out.contains("packets") || out.contains("packets 0 ") {
                    bail!("nft counters saw no packets: {out}");
                }
            }
            _ => {}
        }
        Ok(values)
    }
}

fn nft_counters(t: &Path3) -> anyhow::Result<()> {
    let dev = t.ncli();
    let rules = format!(
        "table netdev slbench {{\n\
           chain in {{ type filter hook ingress device \"{dev}\" priority 0; counter; }}\n\
           chain out {{ type filter hook egress device \"{dev}\" priority 0; counter; }}\n\
         }}\n"
    );
    super::topo::nft(&t.node, &rules)
}

fn sixlane_counters(t: &Path3, pins: &PinDir, ctx: &Ctx) -> anyhow::Result<()> {
    let root = pins.path().to_string_lossy().into_owned();
    sh::output(Command::new(&ctx.agent).args(["--pin-root", &root, "load"]))?;
    sh::output(t.node.command(&ctx.agent.to_string_lossy()).args([
        "--pin-root",
        &root,
        "attach",
        "--iface",
        t.ncli(),
    ]))?;
    Ok(())
}

fn sixlane_packets(pins: &PinDir, ctx: &Ctx) -> anyhow::Result<u64> {
    let root = pins.path().to_string_lossy().into_owned();
    let out =
        sh::output(Command::new(&ctx.agent).args(["--pin-root", &root, "--json", "metrics"]))?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    Ok(rows.iter().filter_map(|r| r["packets"].as_u64()).sum())
}

/// iperf3 single stream, kbench RR and CRR (see `measure`), client to server.
fn measure(t: &Path3, ctx: &Ctx) -> anyhow::Result<Values> {
    let mut v = Values::new();
    v.insert(
        "throughput",
        measure::iperf3(&t.cli, &t.srv, ctx, &topo::SRV.to_string(), 1)?,
    );
    let to = SocketAddr::from((topo::SRV, KB_PORT));
    let _server = KbServer::start(&t.srv, ctx, to)?;
    let rr = measure::rr(&t.cli, ctx, to)?;
    v.insert("rr_rate", rr.rate);
    v.insert("rr_p50", rr.p50_us);
    let crr = measure::crr(&t.cli, ctx, to)?;
    v.insert("crr_rate", crr.rate);
    Ok(v)
}
