//! What Neighbor Discovery reports: in the agent's status (and its status file), for `status`,
//! `sixlane-agent ndp` and the metrics. A leaf module: the status imports it.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NdpStatus {
    /// The uplink answered on (`None` until the agent has attached it).
    pub uplink: Option<String>,
    pub prefixes: Vec<Ipv6Net>,
    pub addresses: Vec<AddressRow>,
    /// Solicited-node multicast groups joined on the uplink.
    pub groups: usize,
    /// Unsolicited advertisements sent since the agent started.
    pub unsolicited_sent: u64,
    /// The last sync's error (the previous table stays in force meanwhile).
    pub error: Option<String>,
    /// Whether the agent has listened to the link long enough to decide LoadBalancer IPs.
    pub settled: bool,
    /// The cluster's L2 LoadBalancer IPs and who answers for each.
    pub load_balancer_ips: Vec<LbRow>,
    /// The other nodes heard on the link.
    pub peers: Vec<PeerRow>,
    /// Why the last heartbeat could not be sent.
    pub heartbeat_error: Option<String>,
}

/// An L2 LoadBalancer IP: its owner and the candidates, best-ranked first (the owner is the
/// first; none when no live node has a ready endpoint for it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbRow {
    pub address: Ipv6Addr,
    pub owner: Option<String>,
    pub candidates: Vec<String>,
}

/// A node heard on the link: its heartbeats' source and how many addresses it claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRow {
    pub node: String,
    pub from: Ipv6Addr,
    pub claims: usize,
}

/// One address answered for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressRow {
    pub address: Ipv6Addr,
    /// `pod` (`lb` for LoadBalancer IPs in L2 mode).
    pub kind: String,
    /// Unix seconds: answered here since (as far as this agent knows: a restarted agent counts
    /// from its start).
    pub since: u64,
    /// Unix seconds of the last unsolicited advertisement for it.
    pub last_unsolicited: Option<u64>,
}

impl NdpStatus {
    /// One line for `status`.
    pub fn summary(&self) -> String {
        let uplink = self.uplink.as_deref().unwrap_or("no uplink yet");
        let mut s = format!(
            "{} address(es) answered on {uplink}, {} solicited-node group(s)",
            self.addresses.len(),
            self.groups
        );
        if !self.load_balancer_ips.is_empty() || !self.peers.is_empty() {
            let mine = self.addresses.iter().filter(|a| a.kind == "lb").count();
            s.push_str(&format!(
                "; {mine} of {} L2 LoadBalancer IP(s) here, {} other node(s) on the link",
                self.load_balancer_ips.len(),
                self.peers.len()
            ));
        }
        if let Some(e) = &self.heartbeat_error {
            s.push_str(&format!("; {e}"));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("; last sync failed: {e}"));
        }
        s
    }
}
