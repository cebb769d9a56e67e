//! Kubernetes mode's single writer: every agent computes the assignments, but only the holder
//! of the Lease `kube-system/sixlane-lb-ipam` writes them to the Services' status. A second
//! writer could hand the same address to two Services from two stale views; one writer
//! decides from one view, and the status it writes is what every agent's datapath serves.
//!
//! The Lease protocol (client-go's `leaderelection`, written out: kube-rs has no elector):
//! - no Lease: create it holding it (a 409 means another agent was first);
//! - held by us: renew (`renewTime`) with an update carrying the `resourceVersion` read, so of
//!   two concurrent writers one gets 409;
//! - held by another: wait until the Lease has not changed for its `leaseDurationSeconds`, as
//!   measured by this agent's own monotonic clock from when it saw the last change (no clock
//!   synchronisation needed), then take it over the same way; an empty holder (released) is
//!   taken at once.
//!
//! Numbers: the Lease lasts [`LEASE_DURATION`] (15 s) and is renewed every [`RETRY_PERIOD`]
//! (5 s), so two renewals may fail (an API server restart, a slow etcd) before anyone else may
//! take over. The holder stops writing [`RENEW_DEADLINE`] (10 s) after its last successful
//! renewal, 5 s before another agent can have taken over, so two agents never write at once
//! even when the holder is cut off. A crashed holder is replaced within 15–20 s; one that stops
//! (a rollout, SIGTERM) releases the Lease and is replaced within 5 s. Only new or changed
//! Services wait for that: addresses already in status keep being served by every node.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt as _, stream};
use k8s_openapi::{
    api::{
        coordination::v1::Lease, coordination::v1::LeaseSpec, core::v1::Service, events::v1::Event,
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use sixlane_attach::chain;
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
    time::Instant,
};
use tracing::{debug, info, warn};

use super::{
    patch::{FIELD_MANAGER, StatusUpdate, apply_body, event},
    report::LeaseView,
};
use crate::{Error, error::KubeRequest, model::ServiceId};

pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "sixlane-lb-ipam";
/// How long a Lease holds without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// A holder whose last successful renewal is older than this stops writing.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the Lease is renewed, or checked by those who wait for it.
pub const RETRY_PERIOD: Duration = Duration::from_secs(5);
/// Status writes in flight at once (1,000 new Services should not take 1,000 round trips).
const CONCURRENT_WRITES: usize = 8;

/// What to do with the Lease now.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Create(Lease),
    /// Renew it, or take it over (the Lease carries the `resourceVersion` read).
    Update(Lease),
    Wait {
        holder: String,
    },
}

/// The parts of a Lease whose change shows its holder is alive.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    holder: Option<String>,
    renew: Option<MicroTime>,
    transitions: Option<i32>,
    duration: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone(),
            renew: spec.renew_time.clone(),
            transitions: spec.lease_transitions,
            duration: spec.lease_duration_seconds,
        }
    }
}

/// The Lease protocol's decisions, with the clocks passed in (see the module docs).
#[derive(Debug)]
pub struct Elector {
    identity: String,
    /// The Lease's record as last seen, and when it was first seen so.
    observed: Option<(Record, Instant)>,
    /// The last successful create, renewal or takeover.
    renewed: Option<Instant>,
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl Elector {
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            identity: identity.into(),
            observed: None,
            renewed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Holding the Lease, renewed recently enough to write.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.leader_until().is_some_and(|t| now < t)
    }

    /// Until when this agent may write, as of its last successful renewal.
    pub fn leader_until(&self) -> Option<Instant> {
        self.renewed.map(|t| t + RENEW_DEADLINE)
    }

