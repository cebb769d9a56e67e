//! From the objects in the [`Store`] to the typed desired state ([`DesiredState`]), the node
//! list routing needs and the cluster's ServiceCIDR ranges. Pure functions of the store (plus
//! the small memory in [`Reconciler`]): level-based, so the same store always yields the same
//! state, whatever order events came in.
//!
//! kube-proxy semantics, IPv6 only:
//! - Services labelled `service.kubernetes.io/service-proxy-name` with a name that is not ours,
//!   headless Services and `ExternalName` Services are skipped.
//! - IPv4 cluster IPs, external IPs, load-balancer IPs and `addressType: IPv4`/`FQDN` slices are
//!   dropped; a Service left without an IPv6 cluster IP is skipped. Each is warned about once.
//! - Endpoint conditions: `ready`/`serving` default to true, `terminating` to false (the API's
//!   nil semantics); `local` is `nodeName == ours`. An address listed in several slices counts
//!   once (its best conditions win).
//! - Slice ports are matched to Service ports by name and protocol (the EndpointSlice
//!   controller resolved named target ports already); a slice port without a number falls back
//!   to a numeric `targetPort` (hand-written static manifests).
//!
//! No window with zero backends: nothing is published before every kind has been listed once,
//! and a Service whose slices *all* vanish (the controller replaces slices by delete + create)
//! keeps its previous backends for `sliceGapHold`, unless a slice of it reappears first. A
//! Service scaled to zero still has a slice (the controller's placeholder), so that is
//! published at once.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv6Addr},
    time::{Duration, Instant},
};

use ipnet::Ipv6Net;
use k8s_openapi::{
    api::{
        core::v1::{Node, Service as K8sService, ServicePort as K8sServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointSlice},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde::Serialize;
use tracing::{debug, warn};

use crate::{
    config::ipv6_net,
    model::{
        Backend, DesiredState, NodeState, Protocol, Service, ServiceId, ServicePort, TrafficPolicy,
    },
    source::store::Store,
};

/// Label selecting which proxy implements a Service.
pub const PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Taint the cluster autoscaler puts on nodes it is about to remove (kube-proxy's healthz then
/// reports `nodeEligible: false`).
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";
/// kube-proxy's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10800);

/// Inputs that are not objects.
#[derive(Clone, Debug, Default)]
pub struct Params {
    /// Our Node's name (for `local` backends and our pod CIDR).
    pub node_name: String,
    /// Our `service-proxy-name`, if any.
    pub proxy_name: Option<String>,
    /// Node addresses known locally (the chosen node address) to add to the Node object's.
    pub local_addresses: Vec<Ipv6Addr>,
    /// [`NodeState::cluster_ips_from_outside`].
    pub cluster_ips_from_outside: bool,
}

/// A Node as routing and health care: IPv6 only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub name: String,
    /// IPv6 `InternalIP`s in the order kubelet reported them.
    pub internal_ips: Vec<Ipv6Addr>,
    pub external_ips: Vec<Ipv6Addr>,
    /// IPv6 entries of `spec.podCIDRs` (or `spec.podCIDR`).
    pub pod_cidrs: Vec<Ipv6Net>,
    /// Being deleted, or tainted for removal by the cluster autoscaler.
    pub leaving: bool,
    /// `metadata.labels` (BGP: which peers apply, whether it announces service addresses).
    pub labels: BTreeMap<String, String>,
}

impl NodeInfo {
    pub fn from_node(n: &Node) -> Self {
        let name = n.metadata.name.clone().unwrap_or_default();
        let mut internal_ips = Vec::new();
        let mut external_ips = Vec::new();
        for a in n
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
        {
            let Ok(IpAddr::V6(ip)) = a.address.parse::<IpAddr>() else {
                continue;
            };
            match a.type_.as_str() {
                "InternalIP" => internal_ips.push(ip),
                "ExternalIP" => external_ips.push(ip),
                _ => {}
            }
        }
        let spec = n.spec.as_ref();
        let mut cidrs: Vec<&String> = spec
            .and_then(|s| s.pod_cidrs.as_ref())
            .into_iter()
            .flatten()
            .collect();
        if cidrs.is_empty()
            && let Some(c) = spec.and_then(|s| s.pod_cidr.as_ref())
        {
            cidrs.push(c);
        }
        let pod_cidrs = cidrs.into_iter().filter_map(|c| ipv6_net(c)).collect();
        let tainted = spec
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.key == TO_BE_DELETED_TAINT));
        Self {
            name,
            internal_ips,
            external_ips,
            pod_cidrs,
            leaving: n.metadata.deletion_timestamp.is_some() || tainted,
            labels: n.metadata.labels.clone().unwrap_or_default(),
        }
    }
}

