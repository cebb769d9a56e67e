//! LoadBalancer IP assignment as a pure function: the Services that are ours, the pools, and
//! the addresses their status already holds in; an [`Outcome`] per Service out. No I/O: the
//! daemon runs it on every reconcile, the Lease holder writes what it says (`lb::writer`), and
//! static mode puts it straight into the desired state.
//!
//! Rules, in the order they are applied (Services ordered oldest first, then by name, so the
//! result does not depend on the order they are listed in):
//! 1. Kept: an address a Service's status already holds stays while it is still valid (inside a
//!    pool that serves the Service, not reserved, what the Service requests if it requests one,
//!    and not held by an older Service it cannot share with). Assignments survive restarts and
//!    a change of writer, and a lower free address never moves a Service.
//! 2. Requested (`sixlane.io/load-balancer-ips`, or the deprecated `spec.loadBalancerIP`):
//!    honoured if the address is in a pool that serves the Service, is not reserved, and is free
//!    or shared compatibly; otherwise the Service is pending with the reason.
//! 3. Automatic: with a sharing key, the lowest address compatible Services of that key hold;
//!    else the lowest free address of the first pool (in configuration order) that serves the
//!    Service and assigns automatically. None left: pending, never a duplicate.
//!
//! Sharing (`sixlane.io/sharing-key`): Services of one namespace with the same key share an
//! address when no (protocol, port) of theirs clash and they have the same
//! `externalTrafficPolicy` — with `Local`, also the same pod selector: the address is announced
//! from the nodes with a local endpoint, which must then serve every Service on it.
//!
//! Never assigned: the subnet-router anycast address (RFC 4291 §2.6.1) of a pool's CIDR and of
//! every /64, which routers answer themselves.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv6Addr,
};

use ipnet::Ipv6Net;

use crate::model::{Protocol, ServiceId, TrafficPolicy};

/// A contiguous run of addresses of a pool: a CIDR or a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub first: Ipv6Addr,
    pub last: Ipv6Addr,
    /// The CIDR the block was written as: its network address is reserved too.
    pub cidr: Option<Ipv6Net>,
}

impl Block {
    pub fn from_cidr(net: Ipv6Net) -> Self {
        Self {
            first: net.network(),
            last: net.broadcast(),
            cidr: Some(net),
        }
    }

    pub fn range(first: Ipv6Addr, last: Ipv6Addr) -> Self {
        Self {
            first,
            last,
            cidr: None,
        }
    }

    pub fn contains(&self, a: Ipv6Addr) -> bool {
        (self.first..=self.last).contains(&a)
    }

    pub fn overlaps(&self, other: &Block) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// A subnet-router anycast address: all-zeros host part of its /64, or of the block's CIDR
    /// (a /127 or /128 has none: RFC 6164).
    pub fn reserved(&self, a: Ipv6Addr) -> bool {
        let bits = u128::from(a);
        bits & u128::from(u64::MAX) == 0
            || self
                .cidr
                .is_some_and(|n| n.prefix_len() < 127 && n.network() == a)
    }

    /// Addresses that can be assigned.
    pub fn size(&self) -> u128 {
        let (f, l) = (u128::from(self.first), u128::from(self.last));
        let total = (l - f).saturating_add(1);
        // /64 boundaries inside the block, plus the CIDR's network address if not one of them.
        let step = 1u128 << 64;
        let boundaries = (l / step + 1) - f.div_ceil(step);
        let network = self.cidr.is_some_and(|n| {
            n.prefix_len() < 127 && u128::from(n.network()) & u128::from(u64::MAX) != 0
        });
        total - boundaries - u128::from(network)
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cidr {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "{}-{}", self.first, self.last),
        }
    }
}

/// An address pool (`loadBalancer.pools[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub blocks: Vec<Block>,
    /// Only Services of these namespaces; empty: every namespace.
    pub namespaces: Vec<String>,
    /// Only Services with these labels (`matchLabels`); empty: every Service.
    pub selector: BTreeMap<String, String>,
    /// Assign addresses to Services that request none; false: only requested addresses.
    pub auto_assign: bool,
}

