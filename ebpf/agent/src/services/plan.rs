//! From the typed model to map entries (one [`Contribution`] per Service), and the diff between
//! two contributions as ordered map operations ([`Ops`]). Pure: no kernel, tested without root.
//!
//! Semantics follow kube-proxy:
//! - the active backends of a port are its ready endpoints, or, when none is ready, its
//!   serving-and-terminating ones (flag `FALLBACK`);
//! - ClusterIPs use the node-local set with `internalTrafficPolicy: Local`, else the
//!   cluster-wide set;
//! - NodePorts, external IPs and LoadBalancer IPs use, for clients outside the node, the local
//!   set with `externalTrafficPolicy: Local` (client address kept) or the cluster-wide set with
//!   SNAT to reach remote backends; pods of the node reaching them use the cluster-wide set
//!   (kube-proxy's short-circuit for in-cluster clients);
//! - a `Local` set that is empty while the service has endpoints elsewhere drops (`DROP_EMPTY`);
//!   a service without any endpoint rejects with ICMPv6 port unreachable.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::Ipv6Addr,
    sync::Arc,
};

use sixlane_common::services::{
    Backend, RevNat, SVC_NAME_LEN, Service, Slot, SlotKey, SvcKey, SvcPortInfo, backend_flags,
    frontend_kind, group, scope, svc_flags,
};

use crate::model::{self, NodeState, ServiceId, TrafficPolicy};

const ICMPV6: u8 = 58;
/// kube-proxy's default ClientIP affinity timeout.
const DEFAULT_AFFINITY_SECS: u32 = 10800;

/// A port of a Service, by what identifies it in the Service (protocol and port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub proto: u8,
    pub port: u16,
}

/// Everything one Service puts in the maps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Contribution {
    pub ports: Vec<PortPlan>,
    /// Address entries that answer echo requests (ClusterIPs, external and LB IPs).
    pub echo: Vec<(SvcKey, Service)>,
}

/// One service port: its id, name record, backends, slot groups and frontends.
#[derive(Clone, Debug, PartialEq)]
pub struct PortPlan {
    pub key: PortKey,
    pub id: u32,
    pub info: SvcPortInfo,
    /// Backend id → backend, sorted by id.
    pub backends: Vec<(u32, Backend)>,
    /// Slot lists (backend ids) of the cluster-wide (0) and node-local (1) groups.
    pub slots: [Vec<u32>; 2],
    pub frontends: Vec<FrontendPlan>,
}

/// One frontend (address, port, protocol) with its scope entries.
#[derive(Clone, Debug, PartialEq)]
pub struct FrontendPlan {
    pub id: u32,
    pub rev: RevNat,
    pub entries: Vec<(SvcKey, Service)>,
}

/// An id space (array indices or hash keys) with reuse. Ids released during an apply become
/// reusable only after its writes are done (`commit`), so no entry of this apply can name an
/// id another part of it is still removing.
#[derive(Clone, Debug)]
pub struct IdAlloc {
    next: u32,
    max: u32,
    free: BTreeSet<u32>,
    pending: Vec<u32>,
}

impl IdAlloc {
    /// Ids `1..max` (0 means "none" everywhere).
    pub fn new(max: u32) -> Self {
        Self {
            next: 1,
            max,
            free: BTreeSet::new(),
            pending: Vec::new(),
        }
    }

    /// One past the largest id.
    pub fn max(&self) -> u32 {
        self.max
    }

    pub fn take(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop_first() {
            return Some(id);
        }
        if self.next >= self.max {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }

    /// Marks an id found in the maps as used.
    pub fn mark_used(&mut self, id: u32) {
        if id >= self.next {
            for free in self.next..id {
                self.free.insert(free);
            }
            self.next = id + 1;
        } else {
            self.free.remove(&id);
        }
    }

    pub fn release(&mut self, id: u32) {
        self.pending.push(id);
    }

    pub fn commit(&mut self) {
        self.free.extend(self.pending.drain(..));
    }

    pub fn in_use(&self) -> usize {
        (self.next as usize - 1) - self.free.len() - self.pending.len()
    }
}

/// The three id spaces.
#[derive(Clone, Debug)]
pub struct Ids {
    pub svc_port: IdAlloc,
    pub backend: IdAlloc,
    pub frontend: IdAlloc,
}

impl Ids {
    /// `backends` and `frontends` are the array sizes; service-port ids become slot groups
    /// (×2), so they stay below 2³¹.
    pub fn new(backends: u32, frontends: u32) -> Self {
        Self {
            svc_port: IdAlloc::new(1 << 30),
            backend: IdAlloc::new(backends),
            frontend: IdAlloc::new(frontends),
        }
    }

