//! The agent's live status: what `/status`, `/readyz`, the healthz endpoints and
//! `sixlane-agent status` report. The daemon updates it; a copy is written to
//! `<stateDir>/status.json` so the CLI works without the HTTP endpoint.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{node::address::Choice, routing::status::BgpStatus};

pub const STATUS_FILE: &str = "status.json";

/// One pinned TCX link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRow {
    pub interface: String,
    pub program: String,
}

/// One route the agent installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRow {
    pub node: String,
    pub dst: String,
    pub via: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileStatus {
    /// Unix seconds.
    pub at: u64,
    pub duration_us: u64,
    pub services: usize,
    pub backends: usize,
    pub held: usize,
    pub error: Option<String>,
}

/// Everything `status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub version: String,
    pub pid: u32,
    /// Unix seconds.
    pub started_at: u64,
    pub node: String,
    pub source: String,
    pub pod_cidr: Option<String>,
    /// Where the pod CIDR came from (`config node.podCIDR`, `Node spec.podCIDRs`).
    pub pod_cidr_source: Option<String>,
    pub node_address: Option<Choice>,
    pub uplink: Option<String>,
    pub pin_root: PathBuf,
    pub datapath_loaded: bool,
    pub links: Vec<LinkRow>,
    pub conflist: Option<PathBuf>,
    /// Sysctls the agent needs but could not apply, each with its fix (`node::sysctl`).
    /// Defaulted: a status file from an agent without it still reads.
    #[serde(default)]
    pub sysctls: Vec<String>,
    pub routing: String,
    pub routes: Vec<RouteRow>,
    /// BGP (`bgp.enabled`): BIRD, the sessions, what is announced and received. Defaulted: a
    /// status file from an agent without it still reads.
    #[serde(default)]
    pub bgp: Option<BgpStatus>,
    /// Per kind: listed completely at least once.
    pub synced: BTreeMap<String, bool>,
    pub sink: String,
    pub last_reconcile: Option<ReconcileStatus>,
    pub ready: bool,
    /// Why not ready (empty when ready).
    pub not_ready: Vec<String>,
    pub node_eligible: bool,
    /// LoadBalancer IP assignment (`None`: off). Defaulted: an older status file still reads.
    #[serde(default)]
    pub load_balancer: Option<crate::lb::Report>,
    /// Neighbor Discovery (`None`: off). Defaulted: an older status file still reads.
    #[serde(default)]
    pub ndp: Option<crate::ndp::status::NdpStatus>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long ago Unix time `unix` was, for the CLIs (`42s ago`, `5m ago`, `3h ago`).
pub fn ago(unix: u64) -> String {
    let d = unix_now().saturating_sub(unix);
    match d {
        0..120 => format!("{d}s ago"),
        120..7200 => format!("{}m ago", d / 60),
        _ => format!("{}h ago", d / 3600),
    }
}

/// Status plus the health bookkeeping behind the healthz endpoints.
#[derive(Debug)]
pub struct Shared {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    status: Status,
    /// A change is waiting to be applied since then (kube-proxy's "queued update").
    pending_since: Option<Instant>,
    /// Last successful apply (kube-proxy's `lastUpdated`).
    last_updated: Option<SystemTime>,
    /// healthCheckNodePort -> local ready endpoints.
    local_endpoints: BTreeMap<u16, (String, String, usize)>,
}

impl Shared {
    pub fn new(status: Status) -> Self {
        Self {
            inner: Mutex::new(Inner {
                status,
                pending_since: None,
                last_updated: None,
                local_endpoints: BTreeMap::new(),
            }),
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        let mut g = self.inner.lock().expect("poisoned");
        f(&mut g.status);
        let s = &mut g.status;
        s.ready = s.not_ready.is_empty();
    }

    pub fn status(&self) -> Status {
        self.inner.lock().expect("poisoned").status.clone()
    }

    /// A source change arrived (kept at the oldest one until it is applied).
    pub fn mark_pending(&self, now: Instant) {
        let mut g = self.inner.lock().expect("poisoned");
        g.pending_since.get_or_insert(now);
    }

    /// Everything up to now is applied.
    pub fn mark_applied(&self) {
        let mut g = self.inner.lock().expect("poisoned");
        g.pending_since = None;
        g.last_updated = Some(SystemTime::now());
    }

    /// kube-proxy's healthz rule: healthy unless an update has been waiting longer than
    /// `stale_after` (or nothing was ever applied and startup took that long).
    pub fn healthy(
        &self,
        now: Instant,
        stale_after: std::time::Duration,
        started: Instant,
    ) -> bool {
        let g = self.inner.lock().expect("poisoned");
        match (g.pending_since, g.last_updated) {
            (Some(p), _) => now.duration_since(p) < stale_after,
            (None, Some(_)) => true,
            (None, None) => now.duration_since(started) < stale_after,
        }
    }

    pub fn last_updated(&self) -> Option<SystemTime> {
        self.inner.lock().expect("poisoned").last_updated
    }

    pub fn set_local_endpoints(&self, m: BTreeMap<u16, (String, String, usize)>) {
        self.inner.lock().expect("poisoned").local_endpoints = m;
    }

    pub fn local_endpoints(&self, port: u16) -> Option<(String, String, usize)> {
        self.inner
            .lock()
            .expect("poisoned")
            .local_endpoints
            .get(&port)
            .cloned()
    }
}

/// Writes `status` to `<dir>/status.json` atomically.
pub fn write_file(dir: &Path, status: &Status) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let body = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    crate::node::cni::write_atomic(&dir.join(STATUS_FILE), &body)
}

pub fn read_file(dir: &Path) -> std::io::Result<Status> {
    let text = std::fs::read(dir.join(STATUS_FILE))?;
    serde_json::from_slice(&text).map_err(std::io::Error::other)
}

/// RFC 3339 (UTC, seconds); what kube-proxy's healthz prints.
pub use sixlane_attach::rfc3339::seconds as rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn healthz_goes_stale_only_with_a_waiting_update() {
        let s = Shared::new(Status::default());
        let t0 = Instant::now();
        let stale = Duration::from_secs(60);
        assert!(s.healthy(t0, stale, t0));
        assert!(
            !s.healthy(t0 + stale, stale, t0),
            "never applied after startup grace"
        );
        s.mark_applied();
        assert!(s.healthy(t0 + stale * 10, stale, t0), "idle is healthy");
        s.mark_pending(t0);
        s.mark_pending(t0 + stale / 2); // the oldest pending change counts
        assert!(s.healthy(t0 + stale / 2, stale, t0));
        assert!(!s.healthy(t0 + stale, stale, t0));
        s.mark_applied();
        assert!(s.healthy(t0 + stale, stale, t0));
    }
}
