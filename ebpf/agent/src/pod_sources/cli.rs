//! `sixlane-agent sources`: what source validation does for each pod veth of this node — from
//! the pinned table (the truth, also while the agent is down) and the IPAM store, so a veth the
//! table does not know (attached before source validation, not yet recorded) shows too. Run in
//! the node's network namespace (veth names are looked up there).

use std::{collections::BTreeMap, net::Ipv6Addr, path::PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use sixlane_attach::{iface, sources::Sources};

use super::unrecorded;
use crate::{PinLayout, ipam, node::cni::NETWORK};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The host-local-format IPAM store (the conflist's `dataDir`).
    #[arg(long, default_value = "/var/lib/cni/networks")]
    pub data_dir: PathBuf,
}

/// One pod veth.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub ifindex: u32,
    /// `None`: no interface has the index any more (an entry the next ADD or GC prunes).
    pub veth: Option<String>,
    /// `validated`, `opted out`, or `not validated` (no marker).
    pub mode: &'static str,
    /// Recorded, or (not validated) reserved in the IPAM store.
    pub addresses: Vec<Ipv6Addr>,
    /// From the IPAM store, when a reservation names this veth.
    pub container_id: Option<String>,
}

pub fn rows(pins: &PinLayout, args: &Args) -> anyhow::Result<Vec<Row>> {
    let table = Sources::open(pins)?
        .context("no pod source table is pinned (is the datapath loaded?)")?
        .entries()?;
    let reservations = ipam::network_reservations(&args.data_dir.join(NETWORK), NETWORK)?;
    let containers: BTreeMap<String, String> = reservations
        .iter()
        .map(|r| {
            (
                iface::host_ifname(&r.container_id, &r.ifname),
                r.container_id.clone(),
            )
        })
        .collect();
    let veth = |i: u32| iface::name(i);
    let container = |v: &Option<String>| v.as_ref().and_then(|v| containers.get(v).cloned());
    let mut out: Vec<Row> = table
        .iter()
        .map(|(&ifindex, r)| {
            let veth = veth(ifindex);
            Row {
                ifindex,
                container_id: container(&veth),
                veth,
                mode: match r.enforce {
                    Some(true) => "validated",
                    Some(false) => "opted out",
                    None => "not validated",
                },
                addresses: r.addrs.iter().copied().collect(),
            }
        })
        .collect();
    for u in unrecorded(&reservations, &table, iface::index) {
        if table.contains_key(&u.ifindex) {
            continue; // addresses without a marker: listed above
        }
        out.push(Row {
            ifindex: u.ifindex,
            veth: Some(u.host_if),
            mode: "not validated",
            addresses: u.addrs,
            container_id: Some(u.container_id),
        });
    }
    out.sort_by_key(|r| r.ifindex);
    Ok(out)
}

pub fn run(pins: &PinLayout, args: &Args, json: bool) -> anyhow::Result<()> {
    let rows = rows(pins, args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<8} {:<16} {:<14} {:<14} ADDRESSES",
        "IFINDEX", "VETH", "MODE", "CONTAINER"
    );
    for r in rows {
        let addrs: Vec<String> = r.addresses.iter().map(ToString::to_string).collect();
        let id = r.container_id.unwrap_or_else(|| "-".into());
        println!(
            "{:<8} {:<16} {:<14} {:<14} {}",
            r.ifindex,
            r.veth.unwrap_or_else(|| "(gone)".into()),
            r.mode,
            id.get(..12).unwrap_or(&id),
            addrs.join(",")
        );
    }
    Ok(())
}