    pub fn commit(&mut self) {
        self.svc_port.commit();
        self.backend.commit();
        self.frontend.commit();
    }
}

/// Name record of a service port: `namespace/name/port-name`, cut to fit (at a character
/// boundary).
pub fn port_info(id: &ServiceId, p: &model::ServicePort) -> SvcPortInfo {
    let mut info = SvcPortInfo {
        port: p.port.to_be(),
        proto: p.protocol.number(),
        ..Default::default()
    };
    let mut n = 0;
    for part in [
        id.namespace.as_str(),
        "/",
        id.name.as_str(),
        "/",
        p.name.as_str(),
    ] {
        for (i, c) in part.char_indices() {
            let w = c.len_utf8();
            if n + w > SVC_NAME_LEN {
                info.name_len = n as u8;
                return info;
            }
            info.name[n..n + w].copy_from_slice(&part.as_bytes()[i..i + w]);
            n += w;
        }
    }
    info.name_len = n as u8;
    info
}

/// The text of a name record.
pub fn info_name(info: &SvcPortInfo) -> &str {
    let n = usize::from(info.name_len).min(SVC_NAME_LEN);
    std::str::from_utf8(&info.name[..n]).unwrap_or("?")
}

/// The Service a name record belongs to (`namespace/name/...`).
pub fn info_service(info: &SvcPortInfo) -> Option<ServiceId> {
    let mut it = info_name(info).splitn(3, '/');
    let namespace = it.next()?.to_owned();
    let name = it.next()?.to_owned();
    it.next()?;
    Some(ServiceId { namespace, name })
}

fn backend_entry(b: &model::Backend, p: &model::ServicePort, svc_port: u32) -> Backend {
    let mut flags = backend_flags::ALIVE;
    for (on, f) in [
        (b.ready, backend_flags::READY),
        (b.serving, backend_flags::SERVING),
        (b.terminating, backend_flags::TERMINATING),
        (b.local, backend_flags::LOCAL),
    ] {
        if on {
            flags |= f;
        }
    }
    Backend {
        addr: b.addr.octets(),
        port: b.port.to_be(),
        proto: p.protocol.number(),
        flags,
        svc_port,
    }
}

/// The active endpoints among `candidates`: the ready ones, or the serving-and-terminating
/// ones when none is ready (then `true`).
fn active<'a>(
    candidates: impl Iterator<Item = &'a model::Backend> + Clone,
) -> (Vec<&'a model::Backend>, bool) {
    let ready: Vec<_> = candidates.clone().filter(|b| b.ready).collect();
    if !ready.is_empty() {
        return (ready, false);
    }
    (
        candidates.filter(|b| b.serving && b.terminating).collect(),
        true,
    )
}

/// Keeps existing slot positions: backends that stay keep their slot, a leaving backend's slot
/// takes the last one, newcomers are appended. Few slot writes per change, and a packet reading
/// any mix of old and new slots still finds a backend that exists.
pub fn stable_slots(old: Option<&Vec<u32>>, want: &[u32]) -> Vec<u32> {
    let Some(old) = old.filter(|o| !o.is_empty()) else {
        return want.to_vec();
    };
    let wanted: BTreeSet<u32> = want.iter().copied().collect();
    let mut list: Vec<u32> = old.clone();
    let mut i = 0;
    while i < list.len() {
        if wanted.contains(&list[i]) {
            i += 1;
        } else {
            list.swap_remove(i);
        }
    }
    let have: BTreeSet<u32> = list.iter().copied().collect();
    list.extend(want.iter().copied().filter(|id| !have.contains(id)));
    list
}