    /// What to do given the Lease as just read (`None`: it does not exist).
    pub fn step(&mut self, current: Option<&Lease>, now: Instant, wall: Timestamp) -> Step {
        let Some(lease) = current else {
            return Step::Create(Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    ..Default::default()
                },
                spec: Some(self.taken(&LeaseSpec::default(), wall)),
            });
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = Record::of(&spec);
        if self.observed.as_ref().is_none_or(|(r, _)| *r != record) {
            self.observed = Some((record, now));
        }
        let seen = self.observed.as_ref().map_or(now, |(_, t)| *t);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let spec = match holder {
            Some(h) if h == self.identity => LeaseSpec {
                renew_time: Some(MicroTime(wall)),
                lease_duration_seconds: Some(secs(LEASE_DURATION)),
                ..spec
            },
            Some(h) => {
                let lasts = spec
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(LEASE_DURATION, Duration::from_secs);
                if now.saturating_duration_since(seen) < lasts {
                    self.renewed = None;
                    return Step::Wait { holder: h };
                }
                self.taken(&spec, wall)
            }
            None => self.taken(&spec, wall),
        };
        Step::Update(Lease {
            metadata: lease.metadata.clone(),
            spec: Some(spec),
        })
    }

    /// `old` held by us from now on.
    fn taken(&self, old: &LeaseSpec, wall: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(secs(LEASE_DURATION)),
            acquire_time: Some(MicroTime(wall)),
            renew_time: Some(MicroTime(wall)),
            lease_transitions: Some(old.lease_transitions.map_or(0, |t| t + 1)),
            ..old.clone()
        }
    }

    /// The create or update of [`Step`] succeeded: `written` is the Lease now.
    pub fn succeeded(&mut self, written: &Lease, now: Instant) {
        self.renewed = Some(now);
        let spec = written.spec.clone().unwrap_or_default();
        self.observed = Some((Record::of(&spec), now));
    }

    /// The Lease as we give it up (holder cleared: the next agent takes it at once), if we
    /// hold it.
    pub fn release(&mut self, current: &Lease, now: Instant, wall: Timestamp) -> Option<Lease> {
        let spec = current.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let was = self.is_leader(now);
        self.renewed = None;
        (ours && was).then(|| Lease {
            metadata: current.metadata.clone(),
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                renew_time: Some(MicroTime(wall)),
                ..spec
            }),
        })
    }
}

/// The writer task's handle, owned by the daemon's load-balancing subsystem.
#[derive(Debug)]
pub struct Handle {
    updates: watch::Sender<Vec<StatusUpdate>>,
    view: Arc<Mutex<LeaseView>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Starts competing for the Lease as `identity` (the node name) and writing once held.
    pub fn spawn(client: Client, identity: &str) -> Self {
        let (updates, rx) = watch::channel(Vec::new());
        let (stop, stop_rx) = oneshot::channel();
        let view = Arc::new(Mutex::new(LeaseView {
            lease: format!("{LEASE_NAMESPACE}/{LEASE_NAME}"),
            identity: identity.into(),
            ..Default::default()
        }));
        let writer = Writer {
            leases: Api::namespaced(client.clone(), LEASE_NAMESPACE),
            client,
            elector: Elector::new(identity),
            written: BTreeMap::new(),
            view: view.clone(),
        };
        Self {
            updates,
            view,
            stop: Some(stop),
            task: tokio::spawn(writer.run(rx, stop_rx)),
        }
    }

    /// The status writes wanted now (all of them: this replaces the previous set).
    pub fn send(&self, updates: Vec<StatusUpdate>) {
        self.updates.send_replace(updates);
    }

    pub fn view(&self) -> LeaseView {
        self.view.lock().expect("poisoned").clone()
    }

    /// The Lease view, shared (for the metrics).
    pub fn shared_view(&self) -> Arc<Mutex<LeaseView>> {
        self.view.clone()
    }

    /// Releases the Lease if held, so another agent takes over without waiting for it to
    /// expire, and ends the task.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(Duration::from_secs(3), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

struct Writer {
    client: Client,
    leases: Api<Lease>,
    elector: Elector,
    /// What was written per Service, so the same update (same Service version) is not written
    /// again before the watch shows it.
    written: BTreeMap<ServiceId, StatusUpdate>,
    view: Arc<Mutex<LeaseView>>,
}

impl Writer {
    async fn run(
        mut self,
        mut updates: watch::Receiver<Vec<StatusUpdate>>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut tick = tokio::time::interval(RETRY_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.elect().await,
                changed = updates.changed() => if changed.is_err() { return },
                _ = &mut stop => {
                    self.release().await;
                    return;
                }
            }
            let wanted = updates.borrow_and_update().clone();
            self.write(&wanted).await;
        }
    }

    fn lease_name() -> String {
        format!("{LEASE_NAMESPACE}/{LEASE_NAME}")
    }

    /// One round of the Lease protocol.
    async fn elect(&mut self) {
        let was = self.elector.is_leader(Instant::now());
        let result = self.elect_once().await;
        let now = Instant::now();
        let leader = self.elector.is_leader(now);
        if leader != was {
            if leader {
                info!(lease = %Self::lease_name(), "holding the LoadBalancer IP assignment Lease: this agent writes Service status");
            } else {
                warn!(lease = %Self::lease_name(), "no longer holding the LoadBalancer IP assignment Lease");
                self.written.clear();
            }
        }
        let mut v = self.view.lock().expect("poisoned");
        v.leader = leader;
        match result {
            Ok(holder) => {
                v.holder = holder;
                v.error = None;
            }
            Err(e) => v.error = Some(chain(&e).to_string()),
        }
    }

