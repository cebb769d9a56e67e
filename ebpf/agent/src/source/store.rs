//! The objects the sources have seen, by kind. Both sources (Kubernetes watchers and the manifest
//! directory) feed the same store with the same k8s-openapi types; reconcile reads only the store.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::Node, core::v1::Service, discovery::v1::EndpointSlice,
        networking::v1::ServiceCIDR,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

/// The kinds the agent reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Service,
    EndpointSlice,
    Node,
    /// The cluster's Service ClusterIP ranges (`networking.k8s.io/v1`), which BGP announces.
    /// Watched only when BGP takes its ranges from the cluster, and never waited for: a
    /// cluster without the API (before Kubernetes 1.33) still gets its services.
    ServiceCidr,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Node,
        Kind::ServiceCidr,
    ];
    /// The kinds every source provides: nothing is published before each has been listed.
    pub const CORE: [Kind; 3] = [Kind::Service, Kind::EndpointSlice, Kind::Node];

    pub const fn name(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Node => "Node",
            Kind::ServiceCidr => "ServiceCIDR",
        }
    }
}

/// One object of a watched kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Node(Box<Node>),
    ServiceCidr(Box<ServiceCIDR>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Node(_) => Kind::Node,
            Object::ServiceCidr(_) => Kind::ServiceCidr,
        }
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::ServiceCidr(o) => &o.metadata,
        }
    }

    /// `(namespace, name)`; cluster-scoped kinds have an empty namespace.
    pub fn key(&self) -> ObjKey {
        let m = self.meta();
        let namespace = match self.kind() {
            Kind::Node | Kind::ServiceCidr => String::new(),
            _ => m.namespace.clone().unwrap_or_else(|| "default".into()),
        };
        ObjKey {
            namespace,
            name: m.name.clone().unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// What a source reports.
#[derive(Clone, Debug)]
pub enum Change {
    /// An object was added or modified.
    Apply(Object),
    /// An object was deleted.
    Delete(Object),
    /// The complete current set of a kind (a relist, or a re-read manifest directory): objects
    /// of that kind not in it are gone. Marks the kind as synced.
    Replace(Kind, Vec<Object>),
}

/// Everything seen so far, plus whether each kind has had its first complete listing (nothing
/// is published before all have: a Service without its slices would look like zero backends).
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub services: BTreeMap<ObjKey, Service>,
    pub slices: BTreeMap<ObjKey, EndpointSlice>,
    pub nodes: BTreeMap<ObjKey, Node>,
    pub service_cidrs: BTreeMap<ObjKey, ServiceCIDR>,
    synced: [bool; 4],
}

impl Store {
    /// Applies a change; returns whether the store's contents changed.
    pub fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Apply(o) => {
                let key = o.key();
                match o {
                    Object::Service(s) => put(&mut self.services, key, *s),
                    Object::EndpointSlice(s) => put(&mut self.slices, key, *s),
                    Object::Node(n) => put(&mut self.nodes, key, *n),
                    Object::ServiceCidr(c) => put(&mut self.service_cidrs, key, *c),
                }
            }
            Change::Delete(o) => {
                let key = o.key();
                match o.kind() {
                    Kind::Service => self.services.remove(&key).is_some(),
                    Kind::EndpointSlice => self.slices.remove(&key).is_some(),
                    Kind::Node => self.nodes.remove(&key).is_some(),
                    Kind::ServiceCidr => self.service_cidrs.remove(&key).is_some(),
                }
            }
            Change::Replace(kind, objs) => {
                self.synced[kind as usize] = true;
                match kind {
                    Kind::Service => replace(&mut self.services, objs, |o| match o {
                        Object::Service(s) => Some(*s),
                        _ => None,
                    }),
                    Kind::EndpointSlice => replace(&mut self.slices, objs, |o| match o {
                        Object::EndpointSlice(s) => Some(*s),
                        _ => None,
                    }),
                    Kind::Node => replace(&mut self.nodes, objs, |o| match o {
                        Object::Node(n) => Some(*n),
                        _ => None,
                    }),
                    Kind::ServiceCidr => replace(&mut self.service_cidrs, objs, |o| match o {
                        Object::ServiceCidr(c) => Some(*c),
                        _ => None,
                    }),
                }
            }
        }
    }

    pub fn synced(&self, kind: Kind) -> bool {
        self.synced[kind as usize]
    }

    /// Every core kind ([`Kind::CORE`]) has been listed completely at least once.
    pub fn all_synced(&self) -> bool {
        Kind::CORE.iter().all(|k| self.synced(*k))
    }

    pub fn len(&self, kind: Kind) -> usize {
        match kind {
            Kind::Service => self.services.len(),
            Kind::EndpointSlice => self.slices.len(),
            Kind::Node => self.nodes.len(),
            Kind::ServiceCidr => self.service_cidrs.len(),
        }
    }
}

fn put<T: PartialEq>(map: &mut BTreeMap<ObjKey, T>, key: ObjKey, value: T) -> bool {
    match map.get(&key) {
        Some(old) if *old == value => false,
        _ => {
            map.insert(key, value);
            true
        }
    }
}

fn replace<T: PartialEq>(
    map: &mut BTreeMap<ObjKey, T>,
    objs: Vec<Object>,
    unwrap: impl Fn(Object) -> Option<T>,
) -> bool {
    let mut new = BTreeMap::new();
    for o in objs {
        let key = o.key();
        if let Some(v) = unwrap(o) {
            new.insert(key, v);
        }
    }
    let changed = *map != new;
    *map = new;
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str) -> Object {
        let mut s = Service::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        Object::Service(Box::new(s))
    }

    #[test]
    fn replace_drops_objects_missing_from_the_listing_and_marks_synced() {
        let mut st = Store::default();
        assert!(!st.all_synced());
        assert!(st.apply(Change::Apply(svc("a", "x"))));
        assert!(!st.apply(Change::Apply(svc("a", "x"))), "no-op apply");
        assert!(st.apply(Change::Replace(Kind::Service, vec![svc("a", "y")])));
        assert!(st.synced(Kind::Service));
        assert_eq!(
            st.services
                .keys()
                .map(|k| k.to_string())
                .collect::<Vec<_>>(),
            ["a/y"]
        );
        assert!(!st.apply(Change::Replace(Kind::Service, vec![svc("a", "y")])));
        assert!(st.apply(Change::Delete(svc("a", "y"))));
        assert_eq!(st.len(Kind::Service), 0);
        assert!(!st.all_synced());
        st.apply(Change::Replace(Kind::EndpointSlice, vec![]));
        st.apply(Change::Replace(Kind::Node, vec![]));
        assert!(st.all_synced(), "ServiceCIDRs are not waited for");
        assert!(!st.synced(Kind::ServiceCidr));
    }
}
