//! From the Service objects in the store to the assignment's input: which Services are ours,
//! what each requests, its sharing key, ports and policy, and the address its status holds.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
};

use k8s_openapi::api::core::v1::Service as K8sService;

use super::assign::{BadRequest, LbService};
use crate::{
    model::{Protocol, ServiceId, TrafficPolicy},
    source::store::ObjKey,
};

/// Requested addresses: a comma-separated list (one IPv6 address, as sixlane gives one).
pub const REQUEST_ANNOTATION: &str = "sixlane.io/load-balancer-ips";
/// Services of one namespace with the same value share an address when their ports allow.
pub const SHARING_ANNOTATION: &str = "sixlane.io/sharing-key";

/// `type: LoadBalancer`, and `spec.loadBalancerClass` unset or `class`: sixlane assigns its
/// address. Services of another class belong to another implementation and are ignored.
pub fn is_ours(k: &K8sService, class: &str) -> bool {
    let Some(spec) = &k.spec else {
        return false;
    };
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec
            .load_balancer_class
            .as_deref()
            .is_none_or(|c| c == class)
}

/// The Services of `services` that are ours, and the first IPv6 address each one's
/// `status.loadBalancer.ingress` holds (what a writer gave it before).
pub fn services(
    services: &BTreeMap<ObjKey, K8sService>,
    class: &str,
) -> (Vec<LbService>, BTreeMap<ServiceId, Ipv6Addr>) {
    let mut out = Vec::new();
    let mut previous = BTreeMap::new();
    for (key, k) in services {
        if !is_ours(k, class) {
            continue;
        }
        let id = ServiceId {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        if let Some(a) = ingress_ips(k).into_iter().next() {
            previous.insert(id.clone(), a);
        }
        out.push(lb_service(id, k));
    }
    (out, previous)
}

/// The IPv6 addresses of a Service's `status.loadBalancer.ingress`.
pub fn ingress_ips(k: &K8sService) -> Vec<Ipv6Addr> {
    k.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| match i.ip.as_deref()?.parse() {
            Ok(IpAddr::V6(a)) => Some(a),
            _ => None,
        })
        .collect()
}

fn lb_service(id: ServiceId, k: &K8sService) -> LbService {
    let annotations = k.metadata.annotations.clone().unwrap_or_default();
    let spec = k.spec.clone().unwrap_or_default();
    LbService {
        id,
        created: k
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        labels: k.metadata.labels.clone().unwrap_or_default(),
        request: request(
            annotations.get(REQUEST_ANNOTATION).map(String::as_str),
            spec.load_balancer_ip.as_deref(),
        ),
        sharing_key: annotations
            .get(SHARING_ANNOTATION)
            .filter(|k| !k.is_empty())
            .cloned(),
        ports: spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let proto = match p.protocol.as_deref() {
                    None | Some("TCP") => Protocol::Tcp,
                    Some("UDP") => Protocol::Udp,
                    Some("SCTP") => Protocol::Sctp,
                    Some(_) => return None,
                };
                Some((proto, u16::try_from(p.port).ok()?))
            })
            .collect(),
        traffic_policy: match spec.external_traffic_policy.as_deref() {
            Some("Local") => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        },
        selector: spec.selector.unwrap_or_default(),
    }
}

/// The address requested by the annotation and/or `spec.loadBalancerIP` (empty values are
/// none); both set must agree.
fn request(annotation: Option<&str>, spec: Option<&str>) -> Result<Option<Ipv6Addr>, BadRequest> {
    let from_annotation = match annotation.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(list) => {
            let mut addrs = Vec::new();
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let a = parse(REQUEST_ANNOTATION, item)?;
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            match addrs[..] {
                [] => None,
                [a] => Some(a),
                _ => return Err(BadRequest::Several(addrs)),
            }
        }
    };
    let from_spec = match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse("spec.loadBalancerIP", s)?),
    };
    match (from_annotation, from_spec) {
        (Some(annotation), Some(spec)) if annotation != spec => {
            Err(BadRequest::Mismatch { annotation, spec })
        }
        (a, s) => Ok(a.or(s)),
    }
}

