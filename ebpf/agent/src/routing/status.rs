//! What the routing subsystem reports: BIRD (process, socket, configuration), each configured
//! peer's session as BIRD sees it, and the prefixes announced and received. `status`, `/status`,
//! the metrics and `sixlane-agent bgp` all show this.

use std::{collections::BTreeMap, net::Ipv6Addr, path::PathBuf};

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::bird::show::Protocol;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BgpStatus {
    pub bird: BirdStatus,
    pub config: ConfigStatus,
    pub peers: Vec<PeerStatus>,
    /// What this node's configuration announces (to every peer that is up).
    pub announced: Vec<Announced>,
}

impl BgpStatus {
    pub fn peers_up(&self) -> usize {
        self.peers.iter().filter(|p| p.up).count()
    }

    /// One line for `status`: sessions, announcements, BIRD.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}/{} peers established, {} prefixes announced, BIRD {}",
            self.peers_up(),
            self.peers.len(),
            self.announced.len(),
            if self.bird.answering {
                "answering"
            } else {
                "NOT answering"
            }
        );
        if let Some(p) = &self.bird.process
            && p.restarts > 0
        {
            s += &format!(" ({} restarts)", p.restarts);
        }
        if let Some(e) = &self.config.error {
            s += &format!("; configuration NOT applied: {e}");
        }
        s + " (sixlane-agent bgp)"
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BirdStatus {
    pub socket: PathBuf,
    pub config: PathBuf,
    /// BIRD answers on its control socket.
    pub answering: bool,
    /// From BIRD's greeting.
    pub version: Option<String>,
    /// Why the socket does not answer.
    pub error: Option<String>,
    /// The process, when the agent supervises it (static mode); in Kubernetes BIRD is the
    /// pod's `bird` container.
    pub process: Option<ProcessState>,
}

/// The supervised BIRD process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProcessState {
    pub pid: Option<u32>,
    /// Found running when the agent started (an earlier agent started it).
    pub adopted: bool,
    pub running: bool,
    /// Times BIRD was started again after it died (this agent's lifetime).
    pub restarts: u64,
    /// Unix seconds the running process was started or adopted.
    pub since: Option<u64>,
    /// How the previous process ended (`signal: 9 (SIGKILL)`).
    pub last_exit: Option<String>,
    /// Why BIRD could not be started (cleared by the next start).
    pub error: Option<String>,
}

/// The configuration BIRD runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConfigStatus {
    /// Unix seconds BIRD last accepted `configure`.
    pub configured_at: Option<u64>,
    /// Checked and in place, but BIRD has not confirmed it yet (BIRD is not answering: it
    /// reads the file when it starts).
    pub pending: bool,
    /// Why the last configuration was not put in place or not taken by BIRD (the previous one
    /// stays).
    pub error: Option<String>,
}

/// A configured peer of this node, as the configuration names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRef {
    /// `bgp.peers[].name`.
    pub name: String,
    /// BIRD's protocol for it.
    pub protocol: String,
    pub address: Ipv6Addr,
    pub asn: u32,
}

/// A prefix the configuration announces, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Announced {
    pub prefix: Ipv6Net,
    /// `podCIDR`, `clusterIPRange`, `clusterIP`, `externalIP`, `loadBalancerIP`.
    pub kind: String,
}

/// One peer's session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PeerStatus {
    pub name: String,
    pub protocol: String,
    pub address: Option<Ipv6Addr>,
    pub asn: u32,
    /// The session is established.
    pub up: bool,
    /// BIRD's BGP state (`Established`, `Active`, `Connect`, `Idle`, ...); `unknown` while BIRD
    /// does not answer, `not configured` while BIRD runs a configuration without this peer.
    pub state: String,
    /// When the state last changed, as BIRD prints it.
    pub since: Option<String>,
    /// The same as Unix seconds, when BIRD prints it that way.
    pub since_unix: Option<u64>,
    /// BIRD's last error for the session (kept after it recovers).
    pub last_error: Option<String>,
    /// Why the session is not established.
    pub down_reason: Option<DownReason>,
    /// The peer is restarting and its routes are kept as stale (graceful restart).
    pub graceful_restart: bool,
    /// Routes BIRD exports to this peer.
    pub exported: u64,
    /// Prefixes accepted from this peer.
    pub received: Vec<Ipv6Net>,
    /// Routes from this peer that the import filter refused (outside `bgp.import`).
    pub filtered: u64,
}