/// A frontend to create: (address, port, kind, its scopes: (scope, node-local set?, extra
/// flags)).
type Wanted = (Ipv6Addr, u16, u8, [Option<(u8, bool, u16)>; 2]);

/// Why an entry of a Service was left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Another Service already has this frontend.
    Conflict { key: SvcKey, owner: ServiceId },
    /// An id space is full (raise the map size).
    Exhausted(&'static str),
}

/// Who owns a frontend key (shared, so recording ownership allocates nothing).
pub type Owners = HashMap<SvcKey, Arc<ServiceId>>;

/// Backends of one port, unique by (address, port), in the model's order.
fn unique_backends(p: &model::ServicePort) -> Vec<&model::Backend> {
    let mut uniq: Vec<&model::Backend> = Vec::with_capacity(p.backends.len());
    if p.backends.len() <= 16 {
        for b in &p.backends {
            if !uniq.iter().any(|u| (u.addr, u.port) == (b.addr, b.port)) {
                uniq.push(b);
            }
        }
    } else {
        let mut seen = HashSet::with_capacity(p.backends.len());
        uniq.extend(p.backends.iter().filter(|b| seen.insert((b.addr, b.port))));
    }
    uniq
}

/// Builds the entries of `svc` on a node with `node`, reusing ids and slot positions of `old`
/// (what the Service had in the maps). Frontends that `owners` gives to another Service are
/// skipped and reported.
pub fn contribute(
    svc: &model::Service,
    node: &NodeState,
    old: Option<&Contribution>,
    ids: &mut Ids,
    owners: &Owners,
    skipped: &mut Vec<Skip>,
) -> Contribution {
    let mut c = Contributor {
        svc,
        node,
        old,
        ids,
        owners,
        skipped,
        affinity_secs: svc
            .session_affinity
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1)),
    };
    let mut out = Contribution {
        ports: Vec::with_capacity(svc.ports.len()),
        echo: Vec::new(),
    };
    for p in &svc.ports {
        let key = PortKey {
            proto: p.protocol.number(),
            port: p.port,
        };
        if out.ports.iter().any(|q| q.key == key) {
            continue;
        }
        if let Some(plan) = c.port(p, key) {
            out.ports.push(plan);
        }
    }
    if let Some(first) = out.ports.first().map(|p| p.id) {
        out.echo = c.echo(first);
    }
    out
}

/// One Service's [`contribute`]: its inputs, and the id spaces and skip list it updates.
struct Contributor<'a> {
    svc: &'a model::Service,
    node: &'a NodeState,
    old: Option<&'a Contribution>,
    ids: &'a mut Ids,
    owners: &'a Owners,
    skipped: &'a mut Vec<Skip>,
    /// ClientIP affinity timeout; `None`: no affinity.
    affinity_secs: Option<u32>,
}

