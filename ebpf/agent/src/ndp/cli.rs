//! `sixlane-agent ndp`: the addresses the datapath answers Neighbor Discovery for (the pinned
//! table itself, so it is the truth also while the agent is down), each with its kind, uplink,
//! since when and the last unsolicited advertisement (from the agent's last status); then the
//! cluster's L2 LoadBalancer IPs with their owner and candidates, and the nodes heard on the
//! link.

use std::{collections::BTreeMap, net::Ipv6Addr, path::PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use sixlane_common::ndp::kind;

use super::{status::NdpStatus, table::Table};
use crate::{
    PinLayout,
    ops::status::{self, ago},
};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The agent's state directory (holds status.json).
    #[arg(long, default_value = "/var/lib/sixlane")]
    pub state_dir: PathBuf,
}

/// One row of `ndp`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub address: Ipv6Addr,
    pub kind: &'static str,
    pub ifindex: u32,
    pub mac: String,
    /// Unix seconds (from the agent's status; `None` when it does not list the address).
    pub since: Option<u64>,
    pub last_unsolicited: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    /// The agent's last Neighbor Discovery status (`None`: off, or no status file).
    pub agent: Option<NdpStatus>,
    pub answered: Vec<Row>,
}

pub fn view(pins: &PinLayout, args: &Args) -> anyhow::Result<View> {
    let table = Table::open(pins)
        .and_then(|t| t.entries())
        .context("reading the owned-address table (is the datapath loaded?)")?;
    let agent = status::read_file(&args.state_dir).ok().and_then(|s| s.ndp);
    let known: BTreeMap<Ipv6Addr, (u64, Option<u64>)> = agent
        .iter()
        .flat_map(|s| &s.addresses)
        .map(|r| (r.address, (r.since, r.last_unsolicited)))
        .collect();
    let answered = table
        .into_iter()
        .map(|(address, o)| Row {
            address,
            kind: match o.kind {
                kind::POD => "pod",
                kind::LB => "lb",
                _ => "?",
            },
            ifindex: o.ifindex,
            mac: o.mac.map(|b| format!("{b:02x}")).join(":"),
            since: known.get(&address).map(|k| k.0),
            last_unsolicited: known.get(&address).and_then(|k| k.1),
        })
        .collect();
    Ok(View { agent, answered })
}

pub fn run(pins: &PinLayout, args: &Args, json: bool) -> anyhow::Result<()> {
    let v = view(pins, args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    match &v.agent {
        Some(s) => println!("{}", s.summary()),
        None => println!("no Neighbor Discovery status from the agent (off, or not running here)"),
    }
    println!(
        "{:<40} {:<4} {:<8} {:<17} {:<10} LAST UNSOLICITED NA",
        "ADDRESS", "KIND", "IFINDEX", "MAC", "SINCE"
    );
    for r in v.answered {
        println!(
            "{:<40} {:<4} {:<8} {:<17} {:<10} {}",
            r.address,
            r.kind,
            r.ifindex,
            r.mac,
            r.since.map_or("-".into(), ago),
            r.last_unsolicited.map_or("-".into(), ago)
        );
    }
    let Some(s) = v.agent.as_ref().filter(|s| !s.load_balancer_ips.is_empty()) else {
        return Ok(());
    };
    println!();
    println!("{:<40} {:<24} CANDIDATES", "L2 LOADBALANCER IP", "OWNER");
    for r in &s.load_balancer_ips {
        let owner = r
            .owner
            .as_deref()
            .unwrap_or("none (no ready endpoint on a live node)");
        println!("{:<40} {:<24} {}", r.address, owner, r.candidates.join(","));
    }
    println!();
    println!("{:<24} {:<40} CLAIMS", "NODE ON THE LINK", "FROM");
    for p in &s.peers {
        println!("{:<24} {:<40} {}", p.node, p.from, p.claims);
    }
    Ok(())
}
