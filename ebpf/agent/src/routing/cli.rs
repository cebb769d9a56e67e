//! `sixlane-agent bgp`: BIRD (process, socket, configuration), each peer's session (address,
//! ASN, state, since, last error and why it is down), the prefixes announced (with their kind)
//! and received, and what the import filter refused.
//!
//! The peers and what was received are asked from BIRD's control socket right away when it
//! answers (the agent's container has the socket); otherwise they are the agent's last status
//! (`<stateDir>/status.json`), which is also where the announced prefixes, the peers'
//! configured names and the supervised process come from.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use ipnet::Ipv6Net;
use serde::Serialize;
use sixlane_attach::chain;

use super::{
    bird::{
        Paths,
        control::{Control, Routes},
        paths::DEFAULT_DIR,
        show::Protocol,
    },
    status::{BgpStatus, PeerRef, PeerStatus, peer_rows},
};
use crate::ops::status::{self, ago, unix_now};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The agent's state directory (holds status.json).
    #[arg(long, default_value = "/var/lib/sixlane")]
    pub state_dir: PathBuf,
    /// BIRD's control socket. Default: the one in the agent's status, else
    /// /run/sixlane/bird/bird.ctl.
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

/// What `bgp` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    /// `bird` when the peers were just asked from BIRD, `agent` when they are the agent's last
    /// status.
    pub peers_from: &'static str,
    /// The agent's status file had a BGP section (else the process and configuration are
    /// unknown here).
    pub from_agent: bool,
    #[serde(flatten)]
    pub status: BgpStatus,
    /// Per peer: the prefixes it sent that `bgp.import` refused (asked from BIRD; empty when it
    /// does not answer).
    pub filtered_prefixes: BTreeMap<String, Vec<Ipv6Net>>,
}

pub fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    let view = view(args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print(&view);
    }
    Ok(())
}

/// The agent's last BGP status, refreshed from BIRD when it answers.
pub fn view(args: &Args) -> anyhow::Result<View> {
    let agent = status::read_file(&args.state_dir).ok().and_then(|s| s.bgp);
    let from_agent = agent.is_some();
    let mut status = agent.unwrap_or_default();
    let socket = args.socket.clone().unwrap_or_else(|| {
        if status.bird.socket.as_os_str().is_empty() {
            Paths::new(Path::new(DEFAULT_DIR)).socket
        } else {
            status.bird.socket.clone()
        }
    });
    status.bird.socket = socket.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let control = Control::new(&socket);
    let live = rt.block_on(control.snapshot(|p| p.bgp.is_some()));
    let mut filtered_prefixes = BTreeMap::new();
    let peers_from = match live {
        Ok(s) => {
            status.bird.answering = true;
            status.bird.version = Some(s.version);
            status.bird.error = None;
            let refs = peer_refs(&status.peers, &s.protocols);
            status.peers = peer_rows(&refs, Some(&s.protocols), &s.received, unix_now());
            for p in status.peers.iter().filter(|p| p.filtered > 0) {
                let which = Routes::FilteredFrom(p.protocol.clone());
                let routes = rt.block_on(control.routes(&which)).with_context(|| {
                    format!("asking BIRD what the import filter refused from {}", p.name)
                })?;
                filtered_prefixes.insert(p.name.clone(), routes);
            }
            "bird"
        }
        Err(e) => {
            status.bird.answering = false;
            status.bird.error = Some(chain(&e).to_string());
            "agent"
        }
    };
    Ok(View {
        peers_from,
        from_agent,
        status,
        filtered_prefixes,
    })
}

/// The agent's configured peers, or, without an agent status, every BGP protocol BIRD has.
fn peer_refs(known: &[PeerStatus], protocols: &[Protocol]) -> Vec<PeerRef> {
    if !known.is_empty() {
        return known
            .iter()
            .map(|p| PeerRef {
                name: p.name.clone(),
                protocol: p.protocol.clone(),
                address: p.address.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED),
                asn: p.asn,
            })
            .collect();
    }
    protocols
        .iter()
        .filter_map(|p| {
            let b = p.bgp.as_ref()?;
            Some(PeerRef {
                name: p.name.clone(),
                protocol: p.name.clone(),
                address: b
                    .neighbor_address
                    .as_deref()
                    .and_then(|a| a.split('%').next()?.parse().ok())
                    .unwrap_or(std::net::Ipv6Addr::UNSPECIFIED),
                asn: b.neighbor_as.unwrap_or_default(),
            })
        })
        .collect()
}

fn row(k: &str, v: impl std::fmt::Display) {
    println!("{k:<10} {v}");
}

fn print(v: &View) {
    let s = &v.status;
    let b = &s.bird;
    row(
        "BIRD",
        match (&b.version, &b.error) {
            (Some(ver), _) if b.answering => {
                format!("answering (BIRD {ver}, {})", b.socket.display())
            }
            (_, Some(e)) => format!("NOT answering: {e}"),
            _ => format!("NOT answering ({})", b.socket.display()),
        },
    );
    if v.from_agent {
        match &b.process {
            Some(p) => row("process", process_line(p)),
            None => row("process", "not run by the agent (the pod's bird container)"),
        }
        row("config", config_line(s));
    } else {
        row(
            "agent",
            "no BGP status from the agent (--state-dir): BIRD's process and configuration unknown",
        );
    }
    row(
        "peers",
        format!(
            "{}/{} established (from {})",
            s.peers_up(),
            s.peers.len(),
            if v.peers_from == "bird" {
                "BIRD just now"
            } else {
                "the agent's last status"
            }
        ),
    );
    print_peers(&s.peers);
    print_prefixes(s);
    print_filtered(&v.filtered_prefixes);
}