impl Pool {
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        self.blocks.iter().any(|b| b.contains(a))
    }

    pub fn size(&self) -> u128 {
        self.blocks
            .iter()
            .map(Block::size)
            .fold(0, u128::saturating_add)
    }

    /// Whether this pool may give `s` an address, and why not.
    pub fn serves(&self, s: &LbService) -> Result<(), Ineligible> {
        if !self.namespaces.is_empty() && !self.namespaces.contains(&s.id.namespace) {
            return Err(Ineligible::Namespace(self.namespaces.clone()));
        }
        if self
            .selector
            .iter()
            .any(|(k, v)| s.labels.get(k) != Some(v))
        {
            return Err(Ineligible::Selector(self.selector.clone()));
        }
        Ok(())
    }

    fn reserved(&self, a: Ipv6Addr) -> bool {
        self.blocks.iter().any(|b| b.contains(a) && b.reserved(a))
    }
}

/// A Service of ours (`type: LoadBalancer`, our class or none) as the assignment needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbService {
    pub id: ServiceId,
    /// `metadata.creationTimestamp` (Unix seconds; 0 when unknown, as in static manifests):
    /// the older of two Services claiming one address keeps it.
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    /// The address asked for, if any.
    pub request: Result<Option<Ipv6Addr>, BadRequest>,
    pub sharing_key: Option<String>,
    /// `spec.ports[]` as (protocol, port).
    pub ports: Vec<(Protocol, u16)>,
    pub traffic_policy: TrafficPolicy,
    /// `spec.selector`: Services with `externalTrafficPolicy: Local` share only with the same.
    pub selector: BTreeMap<String, String>,
}

/// What a Service gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Assigned(Ipv6Addr),
    Pending(Reason),
}

/// A request that names no single IPv6 address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadRequest {
    /// `what` (the annotation or `spec.loadBalancerIP`) holds something that is not an address.
    Unparsable {
        what: &'static str,
        value: String,
    },
    Ipv4 {
        what: &'static str,
        value: String,
    },
    /// sixlane gives a Service one IPv6 address.
    Several(Vec<Ipv6Addr>),
    /// The annotation and `spec.loadBalancerIP` disagree.
    Mismatch {
        annotation: Ipv6Addr,
        spec: Ipv6Addr,
    },
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRequest::Unparsable { what, value } => {
                write!(f, "{what}: {value:?} is not an IP address")
            }
            BadRequest::Ipv4 { what, value } => write!(
                f,
                "{what}: {value} is an IPv4 address (sixlane assigns IPv6 only)"
            ),
            BadRequest::Several(a) => write!(
                f,
                "{} addresses requested ({}); a Service gets one IPv6 address",
                a.len(),
                join(a)
            ),
            BadRequest::Mismatch { annotation, spec } => write!(
                f,
                "the annotation requests {annotation} but spec.loadBalancerIP {spec}"
            ),
        }
    }
}

/// Why a pool does not serve a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ineligible {
    Namespace(Vec<String>),
    Selector(BTreeMap<String, String>),
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ineligible::Namespace(ns) => write!(f, "serves namespaces {} only", ns.join(", ")),
            Ineligible::Selector(sel) => {
                let labels: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "serves Services labelled {} only", labels.join(","))
            }
        }
    }
}

/// Why two Services cannot share an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unshareable {
    /// Not the same sharing key in the same namespace (or none).
    NoSharingKey,
    PortClash {
        protocol: Protocol,
        port: u16,
    },
    TrafficPolicy,
    /// Both `externalTrafficPolicy: Local`, selecting different pods.
    Selector,
}

impl fmt::Display for Unshareable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unshareable::NoSharingKey => f.write_str("no common sharing key"),
            Unshareable::PortClash { protocol, port } => {
                let p = match protocol {
                    Protocol::Tcp => "TCP",
                    Protocol::Udp => "UDP",
                    Protocol::Sctp => "SCTP",
                };
                write!(f, "both use {p} port {port}")
            }
            Unshareable::TrafficPolicy => f.write_str("their externalTrafficPolicy differs"),
            Unshareable::Selector => {
                f.write_str("both have externalTrafficPolicy Local but select different pods")
            }
        }
    }
}

/// Why a Service has no address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    BadRequest(BadRequest),
    NotInPool(Ipv6Addr),
    PoolIneligible {
        addr: Ipv6Addr,
        pool: String,
        why: Ineligible,
    },
    Reserved {
        addr: Ipv6Addr,
        pool: String,
    },
    InUse {
        addr: Ipv6Addr,
        by: ServiceId,
        why: Unshareable,
    },
    /// No pool serves the Service: each pool and why.
    NoPool(Vec<(String, Ineligible)>),
    /// The pools that serve it only assign requested addresses.
    AutoAssignOff(Vec<String>),
    /// Every address of these pools is taken.
    Exhausted(Vec<String>),
}

