//! The subsystem in static mode: from the store's Services to the desired state's
//! load-balancer addresses, the report and the metrics.

use serde_json::json;

use super::*;
use crate::{
    reconcile::{Params, build},
    source::store::{Change, Kind, Object},
};

fn service(name: &str, extra_spec: serde_json::Value, status: serde_json::Value) -> Object {
    let mut spec =
        json!({"type": "LoadBalancer", "clusterIPs": ["fd00:96::1"], "ports": [{"port": 80}]});
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    Object::Service(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "x"},
            "spec": spec,
            "status": status,
        }))
        .unwrap(),
    ))
}

fn store(objects: Vec<Object>) -> Store {
    let mut s = Store::default();
    s.apply(Change::Replace(Kind::Service, objects));
    s.apply(Change::Replace(Kind::EndpointSlice, vec![]));
    s.apply(Change::Replace(Kind::Node, vec![]));
    s
}

fn config(enabled: bool) -> LbConfig {
    let c = crate::config::Config::parse(&format!(
        "loadBalancer:\n  enabled: {enabled}\n  pools:\n  - {{name: p, cidrs: ['2001:db8::/120']}}\n"
    ))
    .unwrap();
    c.load_balancer
}

fn lb_ips(d: &DesiredState, name: &str) -> Vec<String> {
    let id = ServiceId {
        namespace: "x".into(),
        name: name.into(),
    };
    d.services[&id]
        .load_balancer_ips
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn static_mode_puts_the_assignments_into_the_desired_state() {
    let st = store(vec![
        service("web", json!({}), json!({})),
        service(
            "kept",
            json!({}),
            json!({"loadBalancer": {"ingress": [{"ip": "2001:db8::9"}]}}),
        ),
        service(
            "bad",
            json!({"loadBalancerIP": "2001:db8:5::1"}),
            json!({"loadBalancer": {"ingress": [{"ip": "2001:db8:5::1"}]}}),
        ),
        service(
            "foreign",
            json!({"loadBalancerClass": "example.com/lb"}),
            json!({"loadBalancer": {"ingress": [{"ip": "2001:db8:7::1"}]}}),
        ),
    ]);
    let mut desired = build(&st, &Params::default()).desired;
    let mut lb = LoadBalancing::new(&config(true), None);
    lb.reconcile(&st, &mut desired);
    assert_eq!(lb_ips(&desired, "web"), ["2001:db8::1"]);
    assert_eq!(
        lb_ips(&desired, "kept"),
        ["2001:db8::9"],
        "kept from status"
    );
    assert!(
        lb_ips(&desired, "bad").is_empty(),
        "pending: status not served"
    );
    assert_eq!(
        lb_ips(&desired, "foreign"),
        ["2001:db8:7::1"],
        "another class's"
    );

    let r = lb.report().unwrap();
    assert_eq!(r.writer, report::Writer::Static);
    assert_eq!(r.assigned.len(), 2);
    assert_eq!(r.pending.len(), 1);
    assert_eq!(r.pending[0].service, "x/bad");
    assert_eq!(r.pending[0].reason, "AddressNotInPool");
    assert_eq!((r.pools[0].used, r.pools[0].services), (2, 2));

    let mut registry = prometheus_client::registry::Registry::with_prefix("sixlane");
    registry.register_collector(Box::new(lb.collector()));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for want in [
        "sixlane_lb_assigned{pool=\"p\"} 2",
        "sixlane_lb_pending 1",
        "sixlane_lb_leader 0",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
}

#[test]
fn off_changes_nothing() {
    let st = store(vec![service("web", json!({}), json!({}))]);
    let mut desired = build(&st, &Params::default()).desired;
    let before = desired.clone();
    let mut lb = LoadBalancing::new(&config(false), None);
    lb.reconcile(&st, &mut desired);
    assert_eq!(desired, before);
    assert_eq!(lb.report(), None);
}

#[test]
fn static_mode_keeps_addresses_when_a_service_sorting_first_is_added() {
    let mut lb = LoadBalancing::new(&config(true), None);
    let st = store(vec![service("web", json!({}), json!({}))]);
    let mut desired = build(&st, &Params::default()).desired;
    lb.reconcile(&st, &mut desired);
    assert_eq!(lb_ips(&desired, "web"), ["2001:db8::1"]);

    // "api" sorts before "web" (static manifests have no creation time): without the last
    // run's addresses it would take ::1 and move web.
    let st = store(vec![
        service("api", json!({}), json!({})),
        service("web", json!({}), json!({})),
    ]);
    let mut desired = build(&st, &Params::default()).desired;
    lb.reconcile(&st, &mut desired);
    assert_eq!(lb_ips(&desired, "web"), ["2001:db8::1"]);
    assert_eq!(lb_ips(&desired, "api"), ["2001:db8::2"]);

    // web deleted: its address is free again for the next Service.
    let st = store(vec![
        service("api", json!({}), json!({})),
        service("next", json!({}), json!({})),
    ]);
    let mut desired = build(&st, &Params::default()).desired;
    lb.reconcile(&st, &mut desired);
    assert_eq!(lb_ips(&desired, "api"), ["2001:db8::2"]);
    assert_eq!(lb_ips(&desired, "next"), ["2001:db8::1"]);
}
