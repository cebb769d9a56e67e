//! The service map programmer: desired state in, minimal ordered map writes out.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv6Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use sixlane_attach::chain;
use sixlane_common::services::{
    Backend, Config, RevNat, Service, Slot, SlotKey, SvcKey, SvcPortInfo, config_flags, sizes,
};
use tracing::{debug, warn};

use super::{
    conntrack,
    plan::{self, Contribution, Ids, Ops, Owners, Skip},
    store::{MapId, MapStore, PinnedMaps, dump_typed, pack, pack_keys},
};
use crate::{
    PinLayout, Result,
    model::{DesiredState, NodeState, ServiceId},
};

/// What one [`Programmer::apply`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApplyReport {
    /// Services in the desired state.
    pub services: usize,
    /// Services whose entries were recomputed (added, changed or removed).
    pub changed: usize,
    /// Map elements written and deleted.
    pub writes: usize,
    pub deletes: usize,
    /// Wall time of the whole apply (diff included) and of its map syscalls alone.
    pub elapsed_us: u64,
    pub map_us: u64,
    /// Conntrack entries of removed UDP backends flushed.
    pub ct_flushed: usize,
    /// Entries left out, and why (frontend conflicts between Services, full id spaces).
    pub skipped: Vec<String>,
}

struct Applied {
    /// The Service as last applied; `None` when unknown (found in the maps at start-up, or
    /// left incomplete by a conflict): it is recomputed on the next apply.
    spec: Option<crate::model::Service>,
    contribution: Contribution,
}

/// Programs the service maps from [`DesiredState`]s. Keeps what it wrote in memory so each
/// apply only diffs and writes the Services that changed; at start-up it reads the maps back,
/// so a restarted agent rewrites nothing that is already right and keeps every id (conntrack
/// entries and affinities stay meaningful).
pub struct Programmer<S: MapStore = PinnedMaps> {
    store: S,
    node: Option<NodeState>,
    config: Option<Config>,
    services: BTreeMap<ServiceId, Applied>,
    /// Entries found in the maps that belong to no named Service.
    orphans: Option<Contribution>,
    owners: Owners,
    /// Services whose spec is unknown (read back, or left incomplete): recomputed next time
    /// even by `apply_changed`.
    unknown: BTreeSet<ServiceId>,
    ids: Ids,
    /// `ServicesConfig::pod_fast_path`, written with the datapath configuration.
    pod_fast_path: bool,
}

impl<S: MapStore> std::fmt::Debug for Programmer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Programmer")
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

impl Programmer<PinnedMaps> {
    /// Opens the maps of the datapath pinned under `layout` (see `Datapath::load`).
    pub fn open(layout: &PinLayout) -> Result<Self> {
        let store = PinnedMaps::open(layout)?;
        let (backends, frontends) = array_sizes(layout);
        Self::with_store(store, backends, frontends)
    }
}

fn array_sizes(layout: &PinLayout) -> (u32, u32) {
    let size = |name: &str, default: u32| {
        aya::maps::MapInfo::from_pin(layout.map(name))
            .map(|i| i.max_entries())
            .unwrap_or(default)
    };
    (
        size(MapId::Backends.name(), sizes::BACKENDS),
        size(MapId::RevNat.name(), sizes::REVNAT),
    )
}

impl<S: MapStore> Programmer<S> {
    fn empty(store: S, backends: u32, frontends: u32) -> Self {
        Self {
            store,
            node: None,
            config: None,
            services: BTreeMap::new(),
            orphans: None,
            owners: HashMap::new(),
            unknown: BTreeSet::new(),
            ids: Ids::new(backends, frontends),
            pod_fast_path: true,
        }
    }