impl Contributor<'_> {
    /// Whether this Service may use `key`; a key another Service owns is reported as skipped.
    fn free(&mut self, key: &SvcKey) -> bool {
        match self.owners.get(key) {
            Some(owner) if **owner != self.svc.id => {
                self.skipped.push(Skip::Conflict {
                    key: *key,
                    owner: (**owner).clone(),
                });
                false
            }
            _ => true,
        }
    }

    /// The id the frontend `ident` had, so its reverse-NAT entry (and conntrack) stays valid.
    fn old_frontend(&self, ident: &(SvcKey, u8)) -> Option<u32> {
        self.old?
            .ports
            .iter()
            .flat_map(|p| p.frontends.iter())
            .find(|f| frontend_identity(&f.rev) == *ident)
            .map(|f| f.id)
    }

    /// One service port: its id (kept from `old`), backends, slot groups and frontends. `None`
    /// when no service-port id is left.
    fn port(&mut self, p: &model::ServicePort, key: PortKey) -> Option<PortPlan> {
        let old_port = self.old.and_then(|c| c.ports.iter().find(|q| q.key == key));
        let Some(id) = old_port.map(|o| o.id).or_else(|| self.ids.svc_port.take()) else {
            self.skipped.push(Skip::Exhausted("service ports"));
            return None;
        };
        let PortBackends {
            backends,
            slots,
            fallback,
        } = self.backends(p, id, old_port);
        let groups = Groups {
            svc_port: id,
            counts: [slots[0].len(), slots[1].len()],
            fallback,
            affinity_secs: self.affinity_secs,
        };
        let wanted = wanted_frontends(self.svc, self.node, p);
        let frontends = self.frontends(wanted, p.protocol.number(), &groups);
        Some(PortPlan {
            key,
            id,
            info: port_info(&self.svc.id, p),
            backends,
            slots,
            frontends,
        })
    }

    /// The port's backends, ids reused by address and port, and its two slot groups.
    fn backends(
        &mut self,
        p: &model::ServicePort,
        id: u32,
        old_port: Option<&PortPlan>,
    ) -> PortBackends {
        let uniq = unique_backends(p);
        let (cluster, cluster_fallback) = active(uniq.iter().copied());
        let (local, local_fallback) = active(uniq.iter().copied().filter(|b| b.local));
        let old_ids = OldBackendIds::of(old_port);
        let mut backends: Vec<(u32, Backend)> = Vec::with_capacity(cluster.len());
        // Ids of the cluster set, then of the local set, in set order.
        let mut cluster_ids = Vec::with_capacity(cluster.len());
        let mut local_ids = Vec::with_capacity(local.len());
        for (set, out_ids) in [(&cluster, &mut cluster_ids), (&local, &mut local_ids)] {
            for b in set.iter() {
                let entry = backend_entry(b, p, id);
                if let Some((bid, _)) = backends
                    .iter()
                    .find(|(_, e)| e.addr == entry.addr && e.port == entry.port)
                {
                    out_ids.push(*bid);
                    continue;
                }
                let Some(bid) = old_ids.get(b).or_else(|| self.ids.backend.take()) else {
                    self.skipped.push(Skip::Exhausted("backends"));
                    continue;
                };
                backends.push((bid, entry));
                out_ids.push(bid);
            }
        }
        backends.sort_unstable_by_key(|(id, _)| *id);
        let slots = [
            stable_slots(old_port.map(|o| &o.slots[0]), &cluster_ids),
            stable_slots(old_port.map(|o| &o.slots[1]), &local_ids),
        ];
        PortBackends {
            backends,
            slots,
            fallback: [cluster_fallback, local_fallback],
        }
    }

    /// The port's frontends: one per distinct (address, port, kind), with the scope entries
    /// this Service may own, ids kept from `old`.
    fn frontends(&mut self, wanted: Vec<Wanted>, proto: u8, groups: &Groups) -> Vec<FrontendPlan> {
        let mut frontends: Vec<FrontendPlan> = Vec::with_capacity(wanted.len());
        for (addr, port, kind, scopes) in wanted {
            let rev = RevNat {
                addr: addr.octets(),
                port: port.to_be(),
                proto,
                kind,
                svc_port: groups.svc_port,
            };
            let ident = frontend_identity(&rev);
            if frontends.iter().any(|f| frontend_identity(&f.rev) == ident) {
                continue;
            }
            let mut entries = Vec::with_capacity(2);
            for (sc, local_set, extra) in scopes.into_iter().flatten() {
                let key = SvcKey {
                    addr: rev.addr,
                    port: rev.port,
                    proto,
                    scope: sc,
                };
                if self.free(&key) {
                    entries.push((key, groups.entry(local_set, extra)));
                }
            }
            if entries.is_empty() {
                continue;
            }
            let Some(fe) = self
                .old_frontend(&ident)
                .or_else(|| self.ids.frontend.take())
            else {
                self.skipped.push(Skip::Exhausted("frontends"));
                continue;
            };
            for (_, e) in &mut entries {
                e.rev_nat = fe;
            }
            frontends.push(FrontendPlan {
                id: fe,
                rev,
                entries,
            });
        }
        frontends
    }

    /// Echo entries: every ClusterIP, external and LB address, owned through the first port.
    fn echo(&mut self, first: u32) -> Vec<(SvcKey, Service)> {
        let echo = |a: &Ipv6Addr, sc: u8| SvcKey {
            addr: a.octets(),
            port: 0,
            proto: ICMPV6,
            scope: sc,
        };
        let mut keys: Vec<SvcKey> = self
            .svc
            .cluster_ips
            .iter()
            .map(|a| echo(a, scope::INTERNAL))
            .collect();
        for a in self
            .svc
            .external_ips
            .iter()
            .chain(&self.svc.load_balancer_ips)
        {
            keys.push(echo(a, scope::INTERNAL));
            keys.push(echo(a, scope::EXTERNAL));
        }
        keys.sort_unstable();
        keys.dedup();
        let mut out = Vec::new();
        for key in keys {
            if self.free(&key) {
                out.push((
                    key,
                    Service {
                        flags: svc_flags::ECHO,
                        svc_port: first,
                        ..Default::default()
                    },
                ));
            }
        }
        out
    }
}