impl Reason {
    /// The condition's `reason` (CamelCase, as the API wants it).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::BadRequest(_) => "InvalidRequest",
            Reason::NotInPool(_) => "AddressNotInPool",
            Reason::PoolIneligible { .. } => "PoolNotEligible",
            Reason::Reserved { .. } => "AddressReserved",
            Reason::InUse { .. } => "AddressInUse",
            Reason::NoPool(_) => "NoEligiblePool",
            Reason::AutoAssignOff(_) => "AutoAssignDisabled",
            Reason::Exhausted(_) => "PoolExhausted",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::BadRequest(b) => write!(f, "{b}"),
            Reason::NotInPool(a) => write!(f, "requested {a} is in no pool"),
            Reason::PoolIneligible { addr, pool, why } => {
                write!(f, "requested {addr} is in pool {pool}, which {why}")
            }
            Reason::Reserved { addr, pool } => write!(
                f,
                "requested {addr} is a subnet-router anycast address of pool {pool}"
            ),
            Reason::InUse { addr, by, why } => {
                write!(f, "requested {addr} is assigned to {by} ({why})")
            }
            Reason::NoPool(pools) if pools.is_empty() => f.write_str("no pool is configured"),
            Reason::NoPool(pools) => {
                let each: Vec<String> = pools.iter().map(|(p, why)| format!("{p} {why}")).collect();
                write!(f, "no pool serves this Service: {}", each.join("; "))
            }
            Reason::AutoAssignOff(pools) => write!(
                f,
                "pool {} only assigns requested addresses (annotate sixlane.io/load-balancer-ips)",
                pools.join(", ")
            ),
            Reason::Exhausted(pools) => {
                write!(f, "no free address left in pool {}", pools.join(", "))
            }
        }
    }
}

fn join(a: &[Ipv6Addr]) -> String {
    a.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `a` may share an address with `b`.
fn shareable(a: &LbService, b: &LbService) -> Result<(), Unshareable> {
    if a.id.namespace != b.id.namespace || a.sharing_key.is_none() || a.sharing_key != b.sharing_key
    {
        return Err(Unshareable::NoSharingKey);
    }
    if let Some(&(protocol, port)) = a.ports.iter().find(|p| b.ports.contains(p)) {
        return Err(Unshareable::PortClash { protocol, port });
    }
    match (a.traffic_policy, b.traffic_policy) {
        (TrafficPolicy::Cluster, TrafficPolicy::Cluster) => Ok(()),
        (TrafficPolicy::Local, TrafficPolicy::Local) if a.selector == b.selector => Ok(()),
        (TrafficPolicy::Local, TrafficPolicy::Local) => Err(Unshareable::Selector),
        _ => Err(Unshareable::TrafficPolicy),
    }
}

/// Assigns an address to every Service in `services` (all of them ours), keeping the addresses
/// in `previous` (from their status) while valid. See the module docs for the rules.
pub fn assign(
    services: &[LbService],
    pools: &[Pool],
    previous: &BTreeMap<ServiceId, Ipv6Addr>,
) -> BTreeMap<ServiceId, Outcome> {
    let mut order: Vec<&LbService> = services.iter().collect();
    order.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    let mut st = State {
        pools,
        holders: BTreeMap::new(),
        cursors: BTreeMap::new(),
        out: BTreeMap::new(),
    };
    for &s in &order {
        let Some(&a) = previous.get(&s.id) else {
            continue;
        };
        let as_requested = match s.request {
            Ok(None) => true,
            Ok(Some(r)) => r == a,
            Err(_) => false,
        };
        if as_requested && st.check(s, a).is_ok() {
            st.take(s, a);
        }
    }
    for &s in &order {
        if st.out.contains_key(&s.id) {
            continue;
        }
        match &s.request {
            Err(bad) => st.pending(s, Reason::BadRequest(bad.clone())),
            Ok(Some(a)) => match st.check(s, *a) {
                Ok(()) => st.take(s, *a),
                Err(why) => st.pending(s, why),
            },
            Ok(None) => {}
        }
    }
    for &s in &order {
        if !st.out.contains_key(&s.id) {
            st.automatic(s);
        }
    }
    st.out
}

struct State<'a> {
    pools: &'a [Pool],
    /// Addresses given out so far, with the Services holding each.
    holders: BTreeMap<Ipv6Addr, Vec<&'a LbService>>,
    /// Per (pool, block): every address below is taken or reserved (the search for a free one
    /// resumes there; addresses are only ever added during one run).
    cursors: BTreeMap<(usize, usize), u128>,
    out: BTreeMap<ServiceId, Outcome>,
}