/// Something a source object could not contribute, with a stable key so it is logged once.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note {
    pub key: String,
    pub message: String,
    /// Operators should hear about it (IPv4-only services); otherwise debug.
    pub warn: bool,
}

/// The result of one reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub desired: DesiredState,
    pub nodes: Vec<NodeInfo>,
    /// The IPv6 ranges of the cluster's `ServiceCIDR` objects, sorted, each once (empty when
    /// they are not watched).
    pub service_cidrs: Vec<Ipv6Net>,
    pub notes: Vec<Note>,
}

impl Snapshot {
    pub fn own_node(&self) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == self.desired.node.name)
    }

    /// This node's labels (none while its Node object is unknown).
    pub fn own_labels(&self) -> BTreeMap<String, String> {
        self.own_node()
            .map(|n| n.labels.clone())
            .unwrap_or_default()
    }
}

/// Builds the snapshot of `store` (no memory: see [`Reconciler`] for the slice-gap hold).
pub fn build(store: &Store, params: &Params) -> Snapshot {
    let mut notes = Vec::new();
    let nodes: Vec<NodeInfo> = store.nodes.values().map(NodeInfo::from_node).collect();

    let mut addresses: Vec<Ipv6Addr> = params.local_addresses.clone();
    if let Some(me) = nodes.iter().find(|n| n.name == params.node_name) {
        addresses.extend(me.internal_ips.iter().chain(&me.external_ips));
    }
    let mut seen = BTreeSet::new();
    addresses.retain(|a| seen.insert(*a));

    // Slices by the Service they belong to.
    let mut slices: BTreeMap<ServiceId, Vec<&EndpointSlice>> = BTreeMap::new();
    for (key, s) in &store.slices {
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        slices
            .entry(ServiceId {
                namespace: key.namespace.clone(),
                name: svc.clone(),
            })
            .or_default()
            .push(s);
    }

    let mut services = BTreeMap::new();
    for (key, k) in &store.services {
        let id = ServiceId {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        let own = slices.get(&id).map(Vec::as_slice).unwrap_or_default();
        if let Some(s) = service(&id, k, own, params, &mut notes) {
            services.insert(id, s);
        }
    }
    notes.sort();
    notes.dedup();
    let service_cidrs: BTreeSet<Ipv6Net> = store
        .service_cidrs
        .values()
        .filter_map(|c| c.spec.as_ref()?.cidrs.as_ref())
        .flatten()
        .filter_map(|c| ipv6_net(c))
        .map(|n| n.trunc())
        .collect();
    Snapshot {
        desired: DesiredState {
            node: NodeState {
                name: params.node_name.clone(),
                addresses,
                cluster_ips_from_outside: params.cluster_ips_from_outside,
            },
            services,
        },
        nodes,
        service_cidrs: service_cidrs.into_iter().collect(),
        notes,
    }
}

fn policy(p: Option<&String>) -> TrafficPolicy {
    match p.map(String::as_str) {
        Some("Local") => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    }
}

fn protocol(p: Option<&String>) -> Option<Protocol> {
    match p.map(String::as_str) {
        None | Some("TCP") => Some(Protocol::Tcp),
        Some("UDP") => Some(Protocol::Udp),
        Some("SCTP") => Some(Protocol::Sctp),
        Some(_) => None,
    }
}

fn port16(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

/// The typed Service of `k` (with its backends from `slices`), or `None` when it is not ours
/// to program; every reason is noted.
fn service(
    id: &ServiceId,
    k: &K8sService,
    slices: &[&EndpointSlice],
    params: &Params,
    notes: &mut Vec<Note>,
) -> Option<Service> {
    let mut c = Conversion { id, params, notes };
    if c.proxied_elsewhere(k) {
        return None;
    }
    let spec = k.spec.as_ref()?;
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        return None;
    }
    let cluster_ips = c.cluster_ips(spec)?;
    let external_ips = c.v6_addrs(spec.external_ips.iter().flatten(), "external IP");
    let load_balancer_ips = if ty == "LoadBalancer" {
        c.load_balancer_ips(k)
    } else {
        Vec::new()
    };
    let external_traffic_policy = policy(spec.external_traffic_policy.as_ref());
    let health_check_node_port = (ty == "LoadBalancer"
        && external_traffic_policy == TrafficPolicy::Local)
        .then(|| spec.health_check_node_port.and_then(port16))
        .flatten();
    let usable = c.usable_slices(slices);
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| c.port(p, ty, &usable))
        .collect();
    Some(Service {
        id: id.clone(),
        cluster_ips,
        external_ips,
        load_balancer_ips,
        ports,
        external_traffic_policy,
        internal_traffic_policy: policy(spec.internal_traffic_policy.as_ref()),
        session_affinity: session_affinity(spec),
        health_check_node_port,
    })
}