/// A port's backends and the slot lists of its cluster-wide (0) and node-local (1) groups.
struct PortBackends {
    backends: Vec<(u32, Backend)>,
    slots: [Vec<u32>; 2],
    /// Whether each group holds terminating endpoints because none is ready.
    fallback: [bool; 2],
}

/// The ids a port's backends had in `old`, by address and port: a map when the list is long,
/// else a scan.
enum OldBackendIds<'a> {
    None,
    Scan(&'a PortPlan),
    Map(HashMap<(Ipv6Addr, u16), u32>),
}

impl<'a> OldBackendIds<'a> {
    fn of(old_port: Option<&'a PortPlan>) -> Self {
        match old_port {
            None => Self::None,
            Some(o) if o.backends.len() > 16 => Self::Map(
                o.backends
                    .iter()
                    .map(|(id, b)| ((Ipv6Addr::from(b.addr), u16::from_be(b.port)), *id))
                    .collect(),
            ),
            Some(o) => Self::Scan(o),
        }
    }

    fn get(&self, b: &model::Backend) -> Option<u32> {
        match self {
            Self::None => None,
            Self::Map(m) => m.get(&(b.addr, b.port)).copied(),
            Self::Scan(o) => o
                .backends
                .iter()
                .find(|(_, ob)| ob.addr == b.addr.octets() && ob.port == b.port.to_be())
                .map(|(id, _)| *id),
        }
    }
}

/// A service port's two slot groups as its frontends' entries point at them.
struct Groups {
    svc_port: u32,
    /// Slot counts of the cluster-wide (0) and node-local (1) groups.
    counts: [usize; 2],
    /// Whether each group holds terminating endpoints because none is ready.
    fallback: [bool; 2],
    affinity_secs: Option<u32>,
}

impl Groups {
    /// The entry of one scope: the cluster-wide or the node-local group, plus `extra` flags;
    /// its frontend id is filled in once known.
    fn entry(&self, local_set: bool, extra: u16) -> Service {
        let g = usize::from(local_set);
        let n = self.counts[g];
        let mut flags = extra;
        if self.affinity_secs.is_some() {
            flags |= svc_flags::AFFINITY;
        }
        if self.fallback[g] && n > 0 {
            flags |= svc_flags::FALLBACK;
        }
        if local_set {
            flags |= svc_flags::LOCAL_ONLY;
            // Endpoints elsewhere but none here: drop rather than reject.
            if n == 0 && self.counts[0] > 0 {
                flags |= svc_flags::DROP_EMPTY;
            }
        }
        Service {
            group: group(self.svc_port, local_set),
            count: n.min(usize::from(u16::MAX)) as u16,
            flags,
            rev_nat: 0,
            svc_port: self.svc_port,
            affinity_secs: self.affinity_secs.unwrap_or(DEFAULT_AFFINITY_SECS),
            _pad: 0,
        }
    }
}