    /// A programmer over any store (unit tests use an in-memory one), reading its current
    /// contents first.
    pub fn with_store(store: S, backends: u32, frontends: u32) -> Result<Self> {
        let mut p = Self::empty(store, backends, frontends);
        p.resync()?;
        Ok(p)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Forgets the in-memory state and reads it back from the maps.
    fn resync(&mut self) -> Result<()> {
        let info: Vec<(u32, SvcPortInfo)> = dump_typed(&mut self.store, MapId::Info)?;
        let revnat: Vec<(u32, RevNat)> = dump_typed(&mut self.store, MapId::RevNat)?;
        let backends: Vec<(u32, Backend)> = dump_typed(&mut self.store, MapId::Backends)?;
        let slots: Vec<(SlotKey, Slot)> = dump_typed(&mut self.store, MapId::Slots)?;
        let svc: Vec<(SvcKey, Service)> = dump_typed(&mut self.store, MapId::Svc)?;
        let config: Vec<(u32, Config)> = dump_typed(&mut self.store, MapId::Config)?;
        let (nb, nf) = (self.ids.backend.max(), self.ids.frontend.max());
        self.ids = Ids::new(nb, nf);
        let found = plan::reconstruct(&info, &revnat, &backends, &slots, &svc, &mut self.ids);
        self.services.clear();
        self.owners.clear();
        self.unknown.clear();
        self.orphans = None;
        for (who, c) in found {
            match who {
                Some(id) => {
                    let owner = Arc::new(id.clone());
                    for k in plan::svc_keys(&c) {
                        self.owners.insert(*k, owner.clone());
                    }
                    self.unknown.insert(id.clone());
                    self.services.insert(
                        id,
                        Applied {
                            spec: None,
                            contribution: c,
                        },
                    );
                }
                None => self.orphans = Some(c),
            }
        }
        self.node = None;
        self.config = config.first().map(|(_, c)| *c);
        debug!(
            services = self.services.len(),
            orphans = self.orphans.is_some(),
            "service maps read back"
        );
        Ok(())
    }

    /// Whether service traffic between local pods may bypass the node's forwarding
    /// (`ServicesConfig::pod_fast_path`; on by default). Takes effect with the next apply.
    pub fn set_pod_fast_path(&mut self, on: bool) {
        self.pod_fast_path = on;
    }

    /// Makes the maps implement `desired`: computes the entries of every Service that changed
    /// since the last apply, diffs them against what is in the maps, and writes the difference
    /// in an order that never lets the datapath see a frontend whose slots or backends are not
    /// there yet (backends, then slots, then frontends; removals the other way round).
    pub fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport> {
        self.apply_inner(desired, None)
    }

    /// Like [`Programmer::apply`], but recomputes only the Services in `changed` (added,
    /// modified or removed in `desired` since the last apply), trusting the caller that no
    /// other Service changed: the cost is proportional to the change, not to the number of
    /// Services. A changed node, or Services whose spec the programmer does not know (after a
    /// restart, or left incomplete by a conflict), fall back to the full comparison.
    pub fn apply_changed(
        &mut self,
        desired: &DesiredState,
        changed: &[ServiceId],
    ) -> Result<ApplyReport> {
        self.apply_inner(desired, Some(changed))
    }

    fn apply_inner(
        &mut self,
        desired: &DesiredState,
        hint: Option<&[ServiceId]>,
    ) -> Result<ApplyReport> {
        let start = Instant::now();
        let node_changed = self.node.as_ref() != Some(&desired.node);
        let config = config_for(&desired.node, self.pod_fast_path);
        let config_changed = self.config != Some(config);
        let changed = match hint {
            Some(ids) if !node_changed && self.unknown.is_empty() => {
                let mut changed = ids.to_vec();
                changed.sort_unstable();
                changed.dedup();
                changed
            }
            _ => changed_services(&desired.services, &self.services, node_changed),
        };
        let mut report = ApplyReport {
            services: desired.services.len(),
            changed: changed.len(),
            ..Default::default()
        };

        let mut ops = Ops::default();
        if let Some(orphans) = self.orphans.take() {
            plan::diff(Some(&orphans), None, &mut ops, &mut self.ids);
        }
        let mut skipped = Vec::new();
        self.owners.reserve(changed.len() * 2);
        for id in changed {
            self.recompute(id, desired, &mut ops, &mut skipped);
        }
        ops.settle();
        report.skipped = skipped.iter().map(describe_skip).collect();
        for s in &report.skipped {
            warn!("{s}");
        }

        let map_start = Instant::now();
        let res = self.execute(&ops, config_changed.then_some(config));
        let map_time = map_start.elapsed();
        if let Err(e) = res {
            // The maps may hold part of this apply: start over from what they hold.
            warn!(error = %chain(&e), "service map update failed; re-reading the maps");
            self.resync()?;
            return Err(e);
        }
        self.ids.commit();
        self.node = Some(desired.node.clone());
        self.config = Some(config);
        if !ops.udp_backends_gone.is_empty() {
            report.ct_flushed = conntrack::flush_backends(&mut self.store, &ops.udp_backends_gone)?;
        }
        report.writes = ops.writes() + usize::from(config_changed);
        report.deletes = ops.deletes();
        report.map_us = micros(map_time);
        report.elapsed_us = micros(start.elapsed());
        debug!(?report, "services applied");
        Ok(report)
    }

    /// Recomputes Service `id` from `desired` (gone if absent there): adds the map operations
    /// from its old entries to its new ones to `ops`, and moves its frontend ownership.
    fn recompute(
        &mut self,
        id: ServiceId,
        desired: &DesiredState,
        ops: &mut Ops,
        skipped: &mut Vec<Skip>,
    ) {
        let old = self.services.remove(&id);
        if let Some(old) = &old {
            for k in plan::svc_keys(&old.contribution) {
                if self.owners.get(k).is_some_and(|o| **o == id) {
                    self.owners.remove(k);
                }
            }
        }
        self.unknown.remove(&id);
        let old_c = old.as_ref().map(|a| &a.contribution);
        let new = desired.services.get(&id).map(|svc| {
            let before = skipped.len();
            let c = plan::contribute(
                svc,
                &desired.node,
                old_c,
                &mut self.ids,
                &self.owners,
                skipped,
            );
            (svc, c, skipped.len() > before)
        });
        plan::diff(old_c, new.as_ref().map(|(_, c, _)| c), ops, &mut self.ids);
        let Some((svc, c, incomplete)) = new else {
            return;
        };
        let owner = Arc::new(id.clone());
        for k in plan::svc_keys(&c) {
            self.owners.insert(*k, owner.clone());
        }
        if incomplete {
            self.unknown.insert(id.clone());
        }
        self.services.insert(
            id,
            Applied {
                // Retry what was left out next time.
                spec: (!incomplete).then(|| svc.clone()),
                contribution: c,
            },
        );
    }

    fn execute(&mut self, ops: &Ops, config: Option<Config>) -> Result<()> {
        let s = &mut self.store;
        if let Some(c) = config {
            let (k, v) = pack(&[(0u32, c)]);
            s.update(MapId::Config, &k, &v)?;
        }
        let (k, v) = pack(&ops.info_up);
        s.update(MapId::Info, &k, &v)?;
        let (k, v) = pack(&ops.revnat_up);
        s.update(MapId::RevNat, &k, &v)?;
        let (k, v) = pack(&ops.backends_up);
        s.update(MapId::Backends, &k, &v)?;
        let (k, v) = pack(&ops.slots_up);
        s.update(MapId::Slots, &k, &v)?;
        let (k, v) = pack(&ops.svc_up);
        s.update(MapId::Svc, &k, &v)?;
        s.delete(MapId::Svc, &pack_keys(&ops.svc_del))?;
        s.delete(MapId::Slots, &pack_keys(&ops.slots_del))?;
        s.delete(MapId::Backends, &pack_keys(&ops.backends_del))?;
        s.delete(MapId::RevNat, &pack_keys(&ops.revnat_del))?;
        s.delete(MapId::Info, &pack_keys(&ops.info_del))?;
        Ok(())
    }
}

/// The Services to recompute in a full comparison: added, removed, changed, or all of them
/// when the node changed. A merge walk over both sorted maps, cloning only the ids returned.
fn changed_services(
    want: &BTreeMap<ServiceId, crate::model::Service>,
    have: &BTreeMap<ServiceId, Applied>,
    node_changed: bool,
) -> Vec<ServiceId> {
    let mut changed = Vec::new();
    let mut want = want.iter().peekable();
    let mut have = have.iter().peekable();
    loop {
        match (want.peek(), have.peek()) {
            (None, None) => break,
            (Some((wid, w)), Some((hid, h))) if wid == hid => {
                if node_changed || h.spec.as_ref() != Some(*w) {
                    changed.push((*wid).clone());
                }
                want.next();
                have.next();
            }
            (Some((wid, _)), Some((hid, _))) if wid < hid => {
                changed.push((*wid).clone());
                want.next();
            }
            (Some(_), Some((hid, _))) => {
                changed.push((*hid).clone());
                have.next();
            }
            (Some((wid, _)), None) => {
                changed.push((*wid).clone());
                want.next();
            }
            (None, Some((hid, _))) => {
                changed.push((*hid).clone());
                have.next();
            }
        }
    }
    changed
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The datapath configuration for a node: SNAT of external flows to remote backends uses the
/// node's first address when the frontend is not a node address.
pub fn config_for(node: &NodeState, pod_fast_path: bool) -> Config {
    Config {
        flags: if pod_fast_path {
            0
        } else {
            config_flags::NO_POD_FAST_PATH
        },
        snat_addr: node
            .addresses
            .first()
            .copied()
            .unwrap_or(Ipv6Addr::UNSPECIFIED)
            .octets(),
        ..Default::default()
    }
}

fn describe_skip(s: &Skip) -> String {
    match s {
        Skip::Conflict { key, owner } => format!(
            "frontend [{}]:{} proto {} scope {} belongs to {owner}; left out",
            Ipv6Addr::from(key.addr),
            u16::from_be(key.port),
            key.proto,
            key.scope
        ),
        Skip::Exhausted(what) => {
            format!("no free id for {what}: raise the map size; entries left out")
        }
    }
}