/// `sessionAffinity: ClientIP`'s timeout (kube-proxy's default when unset).
fn session_affinity(spec: &ServiceSpec) -> Option<Duration> {
    (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u64::try_from(t).ok())
            .map_or(DEFAULT_AFFINITY_TIMEOUT, Duration::from_secs)
    })
}

/// One Service's conversion: what it is, our parameters, and where its notes go.
struct Conversion<'a> {
    id: &'a ServiceId,
    params: &'a Params,
    notes: &'a mut Vec<Note>,
}

impl Conversion<'_> {
    fn note(&mut self, warn: bool, key: String, message: String) {
        self.notes.push(Note { key, message, warn });
    }

    /// The IPv6 addresses in `list`, each once; IPv4 and malformed ones are noted.
    fn v6_addrs<'s>(
        &mut self,
        list: impl IntoIterator<Item = &'s String>,
        what: &str,
    ) -> Vec<Ipv6Addr> {
        let id = self.id;
        let mut out = Vec::new();
        for a in list {
            match a.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => {
                    if !out.contains(&v6) {
                        out.push(v6);
                    }
                }
                Ok(IpAddr::V4(_)) => self.note(
                    true,
                    format!("v4:{id}:{what}"),
                    format!("service {id}: ignoring IPv4 {what} {a} (sixlane is IPv6-only)"),
                ),
                Err(_) => self.note(
                    true,
                    format!("bad:{id}:{what}:{a}"),
                    format!("service {id}: {what} {a:?} is not an IP address"),
                ),
            }
        }
        out
    }

    /// Whether the Service is labelled for another proxy (kube-proxy's `service-proxy-name`).
    fn proxied_elsewhere(&mut self, k: &K8sService) -> bool {
        let Some(name) = k
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(PROXY_NAME_LABEL))
        else {
            return false;
        };
        if self.params.proxy_name.as_deref() == Some(name.as_str()) {
            return false;
        }
        let id = self.id;
        self.note(
            false,
            format!("proxy:{id}"),
            format!("service {id}: implemented by proxy {name:?}, not us; skipped"),
        );
        true
    }

    /// The IPv6 cluster IPs; `None` for a headless Service or one without an IPv6 cluster IP.
    fn cluster_ips(&mut self, spec: &ServiceSpec) -> Option<Vec<Ipv6Addr>> {
        let id = self.id;
        let mut ips: Vec<&String> = spec.cluster_ips.iter().flatten().collect();
        if ips.is_empty()
            && let Some(ip) = &spec.cluster_ip
        {
            ips.push(ip);
        }
        if ips.iter().any(|ip| ip.as_str() == "None") {
            self.note(
                false,
                format!("headless:{id}"),
                format!("service {id}: headless, nothing to program"),
            );
            return None;
        }
        let cluster_ips = self.v6_addrs(ips, "cluster IP");
        if cluster_ips.is_empty() {
            self.note(
                true,
                format!("v4only:{id}"),
                format!("service {id}: no IPv6 cluster IP (IPv4-only service); skipped"),
            );
            return None;
        }
        Some(cluster_ips)
    }

    /// The IPv6 addresses of a LoadBalancer's ingress status.
    fn load_balancer_ips(&mut self, k: &K8sService) -> Vec<Ipv6Addr> {
        let ingress = k
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        self.v6_addrs(
            ingress.into_iter().flatten().filter_map(|i| i.ip.as_ref()),
            "load-balancer IP",
        )
    }

    /// The Service's IPv6 EndpointSlices (others are noted).
    fn usable_slices<'s>(&mut self, slices: &[&'s EndpointSlice]) -> Vec<&'s EndpointSlice> {
        let id = self.id;
        slices
            .iter()
            .copied()
            .filter(|s| match s.address_type.as_str() {
                "IPv6" => true,
                other => {
                    let slice = s.metadata.name.as_deref().unwrap_or("?");
                    self.note(
                        other == "IPv4",
                        format!("slicetype:{id}:{other}"),
                        format!("service {id}: ignoring {other} EndpointSlice {slice} (sixlane is IPv6-only)"),
                    );
                    false
                }
            })
            .collect()
    }

    /// One port of a Service of type `ty`, with its backends; `None` for an unknown protocol
    /// or a port number out of range.
    fn port(
        &mut self,
        p: &K8sServicePort,
        ty: &str,
        slices: &[&EndpointSlice],
    ) -> Option<ServicePort> {
        let id = self.id;
        let name = p.name.clone().unwrap_or_default();
        let Some(proto) = protocol(p.protocol.as_ref()) else {
            self.note(
                true,
                format!("proto:{id}:{name}"),
                format!(
                    "service {id}: port {name:?} has unknown protocol {:?}; skipped",
                    p.protocol
                ),
            );
            return None;
        };
        let port = port16(p.port)?;
        let node_port = matches!(ty, "NodePort" | "LoadBalancer")
            .then(|| p.node_port.and_then(port16))
            .flatten();
        let backends = self.backends(&name, proto, p.target_port.as_ref(), port, slices);
        Some(ServicePort {
            name,
            protocol: proto,
            port,
            node_port,
            backends,
        })
    }

    /// The endpoints of one service port across `slices`, one per address and port (its best
    /// conditions win).
    fn backends(
        &mut self,
        port_name: &str,
        proto: Protocol,
        target: Option<&IntOrString>,
        service_port: u16,
        slices: &[&EndpointSlice],
    ) -> Vec<Backend> {
        let id = self.id;
        // addr/port -> best backend seen (duplicates across slices during churn).
        let mut by_addr: BTreeMap<(Ipv6Addr, u16), Backend> = BTreeMap::new();
        for s in slices {
            let Some(sp) = s.ports.iter().flatten().find(|sp| {
                sp.name.as_deref().unwrap_or("") == port_name
                    && protocol(sp.protocol.as_ref()) == Some(proto)
            }) else {
                continue;
            };
            let port = match (sp.port.and_then(port16), target) {
                (Some(p), _) => p,
                (None, Some(IntOrString::Int(t))) => match port16(*t) {
                    Some(p) => p,
                    None => continue,
                },
                (None, None) => service_port,
                (None, Some(IntOrString::String(named))) => {
                    self.note(
                        true,
                        format!("named:{id}:{port_name}"),
                        format!(
                            "service {id}: port {port_name:?} targets named port {named:?} but slice {} gives no number; its endpoints are skipped",
                            s.metadata.name.as_deref().unwrap_or("?")
                        ),
                    );
                    continue;
                }
            };
            for e in &s.endpoints {
                if let Some(b) = self.backend(e, port) {
                    let rank = |b: &Backend| (b.ready, b.serving, !b.terminating, b.local);
                    by_addr
                        .entry((b.addr, port))
                        .and_modify(|old| {
                            if rank(&b) > rank(old) {
                                *old = b.clone();
                            }
                        })
                        .or_insert(b);
                }
            }
        }
        by_addr.into_values().collect()
    }

    /// An endpoint as a backend on `port`: its first IPv6 address and its conditions (the API's
    /// nil semantics), local when on our node.
    fn backend(&self, e: &Endpoint, port: u16) -> Option<Backend> {
        let addr = e.addresses.iter().find_map(|a| match a.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => Some(v6),
            _ => None,
        })?;
        let c = e.conditions.as_ref();
        Some(Backend {
            addr,
            port,
            ready: c.and_then(|c| c.ready).unwrap_or(true),
            serving: c.and_then(|c| c.serving).unwrap_or(true),
            terminating: c.and_then(|c| c.terminating).unwrap_or(false),
            local: e.node_name.as_deref() == Some(self.params.node_name.as_str())
                && !self.params.node_name.is_empty(),
        })
    }
}