fn process_line(p: &super::status::ProcessState) -> String {
    let mut line = match (p.running, p.pid) {
        (true, Some(pid)) => format!("pid {pid}"),
        (true, None) => "running (pid unknown)".into(),
        (false, _) => "NOT running".into(),
    };
    if let Some(t) = p.since {
        line += &format!(", since {}", ago(t));
    }
    if p.adopted {
        line += ", adopted from an earlier agent";
    }
    line += &format!(", {} restart(s)", p.restarts);
    if let Some(e) = &p.last_exit {
        line += &format!(", last exit: {e}");
    }
    if let Some(e) = &p.error {
        line += &format!(", cannot start: {e}");
    }
    line
}

fn config_line(s: &BgpStatus) -> String {
    let c = &s.config;
    let mut line = s.bird.config.display().to_string();
    match c.configured_at {
        Some(t) => line += &format!(", configured {}", ago(t)),
        None => line += ", never configured by this agent",
    }
    if c.pending {
        line += ", waiting for BIRD to take it";
    }
    if let Some(e) = &c.error {
        line += &format!(", LAST CHANGE FAILED: {e}");
    }
    line
}

fn print_peers(peers: &[PeerStatus]) {
    if peers.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<12} {:<28} {:<10} {:<12} {:<10} {:>8} {:>8} {:>8}  LAST ERROR",
        "PEER", "ADDRESS", "ASN", "STATE", "SINCE", "EXPORTED", "RECEIVED", "FILTERED"
    );
    for p in peers {
        let since = match (p.since_unix, &p.since) {
            (Some(t), _) => ago(t),
            (None, Some(s)) => s.clone(),
            (None, None) => "-".into(),
        };
        let error = match (&p.last_error, p.down_reason) {
            (Some(e), Some(r)) => format!("{e} ({})", r.as_str()),
            (Some(e), None) => e.clone(),
            (None, Some(r)) => format!("({})", r.as_str()),
            (None, None) => "-".into(),
        };
        println!(
            "{:<12} {:<28} {:<10} {:<12} {:<10} {:>8} {:>8} {:>8}  {}",
            p.name,
            p.address.map_or("-".into(), |a| a.to_string()),
            p.asn,
            p.state,
            since,
            p.exported,
            p.received.len(),
            p.filtered,
            error
        );
    }
}

fn print_prefixes(s: &BgpStatus) {
    if !s.announced.is_empty() {
        println!();
        println!("{:<44} KIND", "ANNOUNCED");
        for a in &s.announced {
            println!("{:<44} {}", a.prefix.to_string(), a.kind);
        }
    }
    let received: Vec<(String, &str)> = s
        .peers
        .iter()
        .flat_map(|p| p.received.iter().map(|r| (r.to_string(), p.name.as_str())))
        .collect();
    if !received.is_empty() {
        println!();
        println!("{:<44} FROM", "RECEIVED");
        for (prefix, peer) in received {
            println!("{prefix:<44} {peer}");
        }
    }
}

/// At most this many refused prefixes per peer are printed (`--json` has them all).
const FILTERED_SHOWN: usize = 20;

fn print_filtered(filtered: &BTreeMap<String, Vec<Ipv6Net>>) {
    if filtered.is_empty() {
        return;
    }
    println!();
    println!("{:<44} FROM (refused: outside bgp.import)", "FILTERED");
    for (peer, prefixes) in filtered {
        for p in prefixes.iter().take(FILTERED_SHOWN) {
            println!("{:<44} {peer}", p.to_string());
        }
        if prefixes.len() > FILTERED_SHOWN {
            println!(
                "... and {} more from {peer}",
                prefixes.len() - FILTERED_SHOWN
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::bird::show::BgpDetails;

    #[test]
    fn without_an_agent_every_bgp_protocol_is_a_peer() {
        let protocols = [
            Protocol {
                name: "device1".into(),
                proto: "Device".into(),
                ..Default::default()
            },
            Protocol {
                name: "peer_tor1".into(),
                proto: "BGP".into(),
                bgp: Some(BgpDetails {
                    neighbor_address: Some("fe80::1%eth0".into()),
                    neighbor_as: Some(65000),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        let refs = peer_refs(&[], &protocols);
        assert_eq!(
            refs,
            [PeerRef {
                name: "peer_tor1".into(),
                protocol: "peer_tor1".into(),
                address: "fe80::1".parse().unwrap(),
                asn: 65000
            }]
        );
        // The agent's peers keep their configured names.
        let known = [PeerStatus {
            name: "tor1".into(),
            protocol: "peer_tor1".into(),
            asn: 65000,
            ..Default::default()
        }];
        assert_eq!(peer_refs(&known, &protocols)[0].name, "tor1");
    }
}
