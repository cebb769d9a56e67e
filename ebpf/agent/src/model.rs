//! The desired state of the service datapath: what the agent's sources (Kubernetes watchers or
//! static manifests) produce and what the map programmer consumes. Plain data, no kernel: the
//! reconcile logic and its tests never need root.
//!
//! Semantics follow kube-proxy: backends carry their EndpointSlice conditions and the datapath
//! picks ready ones, falling back to serving-and-terminating ones only when no backend is ready;
//! `local` backends are the ones on this node (for the `Local` traffic policies).

use std::{collections::BTreeMap, net::Ipv6Addr, time::Duration};

use serde::{Deserialize, Serialize};

/// A Service's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceId {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// IANA protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// One endpoint address and port for a service port, with its EndpointSlice conditions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Backend {
    pub addr: Ipv6Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// Runs on this node (the EndpointSlice's `nodeName` is ours).
    pub local: bool,
}

/// One `spec.ports[]` entry with its resolved backends (target port already applied).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    pub backends: Vec<Backend>,
}

/// A Service as the datapath needs it. IPv4 addresses never get here: sources drop them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: ServiceId,
    pub cluster_ips: Vec<Ipv6Addr>,
    pub external_ips: Vec<Ipv6Addr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<Ipv6Addr>,
    pub ports: Vec<ServicePort>,
    pub external_traffic_policy: TrafficPolicy,
    pub internal_traffic_policy: TrafficPolicy,
    /// `sessionAffinity: ClientIP` with its timeout (kube-proxy's default is 10800 s).
    pub session_affinity: Option<Duration>,
    pub health_check_node_port: Option<u16>,
}

/// This node, as far as services care.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    /// Addresses NodePorts answer on (kube-proxy's default: the node's own addresses).
    pub addresses: Vec<Ipv6Addr>,
    /// ClusterIPs answer clients outside the cluster too: their ranges are announced over BGP,
    /// so routers send such clients to any node. As with external IPs, a client from outside
    /// reaching a backend on another node is source-NATed to this node (the backend's answer
    /// must come back through the node that translated the request).
    #[serde(default)]
    pub cluster_ips_from_outside: bool,
}

/// Everything the service datapath should implement right now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub node: NodeState,
    pub services: BTreeMap<ServiceId, Service>,
}