/// The frontends one port of `svc` wants: its ClusterIPs (internal scope), external and
/// load-balancer IPs, and NodePorts on every node address (internal and external scopes).
fn wanted_frontends(svc: &model::Service, node: &NodeState, p: &model::ServicePort) -> Vec<Wanted> {
    let itp_local = svc.internal_traffic_policy == TrafficPolicy::Local;
    let etp_local = svc.external_traffic_policy == TrafficPolicy::Local;
    let external_extra = if etp_local { 0 } else { svc_flags::SNAT_REMOTE };
    let ext_scopes = |extra: u16| {
        [
            Some((scope::INTERNAL, false, extra)),
            Some((scope::EXTERNAL, etp_local, extra | external_extra)),
        ]
    };
    let node_ports = p.node_port.map_or(0, |_| node.addresses.len());
    let mut wanted: Vec<Wanted> = Vec::with_capacity(
        svc.cluster_ips.len() + svc.external_ips.len() + svc.load_balancer_ips.len() + node_ports,
    );
    // From outside (announced over BGP), a ClusterIP keeps its internal policy; clients of
    // remote backends are source-NATed unless only local endpoints serve it.
    let outside = node.cluster_ips_from_outside.then(|| {
        let snat = if itp_local { 0 } else { svc_flags::SNAT_REMOTE };
        (scope::EXTERNAL, itp_local, snat)
    });
    for a in &svc.cluster_ips {
        wanted.push((
            *a,
            p.port,
            frontend_kind::CLUSTER_IP,
            [Some((scope::INTERNAL, itp_local, 0)), outside],
        ));
    }
    for a in &svc.external_ips {
        wanted.push((*a, p.port, frontend_kind::EXTERNAL_IP, ext_scopes(0)));
    }
    for a in &svc.load_balancer_ips {
        wanted.push((*a, p.port, frontend_kind::LOAD_BALANCER, ext_scopes(0)));
    }
    if let Some(np) = p.node_port {
        for a in &node.addresses {
            wanted.push((
                *a,
                np,
                frontend_kind::NODE_PORT,
                ext_scopes(svc_flags::NODE_PORT),
            ));
        }
    }
    wanted
}

/// A frontend's identity across applies: (address, port, protocol) and its kind.
fn frontend_identity(r: &RevNat) -> (SvcKey, u8) {
    (
        SvcKey {
            addr: r.addr,
            port: r.port,
            proto: r.proto,
            scope: 0,
        },
        r.kind,
    )
}

/// Every frontend key of a contribution.
pub fn svc_keys(c: &Contribution) -> impl Iterator<Item = &SvcKey> {
    c.ports
        .iter()
        .flat_map(|p| p.frontends.iter())
        .flat_map(|f| f.entries.iter().map(|(k, _)| k))
        .chain(c.echo.iter().map(|(k, _)| k))
}

/// A contribution as flat map contents.
#[derive(Default)]
struct Flat {
    info: BTreeMap<u32, SvcPortInfo>,
    revnat: BTreeMap<u32, RevNat>,
    backends: BTreeMap<u32, Backend>,
    slots: BTreeMap<SlotKey, u32>,
    svc: BTreeMap<SvcKey, Service>,
}

fn flatten(c: Option<&Contribution>) -> Flat {
    let mut f = Flat::default();
    let Some(c) = c else { return f };
    for p in &c.ports {
        f.info.insert(p.id, p.info);
        for (id, b) in &p.backends {
            f.backends.insert(*id, *b);
        }
        for (local, list) in p.slots.iter().enumerate() {
            for (i, bid) in list.iter().enumerate() {
                f.slots.insert(
                    SlotKey {
                        group: group(p.id, local == 1),
                        slot: i as u32,
                    },
                    *bid,
                );
            }
        }
        for fe in &p.frontends {
            f.revnat.insert(fe.id, fe.rev);
            for (k, v) in &fe.entries {
                f.svc.insert(*k, *v);
            }
        }
    }
    for (k, v) in &c.echo {
        f.svc.insert(*k, *v);
    }
    f
}