fn parse(what: &'static str, value: &str) -> Result<Ipv6Addr, BadRequest> {
    match value.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => Ok(a),
        Ok(IpAddr::V4(_)) => Err(BadRequest::Ipv4 {
            what,
            value: value.into(),
        }),
        Err(_) => Err(BadRequest::Unparsable {
            what,
            value: value.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k8s(v: serde_json::Value) -> K8sService {
        serde_json::from_value(v).unwrap()
    }

    fn lb(spec: serde_json::Value) -> K8sService {
        let mut spec = spec;
        spec["type"] = json!("LoadBalancer");
        k8s(json!({"metadata": {"name": "web", "namespace": "x"}, "spec": spec}))
    }

    #[test]
    fn ownership_type_and_class() {
        let class = "sixlane.io/lb";
        assert!(is_ours(&lb(json!({})), class));
        assert!(is_ours(&lb(json!({"loadBalancerClass": class})), class));
        assert!(
            !is_ours(&lb(json!({"loadBalancerClass": "metallb.io/x"})), class),
            "foreign class"
        );
        for ty in ["ClusterIP", "NodePort", "ExternalName"] {
            let s = k8s(json!({"metadata": {"name": "a"}, "spec": {"type": ty}}));
            assert!(!is_ours(&s, class), "{ty}");
        }
        assert!(!is_ours(&k8s(json!({"metadata": {"name": "a"}})), class));
    }

    type Requested = Result<Option<Ipv6Addr>, BadRequest>;

    #[test]
    fn requests() {
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        // (annotation, spec.loadBalancerIP, what is requested)
        type Row = (Option<&'static str>, Option<&'static str>, Requested);
        let table: &[Row] = &[
            (None, None, Ok(None)),
            (Some(""), Some(" "), Ok(None)),
            (Some("2001:db8::5"), None, Ok(Some(a("2001:db8::5")))),
            (None, Some("2001:db8::6"), Ok(Some(a("2001:db8::6")))),
            (
                Some(" 2001:db8::5 , "),
                Some("2001:db8::5"),
                Ok(Some(a("2001:db8::5"))),
            ),
            (
                Some("2001:db8::5"),
                Some("2001:db8::6"),
                Err(BadRequest::Mismatch {
                    annotation: a("2001:db8::5"),
                    spec: a("2001:db8::6"),
                }),
            ),
            (
                Some("2001:db8::5,2001:db8::6"),
                None,
                Err(BadRequest::Several(vec![
                    a("2001:db8::5"),
                    a("2001:db8::6"),
                ])),
            ),
            (
                Some("192.0.2.1,2001:db8::5"),
                None,
                Err(BadRequest::Ipv4 {
                    what: REQUEST_ANNOTATION,
                    value: "192.0.2.1".into(),
                }),
            ),
            (
                None,
                Some("web"),
                Err(BadRequest::Unparsable {
                    what: "spec.loadBalancerIP",
                    value: "web".into(),
                }),
            ),
        ];
        for (annotation, spec, want) in table {
            assert_eq!(
                &request(*annotation, *spec),
                want,
                "{annotation:?} {spec:?}"
            );
        }
    }

    #[test]
    fn services_of_the_store_with_their_status() {
        let mut store = BTreeMap::new();
        let key = |ns: &str, n: &str| ObjKey {
            namespace: ns.into(),
            name: n.into(),
        };
        store.insert(
            key("x", "web"),
            k8s(json!({
                "metadata": {"name": "web", "namespace": "x", "creationTimestamp": "2024-05-01T10:00:00Z",
                    "labels": {"tier": "web"},
                    "annotations": {REQUEST_ANNOTATION: "2001:db8::7", SHARING_ANNOTATION: "k"}},
                "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": "web"},
                    "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"ip": "2001:db8::7"}]}}
            })),
        );
        store.insert(
            key("x", "other-class"),
            k8s(
                json!({"metadata": {"name": "other-class", "namespace": "x"},
                "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}}),
            ),
        );
        store.insert(
            key("x", "plain"),
            k8s(json!({"metadata": {"name": "plain", "namespace": "x"}, "spec": {"type": "ClusterIP"}})),
        );
        let (svcs, previous) = services(&store, "sixlane.io/lb");
        assert_eq!(svcs.len(), 1);
        let s = &svcs[0];
        assert_eq!(s.id.to_string(), "x/web");
        assert_eq!(s.created, 1_714_557_600);
        assert_eq!(s.labels["tier"], "web");
        assert_eq!(s.request, Ok(Some("2001:db8::7".parse().unwrap())));
        assert_eq!(s.sharing_key.as_deref(), Some("k"));
        assert_eq!(s.ports, [(Protocol::Tcp, 80), (Protocol::Udp, 53)]);
        assert_eq!(s.traffic_policy, TrafficPolicy::Local);
        assert_eq!(s.selector["app"], "web");
        assert_eq!(previous[&s.id], "2001:db8::7".parse::<Ipv6Addr>().unwrap());
    }
}