/// Reconcile with memory: logs each [`Note`] once, and holds the backends of a Service whose
/// slices all vanished (see the module docs).
#[derive(Debug, Default)]
pub struct Reconciler {
    params: Params,
    hold: Duration,
    last: Option<DesiredState>,
    /// Services with no slices right now, since when.
    gaps: BTreeMap<ServiceId, Instant>,
    logged: BTreeSet<String>,
}

/// What [`Reconciler::run`] produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub snapshot: Snapshot,
    /// Run again at this time (a held Service's grace ends).
    pub recheck_at: Option<Instant>,
    /// Services whose previous backends are being held.
    pub held: Vec<ServiceId>,
}

impl Reconciler {
    pub fn new(params: Params, hold: Duration) -> Self {
        Self {
            params,
            hold,
            ..Default::default()
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn set_local_addresses(&mut self, addrs: Vec<Ipv6Addr>) {
        self.params.local_addresses = addrs;
    }

    /// Builds the state to publish now. `None` until every kind has been listed once.
    pub fn run(&mut self, store: &Store, now: Instant) -> Option<Outcome> {
        if !store.all_synced() {
            return None;
        }
        let mut snapshot = build(store, &self.params);
        for n in &snapshot.notes {
            if self.logged.insert(n.key.clone()) {
                if n.warn {
                    warn!("{}", n.message);
                } else {
                    debug!("{}", n.message);
                }
            }
        }
        let with_slices: BTreeSet<ServiceId> = store
            .slices
            .values()
            .filter_map(|s| {
                Some(ServiceId {
                    namespace: s
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    name: s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.clone(),
                })
            })
            .collect();
        let mut held = Vec::new();
        let mut recheck_at = None;
        let mut gaps = BTreeMap::new();
        for (id, svc) in &mut snapshot.desired.services {
            if with_slices.contains(id) {
                continue;
            }
            let Some(prev) = self.last.as_ref().and_then(|l| l.services.get(id)) else {
                continue;
            };
            let had = prev.ports.iter().any(|p| !p.backends.is_empty());
            let since = self.gaps.get(id).copied().unwrap_or(now);
            if !had || now.duration_since(since) >= self.hold {
                continue;
            }
            gaps.insert(id.clone(), since);
            for p in &mut svc.ports {
                if let Some(old) = prev
                    .ports
                    .iter()
                    .find(|o| o.name == p.name && o.protocol == p.protocol)
                {
                    p.backends = old.backends.clone();
                }
            }
            let until = since + self.hold;
            recheck_at = Some(recheck_at.map_or(until, |r: Instant| r.min(until)));
            held.push(id.clone());
        }
        self.gaps = gaps;
        self.last = Some(snapshot.desired.clone());
        Some(Outcome {
            snapshot,
            recheck_at,
            held,
        })
    }
}

#[cfg(test)]
mod tests;