/// Map operations of one apply, executed in field order: everything a new or changed frontend
/// points at is written before the frontend, and removed only after it.
#[derive(Debug, Default)]
pub struct Ops {
    pub info_up: Vec<(u32, SvcPortInfo)>,
    pub revnat_up: Vec<(u32, RevNat)>,
    pub backends_up: Vec<(u32, Backend)>,
    pub slots_up: Vec<(SlotKey, Slot)>,
    pub svc_up: Vec<(SvcKey, Service)>,
    pub svc_del: Vec<SvcKey>,
    pub slots_del: Vec<SlotKey>,
    pub backends_del: Vec<u32>,
    pub revnat_del: Vec<u32>,
    pub info_del: Vec<u32>,
    /// Removed UDP backends: their conntrack entries are flushed (as kube-proxy does; TCP
    /// connections drain on their own).
    pub udp_backends_gone: Vec<u32>,
}

impl Ops {
    pub fn writes(&self) -> usize {
        self.info_up.len()
            + self.revnat_up.len()
            + self.backends_up.len()
            + self.slots_up.len()
            + self.svc_up.len()
    }

    pub fn deletes(&self) -> usize {
        self.svc_del.len()
            + self.slots_del.len()
            + self.backends_del.len()
            + self.revnat_del.len()
            + self.info_del.len()
    }

    /// A frontend key may move between Services in one apply: never delete what is written.
    pub fn settle(&mut self) {
        if self.svc_del.is_empty() || self.svc_up.is_empty() {
            return;
        }
        let up: BTreeSet<SvcKey> = self.svc_up.iter().map(|(k, _)| *k).collect();
        self.svc_del.retain(|k| !up.contains(k));
    }
}

/// Appends to `ops` what turns `old`'s entries into `new`'s, and releases ids `new` no longer
/// uses.
pub fn diff(old: Option<&Contribution>, new: Option<&Contribution>, ops: &mut Ops, ids: &mut Ids) {
    match (old, new) {
        (None, None) => {}
        // A new Service (the bulk of a first apply): everything is written, nothing compared.
        (None, Some(n)) => {
            for p in &n.ports {
                ops.info_up.push((p.id, p.info));
                for fe in &p.frontends {
                    ops.revnat_up.push((fe.id, fe.rev));
                }
                ops.backends_up.extend_from_slice(&p.backends);
                for (local, list) in p.slots.iter().enumerate() {
                    ops.slots_up.extend(list.iter().enumerate().map(|(i, bid)| {
                        (
                            SlotKey {
                                group: group(p.id, local == 1),
                                slot: i as u32,
                            },
                            Slot { backend: *bid },
                        )
                    }));
                }
                for fe in &p.frontends {
                    ops.svc_up.extend_from_slice(&fe.entries);
                }
            }
            ops.svc_up.extend_from_slice(&n.echo);
        }
        (Some(o), n) => diff_flat(&flatten(Some(o)), &flatten(n), ops, ids),
    }
}

fn diff_flat(o: &Flat, n: &Flat, ops: &mut Ops, ids: &mut Ids) {
    for (k, v) in &n.info {
        if o.info.get(k) != Some(v) {
            ops.info_up.push((*k, *v));
        }
    }
    for (k, v) in &n.revnat {
        if o.revnat.get(k) != Some(v) {
            ops.revnat_up.push((*k, *v));
        }
    }
    for (k, v) in &n.backends {
        if o.backends.get(k) != Some(v) {
            ops.backends_up.push((*k, *v));
        }
    }
    for (k, v) in &n.slots {
        if o.slots.get(k) != Some(v) {
            ops.slots_up.push((*k, Slot { backend: *v }));
        }
    }
    for (k, v) in &n.svc {
        if o.svc.get(k) != Some(v) {
            ops.svc_up.push((*k, *v));
        }
    }
    for k in o.svc.keys() {
        if !n.svc.contains_key(k) {
            ops.svc_del.push(*k);
        }
    }
    for k in o.slots.keys() {
        if !n.slots.contains_key(k) {
            ops.slots_del.push(*k);
        }
    }
    for (k, b) in &o.backends {
        if !n.backends.contains_key(k) {
            ops.backends_del.push(*k);
            ids.backend.release(*k);
            if b.proto == 17 {
                ops.udp_backends_gone.push(*k);
            }
        }
    }
    for k in o.revnat.keys() {
        if !n.revnat.contains_key(k) {
            ops.revnat_del.push(*k);
            ids.frontend.release(*k);
        }
    }
    for k in o.info.keys() {
        if !n.info.contains_key(k) {
            ops.info_del.push(*k);
            ids.svc_port.release(*k);
        }
    }
}