/// Why a session is not established, from BIRD's state and last error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DownReason {
    /// BIRD is not answering (not started, restarting, or dead).
    BirdDown,
    /// BIRD runs a configuration without this peer (not applied yet, or it failed).
    NotConfigured,
    /// No error yet: connecting, or waiting to retry.
    Connecting,
    /// Nothing listens at the peer's address and port (or a firewall rejects).
    Refused,
    /// No route, no neighbor answering, or the connection timed out (also what a TCP MD5
    /// password mismatch looks like: the peer drops the segments).
    Unreachable,
    /// Still connecting after [`NO_ANSWER_AFTER`] without an error: nothing answers at the
    /// address (BIRD reports no error for a neighbor that never answers Neighbor Discovery, nor
    /// for a firewall that drops the SYN).
    NoAnswer,
    /// The peer's ASN is not `bgp.peers[].asn`, or it expects another local ASN.
    PeerAs,
    /// TCP MD5 authentication failed.
    Authentication,
    /// The peer stopped sending keepalives.
    HoldTimerExpired,
    /// The peer closed the session with a notification (administrative shutdown, reset, ...).
    Notification,
    Other,
}

impl DownReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DownReason::BirdDown => "bird_down",
            DownReason::NotConfigured => "not_configured",
            DownReason::Connecting => "connecting",
            DownReason::Refused => "refused",
            DownReason::Unreachable => "unreachable",
            DownReason::NoAnswer => "no_answer",
            DownReason::PeerAs => "peer_as",
            DownReason::Authentication => "authentication",
            DownReason::HoldTimerExpired => "hold_timer_expired",
            DownReason::Notification => "notification",
            DownReason::Other => "other",
        }
    }

    /// Classifies BIRD's last error (`Received: Bad peer AS`, `Socket: Connection refused`).
    pub fn from_last_error(e: Option<&str>) -> Self {
        let Some(e) = e else {
            return DownReason::Connecting;
        };
        let has = |s: &str| e.contains(s);
        if has("Bad peer AS") {
            DownReason::PeerAs
        } else if has("MD5") || has("Authentication") {
            DownReason::Authentication
        } else if has("Hold timer expired") {
            DownReason::HoldTimerExpired
        } else if has("Connection refused") {
            DownReason::Refused
        } else if has("No route to host")
            || has("Network is unreachable")
            || has("Host is unreachable")
            || has("Connection timed out")
        {
            DownReason::Unreachable
        } else if e.starts_with("Received: ") {
            DownReason::Notification
        } else {
            DownReason::Other
        }
    }
}

/// How long a connection attempt may go unanswered before the session counts as
/// [`DownReason::NoAnswer`] (a router answers a SYN in milliseconds).
pub const NO_ANSWER_AFTER: u64 = 10;

/// The configured peers' sessions: from BIRD's protocols (`None`: BIRD is not answering) and
/// the prefixes received per protocol, at Unix time `now`.
pub fn peer_rows(
    peers: &[PeerRef],
    protocols: Option<&[Protocol]>,
    received: &BTreeMap<String, Vec<Ipv6Net>>,
    now: u64,
) -> Vec<PeerStatus> {
    peers
        .iter()
        .map(|r| {
            let mut row = PeerStatus {
                name: r.name.clone(),
                protocol: r.protocol.clone(),
                address: Some(r.address),
                asn: r.asn,
                ..Default::default()
            };
            let Some(protocols) = protocols else {
                row.state = "unknown".into();
                row.down_reason = Some(DownReason::BirdDown);
                return row;
            };
            let Some(p) = protocols.iter().find(|p| p.name == r.protocol) else {
                row.state = "not configured".into();
                row.down_reason = Some(DownReason::NotConfigured);
                return row;
            };
            let bgp = p.bgp.clone().unwrap_or_default();
            row.up = p.state == "up" && bgp.state == "Established";
            row.state = if bgp.state.is_empty() {
                p.state.clone()
            } else {
                bgp.state
            };
            row.since = Some(p.since.clone());
            row.since_unix = p.since_unix();
            row.last_error = bgp.last_error;
            row.down_reason = (!row.up).then(|| down_reason(&row, now));
            row.graceful_restart = bgp.graceful_restart_active;
            row.exported = p.routes().exported;
            row.filtered = p.routes().filtered;
            row.received = received.get(&r.protocol).cloned().unwrap_or_default();
            row
        })
        .collect()
}