impl<'a> State<'a> {
    fn take(&mut self, s: &'a LbService, a: Ipv6Addr) {
        self.holders.entry(a).or_default().push(s);
        self.out.insert(s.id.clone(), Outcome::Assigned(a));
    }

    fn pending(&mut self, s: &LbService, why: Reason) {
        self.out.insert(s.id.clone(), Outcome::Pending(why));
    }

    /// Whether `s` may have `a`: in a pool that serves it, not reserved, free or shareable.
    fn check(&self, s: &LbService, a: Ipv6Addr) -> Result<(), Reason> {
        let Some(pool) = self.pools.iter().find(|p| p.contains(a)) else {
            return Err(Reason::NotInPool(a));
        };
        pool.serves(s).map_err(|why| Reason::PoolIneligible {
            addr: a,
            pool: pool.name.clone(),
            why,
        })?;
        if pool.reserved(a) {
            return Err(Reason::Reserved {
                addr: a,
                pool: pool.name.clone(),
            });
        }
        self.shares(s, a)
    }

    /// Whether `s` can join the holders of `a` (none: yes).
    fn shares(&self, s: &LbService, a: Ipv6Addr) -> Result<(), Reason> {
        for h in self.holders.get(&a).into_iter().flatten() {
            shareable(s, h).map_err(|why| Reason::InUse {
                addr: a,
                by: h.id.clone(),
                why,
            })?;
        }
        Ok(())
    }

    /// Rule 3: an address for a Service that requests none.
    fn automatic(&mut self, s: &'a LbService) {
        let mut ineligible = Vec::new();
        let mut eligible = Vec::new();
        for (i, p) in self.pools.iter().enumerate() {
            match p.serves(s) {
                Ok(()) => eligible.push(i),
                Err(why) => ineligible.push((p.name.clone(), why)),
            }
        }
        if eligible.is_empty() {
            return self.pending(s, Reason::NoPool(ineligible));
        }
        let auto: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|&i| self.pools[i].auto_assign)
            .collect();
        let names = |idx: &[usize]| idx.iter().map(|&i| self.pools[i].name.clone()).collect();
        if auto.is_empty() {
            return self.pending(s, Reason::AutoAssignOff(names(&eligible)));
        }
        if s.sharing_key.is_some()
            && let Some(a) = self.shared_address(s, &auto)
        {
            return self.take(s, a);
        }
        match auto.iter().find_map(|&i| self.free_address(i)) {
            Some(a) => self.take(s, a),
            None => self.pending(s, Reason::Exhausted(names(&auto))),
        }
    }

    /// The lowest address in `pools` whose holders `s` can share with.
    fn shared_address(&self, s: &LbService, pools: &[usize]) -> Option<Ipv6Addr> {
        self.holders.keys().copied().find(|&a| {
            pools.iter().any(|&i| self.pools[i].contains(a)) && self.shares(s, a).is_ok()
        })
    }

    /// The lowest free, unreserved address of pool `i`.
    fn free_address(&mut self, i: usize) -> Option<Ipv6Addr> {
        let pools = self.pools;
        for (j, b) in pools[i].blocks.iter().enumerate() {
            let last = u128::from(b.last);
            let cursor = self.cursors.entry((i, j)).or_insert(u128::from(b.first));
            let free = (*cursor..=last)
                .map(Ipv6Addr::from)
                .find(|&a| !b.reserved(a) && !self.holders.contains_key(&a));
            match free {
                Some(a) => {
                    *cursor = u128::from(a);
                    return Some(a);
                }
                // Only the last address is looked at again next time.
                None => *cursor = last,
            }
        }
        None
    }
}

/// The pool holding `a`.
pub fn pool_of(pools: &[Pool], a: Ipv6Addr) -> Option<&Pool> {
    pools.iter().find(|p| p.contains(a))
}

/// The addresses assigned, with the Services holding each (shared ones have several).
pub fn holders(outcomes: &BTreeMap<ServiceId, Outcome>) -> BTreeMap<Ipv6Addr, BTreeSet<ServiceId>> {
    let mut m: BTreeMap<Ipv6Addr, BTreeSet<ServiceId>> = BTreeMap::new();
    for (id, o) in outcomes {
        if let Outcome::Assigned(a) = o {
            m.entry(*a).or_default().insert(id.clone());
        }
    }
    m
}

#[cfg(test)]
mod tests;
