//! LoadBalancer IP assignment (LB-IPAM): Services of `type: LoadBalancer` whose class is unset
//! or sixlane's get an address from the configured pools (`docs/lb.md`).
//!
//! Every agent runs the same pure assignment ([`assign`]) over the Services in its store on
//! every reconcile ([`LoadBalancing::reconcile`]). With static manifests there is no status to
//! write: the assignments become the Services' load-balancer addresses in this node's desired
//! state, so the demo and the tests run the same assignment code.
//!
//! Layout: [`config`] (the `loadBalancer:` section), [`input`] (Service objects to the
//! assignment's input), [`assign`] (the rules), [`report`] (what `status` and
//! `sixlane-agent lb` show, [`cli`]), [`metrics`].

pub mod assign;
pub mod cli;
pub mod config;
pub mod input;
pub mod metrics;
pub mod report;

use std::{
    collections::BTreeMap,
    net::Ipv6Addr,
    sync::{Arc, Mutex},
};

use tracing::{info, warn};

pub use config::LbConfig;
pub use report::Report;

use crate::{
    Result,
    config::{Config, SourceMode},
    model::{DesiredState, ServiceId},
    source::store::Store,
};
use assign::{Outcome, Pool};

/// The daemon's load-balancing subsystem.
#[derive(Debug)]
pub struct LoadBalancing {
    enabled: bool,
    /// Static manifests: the assignments go into the desired state (Kubernetes mode serves
    /// what the Services' status says).
    static_mode: bool,
    class: String,
    pools: Vec<Pool>,
    /// The last report (shared with the metrics collector).
    report: Arc<Mutex<Option<Report>>>,
    /// Pending Services and their reason as last logged.
    logged: BTreeMap<ServiceId, String>,
    /// Static mode: the addresses of the last run. There is no status to remember them, and
    /// without them a Service added before another in the assignment's order (older, or a
    /// name sorting first) would move the others.
    last: BTreeMap<ServiceId, Ipv6Addr>,
}

impl LoadBalancing {
    /// Assignment as `cfg` says.
    pub fn new(cfg: &LbConfig, static_mode: bool) -> Self {
        Self {
            enabled: cfg.enabled,
            static_mode,
            class: cfg.class.clone(),
            pools: cfg.pools(),
            report: Arc::new(Mutex::new(None)),
            logged: BTreeMap::new(),
            last: BTreeMap::new(),
        }
    }

    /// What the agent's configuration asks for. Kubernetes mode computes and shows the
    /// assignments but writes nothing yet.
    pub async fn start(cfg: &Config, _node: &str) -> Result<Self> {
        let lb = &cfg.load_balancer;
        if lb.enabled {
            info!(pools = lb.pools.len(), class = %lb.class, "LoadBalancer IP assignment on");
        }
        Ok(Self::new(lb, cfg.source.mode == SourceMode::Static))
    }

    /// The `sixlane_lb_*` metrics, read at scrape time.
    pub fn collector(&self) -> metrics::Collector {
        metrics::Collector::new(self.report.clone(), None)
    }

    /// Assigns addresses to the Services in `store`. Static mode: they become the Services'
    /// load-balancer addresses in `desired`. Kubernetes mode: `desired` keeps what the status
    /// says.
    pub fn reconcile(&mut self, store: &Store, desired: &mut DesiredState) {
        if !self.enabled {
            return;
        }
        let (services, mut previous) = input::services(&store.services, &self.class);
        if self.static_mode {
            previous.extend(std::mem::take(&mut self.last));
        }
        let outcomes = assign::assign(&services, &self.pools, &previous);
        self.log_pending(&outcomes);
        if self.static_mode {
            apply(&outcomes, desired);
            self.last = assigned(&outcomes);
        }
        let report = Report::new(&self.class, &self.pools, &outcomes, report::Writer::Static);
        *self.report.lock().expect("poisoned") = Some(report);
    }

    /// The last report; `None` when assignment is off.
    pub fn report(&self) -> Option<Report> {
        self.report.lock().expect("poisoned").clone()
    }

    /// Logs each Service that became pending, or pending for another reason, once.
    fn log_pending(&mut self, outcomes: &BTreeMap<ServiceId, Outcome>) {
        let mut now = BTreeMap::new();
        for (id, o) in outcomes {
            if let Outcome::Pending(r) = o {
                let text = r.to_string();
                if self.logged.get(id) != Some(&text) {
                    warn!(service = %id, reason = r.code(), "LoadBalancer Service pending: {text}");
                }
                now.insert(id.clone(), text);
            }
        }
        self.logged = now;
    }
}

fn assigned(outcomes: &BTreeMap<ServiceId, Outcome>) -> BTreeMap<ServiceId, Ipv6Addr> {
    outcomes
        .iter()
        .filter_map(|(id, o)| match o {
            Outcome::Assigned(a) => Some((id.clone(), *a)),
            Outcome::Pending(_) => None,
        })
        .collect()
}

/// Static mode: each Service of ours gets its assigned address as its only load-balancer
/// address (none while pending).
fn apply(outcomes: &BTreeMap<ServiceId, Outcome>, desired: &mut DesiredState) {
    for (id, o) in outcomes {
        if let Some(s) = desired.services.get_mut(id) {
            s.load_balancer_ips = match o {
                Outcome::Assigned(a) => vec![*a],
                Outcome::Pending(_) => Vec::new(),
            };
        }
    }
}

#[cfg(test)]
mod tests;