/// Why the session in `row` (not up) is down: BIRD's last error, or no answer for a while.
fn down_reason(row: &PeerStatus, now: u64) -> DownReason {
    let reason = DownReason::from_last_error(row.last_error.as_deref());
    let waited = row.since_unix.map(|t| now.saturating_sub(t));
    if reason == DownReason::Connecting
        && matches!(row.state.as_str(), "Connect" | "Active")
        && waited.is_some_and(|w| w >= NO_ANSWER_AFTER)
    {
        DownReason::NoAnswer
    } else {
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::bird::show::{BgpDetails, Channel, RouteCounts};

    /// Protocols' `since` in these tests is 1715000000.
    const NOW: u64 = 1715000005;

    fn peer(name: &str) -> PeerRef {
        PeerRef {
            name: name.into(),
            protocol: format!("peer_{name}"),
            address: "fd00:bb::2".parse().unwrap(),
            asn: 65001,
        }
    }

    fn bgp(name: &str, state: &str, bgp_state: &str, last_error: Option<&str>) -> Protocol {
        Protocol {
            name: format!("peer_{name}"),
            proto: "BGP".into(),
            table: "---".into(),
            state: state.into(),
            since: "1715000000".into(),
            info: String::new(),
            bgp: Some(BgpDetails {
                state: bgp_state.into(),
                last_error: last_error.map(Into::into),
                ..Default::default()
            }),
            channels: vec![Channel {
                name: "ipv6".into(),
                state: "UP".into(),
                routes: RouteCounts {
                    imported: 1,
                    filtered: 2,
                    exported: 3,
                    ..Default::default()
                },
            }],
        }
    }

    #[test]
    fn last_errors_are_classified() {
        for (e, want) in [
            (None, DownReason::Connecting),
            (Some("Received: Bad peer AS"), DownReason::PeerAs),
            (Some("BGP Error: Bad peer AS"), DownReason::PeerAs),
            (Some("Socket: Connection refused"), DownReason::Refused),
            (Some("Socket: No route to host"), DownReason::Unreachable),
            (
                Some("Socket: Connection timed out"),
                DownReason::Unreachable,
            ),
            (
                Some("Error: Hold timer expired"),
                DownReason::HoldTimerExpired,
            ),
            (Some("Kernel MD5 auth failed"), DownReason::Authentication),
            (
                Some("Received: Administrative shutdown"),
                DownReason::Notification,
            ),
            (Some("Error: Neighbor lost"), DownReason::Other),
        ] {
            assert_eq!(DownReason::from_last_error(e), want, "{e:?}");
        }
    }

    #[test]
    fn a_connection_nobody_answers_is_no_answer_after_a_while() {
        let peers = [peer("tor1")];
        let protos = [bgp("tor1", "start", "Connect", None)];
        let at = |now| peer_rows(&peers, Some(&protos), &BTreeMap::new(), now)[0].down_reason;
        assert_eq!(
            at(1715000000 + NO_ANSWER_AFTER - 1),
            Some(DownReason::Connecting)
        );
        assert_eq!(at(1715000000 + NO_ANSWER_AFTER), Some(DownReason::NoAnswer));
        // An error BIRD reported says more than the wait.
        let protos = [bgp(
            "tor1",
            "start",
            "Active",
            Some("Socket: Connection refused"),
        )];
        let rows = peer_rows(&peers, Some(&protos), &BTreeMap::new(), 1715000100);
        assert_eq!(rows[0].down_reason, Some(DownReason::Refused));
    }

    #[test]
    fn rows_for_up_down_missing_and_unknown_peers() {
        let peers = [peer("tor1"), peer("tor2"), peer("tor3")];
        let protos = [
            bgp(
                "tor1",
                "up",
                "Established",
                Some("Socket: Connection closed"),
            ),
            bgp(
                "tor2",
                "start",
                "Active",
                Some("Socket: Connection refused"),
            ),
        ];
        let received = BTreeMap::from([(
            "peer_tor1".to_string(),
            vec!["fd00:10:244:2::/64".parse().unwrap()],
        )]);
        let rows = peer_rows(&peers, Some(&protos), &received, NOW);
        assert!(rows[0].up);
        assert_eq!(rows[0].state, "Established");
        assert_eq!(rows[0].down_reason, None, "an old error of a live session");
        assert_eq!(rows[0].since_unix, Some(1715000000));
        assert_eq!((rows[0].exported, rows[0].received.len()), (3, 1));
        assert_eq!(rows[0].filtered, 2);
        assert!(!rows[1].up);
        assert_eq!(rows[1].state, "Active");
        assert_eq!(rows[1].down_reason, Some(DownReason::Refused));
        assert!(rows[1].received.is_empty());
        assert_eq!(rows[2].state, "not configured");
        assert_eq!(rows[2].down_reason, Some(DownReason::NotConfigured));

        let rows = peer_rows(&peers, None, &BTreeMap::new(), NOW);
        assert!(
            rows.iter().all(|r| !r.up
                && r.state == "unknown"
                && r.down_reason == Some(DownReason::BirdDown))
        );
    }

    #[test]
    fn status_reads_back_from_json() {
        let s = BgpStatus {
            peers: peer_rows(&[peer("tor1")], None, &BTreeMap::new(), NOW),
            announced: vec![Announced {
                prefix: "fd00:10:244:1::/64".parse().unwrap(),
                kind: "podCIDR".into(),
            }],
            ..Default::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"downReason\":\"birdDown\""), "{json}");
        assert_eq!(serde_json::from_str::<BgpStatus>(&json).unwrap(), s);
        // An older or newer agent's file still reads.
        assert_eq!(
            serde_json::from_str::<BgpStatus>("{}").unwrap(),
            BgpStatus::default()
        );
    }
}