/// Rebuilds per-Service contributions from map contents (what a restarted agent finds).
/// Entries whose service port has no name record are returned under `None`: they belong to
/// no known Service and the next apply removes them.
pub fn reconstruct(
    info: &[(u32, SvcPortInfo)],
    revnat: &[(u32, RevNat)],
    backends: &[(u32, Backend)],
    slots: &[(SlotKey, Slot)],
    svc: &[(SvcKey, Service)],
    ids: &mut Ids,
) -> BTreeMap<Option<ServiceId>, Contribution> {
    let mut ports: BTreeMap<u32, PortPlan> = BTreeMap::new();
    let mut owner: HashMap<u32, Option<ServiceId>> = HashMap::new();
    for (id, i) in info {
        ids.svc_port.mark_used(*id);
        owner.insert(*id, info_service(i));
        ports.insert(
            *id,
            PortPlan {
                key: PortKey {
                    proto: i.proto,
                    port: u16::from_be(i.port),
                },
                id: *id,
                info: *i,
                backends: Vec::new(),
                slots: [Vec::new(), Vec::new()],
                frontends: Vec::new(),
            },
        );
    }
    // Anything pointing at an unnamed service port goes to an orphan plan of that id.
    fn plan(ports: &mut BTreeMap<u32, PortPlan>, id: u32) -> &mut PortPlan {
        ports.entry(id).or_insert_with(|| PortPlan {
            key: PortKey { proto: 0, port: 0 },
            id,
            info: SvcPortInfo::default(),
            backends: Vec::new(),
            slots: [Vec::new(), Vec::new()],
            frontends: Vec::new(),
        })
    }
    for (id, b) in backends {
        ids.backend.mark_used(*id);
        plan(&mut ports, b.svc_port).backends.push((*id, *b));
    }
    for (k, s) in slots {
        let p = plan(&mut ports, k.group / 2);
        let list = &mut p.slots[(k.group % 2) as usize];
        let i = k.slot as usize;
        if list.len() <= i {
            list.resize(i + 1, 0);
        }
        list[i] = s.backend;
    }
    let mut fe_plans: BTreeMap<u32, FrontendPlan> = BTreeMap::new();
    for (id, r) in revnat {
        ids.frontend.mark_used(*id);
        fe_plans.insert(
            *id,
            FrontendPlan {
                id: *id,
                rev: *r,
                entries: Vec::new(),
            },
        );
    }
    let mut echo: Vec<(SvcKey, Service)> = Vec::new();
    let mut loose: Vec<(SvcKey, Service)> = Vec::new();
    for (k, s) in svc {
        if s.flags & svc_flags::ECHO != 0 {
            echo.push((*k, *s));
        } else if let Some(fe) = fe_plans.get_mut(&s.rev_nat) {
            fe.entries.push((*k, *s));
        } else {
            loose.push((*k, *s));
        }
    }
    for fe in fe_plans.into_values() {
        plan(&mut ports, fe.rev.svc_port).frontends.push(fe);
    }
    let mut out: BTreeMap<Option<ServiceId>, Contribution> = BTreeMap::new();
    for (id, mut p) in ports {
        p.backends.sort_by_key(|(id, _)| *id);
        let who = owner.get(&id).cloned().flatten();
        out.entry(who).or_default().ports.push(p);
    }
    for (k, s) in echo {
        let who = owner.get(&s.svc_port).cloned().flatten();
        out.entry(who).or_default().echo.push((k, s));
    }
    if !loose.is_empty() {
        // Frontends without a frontend record: keep them deletable.
        out.entry(None).or_default().echo.extend(loose);
    }
    out
}
