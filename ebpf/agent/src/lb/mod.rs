//! LoadBalancer IP assignment (LB-IPAM): Services of `type: LoadBalancer` whose class is unset
//! or sixlane's get an address from the configured pools (`docs/lb.md`).
//!
//! Every agent runs the same pure assignment ([`assign`]) over the Services in its store on
//! every reconcile ([`LoadBalancing::reconcile`]). What happens with the result depends on the
//! source:
//! - Kubernetes: the status changes ([`patch`]) go to the [`writer`], which writes them only
//!   while this agent holds the cluster's Lease. Every node's datapath serves the addresses the
//!   Services' status then says, like any other implementation's.
//! - Static manifests: there is no status to write; the assignments become the Services'
//!   load-balancer addresses in this node's desired state, so the demo and the tests run the
//!   same assignment code.
//!
//! Layout: [`config`] (the `loadBalancer:` section), [`input`] (Service objects to the
//! assignment's input), [`assign`] (the rules), [`patch`] (status writes), [`writer`] (the
//! Lease and the writes), [`report`] (what `status` and `sixlane-agent lb` show, [`cli`]),
//! [`metrics`].

pub mod assign;
pub mod cli;
pub mod config;
pub mod input;
pub mod metrics;
pub mod patch;
pub mod report;
pub mod writer;

use std::{
    collections::BTreeMap,
    net::Ipv6Addr,
    sync::{Arc, Mutex},
};

use tracing::{info, warn};

pub use config::LbConfig;
pub use report::Report;

use crate::{
    Error, Result,
    config::{Config, SourceMode},
    model::{DesiredState, ServiceId},
    source::store::Store,
};
use assign::{Outcome, Pool};

/// The daemon's load-balancing subsystem.
#[derive(Debug)]
pub struct LoadBalancing {
    enabled: bool,
    class: String,
    pools: Vec<Pool>,
    /// Kubernetes mode: the Lease and the status writes.
    writer: Option<writer::Handle>,
    /// The last report (shared with the metrics collector).
    report: Arc<Mutex<Option<Report>>>,
    /// Pending Services and their reason as last logged.
    logged: BTreeMap<ServiceId, String>,
    /// The addresses of the last run, kept where the status holds none: in static mode there
    /// is no status (without them a Service added before another in the assignment's order,
    /// older or with a name sorting first, would move the others); in Kubernetes mode the
    /// status of a write in flight is not in the store yet (without them a Service requesting
    /// an address just given could take it).
    last: BTreeMap<ServiceId, Ipv6Addr>,
}

impl LoadBalancing {
    /// Assignment as `cfg` says, writing through `writer` (Kubernetes mode) or into the desired
    /// state (`None`: static mode).
    pub fn new(cfg: &LbConfig, writer: Option<writer::Handle>) -> Self {
        Self {
            enabled: cfg.enabled,
            class: cfg.class.clone(),
            pools: cfg.pools(),
            writer,
            report: Arc::new(Mutex::new(None)),
            logged: BTreeMap::new(),
            last: BTreeMap::new(),
        }
    }

    /// What the agent's configuration asks for: in Kubernetes mode with assignment on, a writer
    /// competing for the Lease as `node`, on its own API client.
    pub async fn start(cfg: &Config, node: &str) -> Result<Self> {
        let lb = &cfg.load_balancer;
        let writer = if lb.enabled && cfg.source.mode == SourceMode::Kubernetes {
            let client = kube::Client::try_default()
                .await
                .map_err(Error::KubeClient)?;
            Some(writer::Handle::spawn(client, node))
        } else {
            None
        };
        if lb.enabled {
            info!(pools = lb.pools.len(), class = %lb.class, lease = writer.is_some(), "LoadBalancer IP assignment on");
        }
        Ok(Self::new(lb, writer))
    }

    /// The `sixlane_lb_*` metrics, read at scrape time.
    pub fn collector(&self) -> metrics::Collector {
        metrics::Collector::new(
            self.report.clone(),
            self.writer.as_ref().map(writer::Handle::shared_view),
        )
    }

    /// Assigns addresses to the Services in `store`. Static mode: they become the Services'
    /// load-balancer addresses in `desired`. Kubernetes mode: the status changes go to the
    /// writer (`desired` keeps what the status says).
    pub fn reconcile(&mut self, store: &Store, desired: &mut DesiredState) {
        if !self.enabled {
            return;
        }
        let (services, in_status) = input::services(&store.services, &self.class);
        let mut previous = std::mem::take(&mut self.last);
        previous.extend(in_status);
        let outcomes = assign::assign(&services, &self.pools, &previous);
        self.last = assigned(&outcomes);
        self.log_pending(&outcomes);
        match &self.writer {
            Some(w) => w.send(patch::updates(
                &store.services,
                &self.class,
                &outcomes,
                &self.pools,
            )),
            None => apply(&outcomes, desired),
        }
        let report = Report::new(&self.class, &self.pools, &outcomes, self.writer_state());
        *self.report.lock().expect("poisoned") = Some(report);
    }

    /// The last report with the Lease as seen now; `None` when assignment is off.
    pub fn report(&self) -> Option<Report> {
        let mut r = self.report.lock().expect("poisoned").clone()?;
        r.writer = self.writer_state();
        Some(r)
    }

    fn writer_state(&self) -> report::Writer {
        self.writer
            .as_ref()
            .map_or(report::Writer::Static, |w| report::Writer::Lease(w.view()))
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

    /// Stops the writer, releasing the Lease if held.
    pub async fn stop(&mut self) {
        if let Some(w) = self.writer.take() {
            w.stop().await;
        }
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
