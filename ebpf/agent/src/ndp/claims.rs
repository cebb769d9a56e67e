//! The LoadBalancer IPs in L2 mode (inside `ndp.prefixes`) and which of them this node could
//! answer for: those of Services with a ready endpoint on this node, whatever their
//! `externalTrafficPolicy` (so the owner never sends the traffic on to another node). A node
//! labelled `node.kubernetes.io/exclude-from-external-load-balancers` claims none.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
};

use super::config::NdpConfig;
use crate::{model::DesiredState, routing::announce::excluded};

/// What the responder needs from the cluster to decide the L2 LoadBalancer IPs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L2Input {
    /// Every L2 LoadBalancer IP of the cluster.
    pub addresses: BTreeSet<Ipv6Addr>,
    /// The ones this node can serve.
    pub claims: BTreeSet<Ipv6Addr>,
    /// The cluster's Node names: only their heartbeats count.
    pub nodes: BTreeSet<String>,
}

pub fn l2_input(
    cfg: &NdpConfig,
    desired: &DesiredState,
    labels: &BTreeMap<String, String>,
    nodes: BTreeSet<String>,
) -> L2Input {
    let mut input = L2Input {
        nodes,
        ..L2Input::default()
    };
    for svc in desired.services.values() {
        let ready_here = svc
            .ports
            .iter()
            .flat_map(|p| &p.backends)
            .any(|b| b.local && b.ready);
        for a in svc.load_balancer_ips.iter().filter(|a| cfg.covers(**a)) {
            input.addresses.insert(*a);
            if ready_here && !excluded(labels) {
                input.claims.insert(*a);
            }
        }
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Protocol, Service, ServiceId, ServicePort, TrafficPolicy};

    fn svc(name: &str, lb: &str, local_ready: bool) -> Service {
        let backend = Backend {
            addr: "fd00:10::5".parse().unwrap(),
            port: 8080,
            ready: true,
            serving: true,
            terminating: false,
            local: local_ready,
        };
        Service {
            id: ServiceId {
                namespace: "default".into(),
                name: name.into(),
            },
            cluster_ips: vec![],
            external_ips: vec![],
            load_balancer_ips: vec![lb.parse().unwrap()],
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: None,
                backends: vec![backend],
            }],
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
            session_affinity: None,
            health_check_node_port: None,
        }
    }

    #[test]
    fn claims_only_servable_l2_addresses() {
        let cfg: NdpConfig =
            serde_yaml_ng::from_str("enabled: true\nprefixes: ['2001:db8:1:2::/64']\n").unwrap();
        let mut d = DesiredState::default();
        for s in [
            svc("here", "2001:db8:1:2::b1", true),
            svc("elsewhere", "2001:db8:1:2::b2", false),
            svc("routed", "2001:db8:99::1", true),
        ] {
            d.services.insert(s.id.clone(), s);
        }
        let nodes = BTreeSet::from(["a".to_owned()]);
        let got = l2_input(&cfg, &d, &BTreeMap::new(), nodes.clone());
        let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            got.addresses,
            BTreeSet::from([ip("2001:db8:1:2::b1"), ip("2001:db8:1:2::b2")])
        );
        assert_eq!(got.claims, BTreeSet::from([ip("2001:db8:1:2::b1")]));
        assert_eq!(got.nodes, nodes);
        let labels = BTreeMap::from([(
            "node.kubernetes.io/exclude-from-external-load-balancers".to_owned(),
            String::new(),
        )]);
        assert!(l2_input(&cfg, &d, &labels, nodes).claims.is_empty());
    }
}