    /// Reads the Lease and creates, renews, takes it over or waits; the holder as known now.
    async fn elect_once(&mut self) -> Result<Option<String>, Error> {
        let lease = Self::lease_name();
        let current = self.read().await?;
        let (written, create) =
            match self
                .elector
                .step(current.as_ref(), Instant::now(), Timestamp::now())
            {
                Step::Wait { holder } => return Ok(Some(holder)),
                Step::Create(l) => (self.leases.create(&PostParams::default(), &l).await, true),
                Step::Update(l) => (
                    self.leases
                        .replace(LEASE_NAME, &PostParams::default(), &l)
                        .await,
                    false,
                ),
            };
        match written {
            Ok(l) => {
                self.elector.succeeded(&l, Instant::now());
                Ok(Some(self.elector.identity().to_owned()))
            }
            // Another agent wrote it first: it holds the Lease now (the next round decides
            // again); read who it is for the view.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!(%lease, "lost a race for the Lease");
                Ok(self.read().await?.and_then(|l| l.spec?.holder_identity))
            }
            Err(source) => Err(Error::Kube {
                request: KubeRequest::WriteLease { lease, create },
                source,
            }),
        }
    }

    /// The Lease, if it exists.
    async fn read(&self) -> Result<Option<Lease>, Error> {
        self.leases
            .get_opt(LEASE_NAME)
            .await
            .map_err(|source| Error::Kube {
                request: KubeRequest::GetLease {
                    lease: Self::lease_name(),
                },
                source,
            })
    }

    async fn release(&mut self) {
        let Ok(Some(current)) = self.leases.get_opt(LEASE_NAME).await else {
            return;
        };
        let Some(l) = self
            .elector
            .release(&current, Instant::now(), Timestamp::now())
        else {
            return;
        };
        match self
            .leases
            .replace(LEASE_NAME, &PostParams::default(), &l)
            .await
        {
            Ok(_) => {
                info!(lease = %Self::lease_name(), "released the LoadBalancer IP assignment Lease");
            }
            Err(e) => {
                warn!(lease = %Self::lease_name(), error = %chain(&e), "releasing the Lease failed; it expires by itself");
            }
        }
    }

    /// Writes the updates not written yet, if this agent holds the Lease.
    async fn write(&mut self, wanted: &[StatusUpdate]) {
        // A Service no longer in the set is in sync: forget what was written to it.
        self.written
            .retain(|id, _| wanted.iter().any(|u| u.id == *id));
        let Some(until) = self.elector.leader_until().filter(|t| Instant::now() < *t) else {
            return;
        };
        let writes: Vec<_> = wanted
            .iter()
            .filter(|u| self.written.get(&u.id) != Some(*u))
            .map(|u| {
                let to = Target {
                    client: self.client.clone(),
                    identity: self.elector.identity().to_owned(),
                    until,
                };
                write_one(to, u.clone())
            })
            .collect();
        let done: Vec<StatusUpdate> = stream::iter(writes)
            .buffer_unordered(CONCURRENT_WRITES)
            .filter_map(|u| async move { u })
            .collect()
            .await;
        for u in done {
            self.written.insert(u.id.clone(), u);
        }
    }
}

/// Where a status write goes: the API, as whom, and until when this agent may write.
struct Target {
    client: Client,
    identity: String,
    /// The Lease's renew deadline as of the last renewal.
    until: Instant,
}

/// Writes one Service's status (and its Event); the update if the status was written.
async fn write_one(to: Target, u: StatusUpdate) -> Option<StatusUpdate> {
    // The Lease may have lapsed while earlier writes were in flight.
    if Instant::now() >= to.until {
        return None;
    }
    let now = Timestamp::now();
    let services: Api<Service> = Api::namespaced(to.client.clone(), &u.id.namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if let Err(source) = services
        .patch_status(&u.id.name, &params, &Patch::Apply(apply_body(&u, now)))
        .await
    {
        let conflict = matches!(&source, kube::Error::Api(s) if s.code == 409);
        let e = Error::Kube {
            request: KubeRequest::PatchStatus {
                service: u.id.to_string(),
            },
            source,
        };
        if conflict {
            // The Service changed since the store saw it; its next version decides.
            debug!(error = %chain(&e), "status write skipped");
        } else {
            warn!(error = %chain(&e), "status write failed; retrying");
        }
        return None;
    }
    debug!(service = %u.id, change = ?u.change, "status written");
    if let Some(ev) = event(&u, &to.identity, now) {
        let events: Api<Event> = Api::namespaced(to.client, &u.id.namespace);
        if let Err(source) = events.create(&PostParams::default(), &ev).await {
            let e = Error::Kube {
                request: KubeRequest::CreateEvent {
                    service: u.id.to_string(),
                },
                source,
            };
            warn!(error = %chain(&e), "event not recorded");
        }
    }
    Some(u)
}

#[cfg(test)]
mod tests;
