//! Which Services get a status write, what it says, and when an Event goes with it.

use serde_json::json;

use super::*;
use crate::lb::assign::{Block, Reason};

const CLASS: &str = "sixlane.io/lb";

fn pools() -> Vec<Pool> {
    vec![Pool {
        name: "p".into(),
        blocks: vec![Block::from_cidr("2001:db8::/120".parse().unwrap())],
        namespaces: vec![],
        selector: BTreeMap::new(),
        auto_assign: true,
    }]
}

fn key(name: &str) -> ObjKey {
    ObjKey {
        namespace: "x".into(),
        name: name.into(),
    }
}

fn id(name: &str) -> ServiceId {
    ServiceId {
        namespace: "x".into(),
        name: name.into(),
    }
}

/// A LoadBalancer Service (or `ty`) at version 5, generation 2, with `status`.
fn svc(name: &str, ty: &str, status: serde_json::Value) -> K8sService {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "x", "uid": "u1", "resourceVersion": "5", "generation": 2},
        "spec": {"type": ty},
        "status": status,
    }))
    .unwrap()
}

fn condition(status: &str, reason: &str, message: &str, generation: i64) -> serde_json::Value {
    json!({"type": CONDITION, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": generation})
}

fn assigned() -> Outcome {
    Outcome::Assigned("2001:db8::1".parse().unwrap())
}

fn exhausted() -> Outcome {
    Outcome::Pending(Reason::Exhausted(vec!["p".into()]))
}

fn run(services: &[(&str, K8sService)], outcomes: &[(&str, Outcome)]) -> Vec<StatusUpdate> {
    let services = services.iter().map(|(n, s)| (key(n), s.clone())).collect();
    let outcomes = outcomes.iter().map(|(n, o)| (id(n), o.clone())).collect();
    updates(&services, CLASS, &outcomes, &pools())
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

#[test]
fn a_new_assignment_is_written_with_its_condition() {
    let u = run(
        &[("web", svc("web", "LoadBalancer", json!({})))],
        &[("web", assigned())],
    );
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].resource_version.as_deref(), Some("5"));
    let body = apply_body(&u[0], now());
    assert_eq!(
        body,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "x", "resourceVersion": "5"},
            "status": {
                "loadBalancer": {"ingress": [{"ip": "2001:db8::1"}]},
                "conditions": [{
                    "type": CONDITION, "status": "True", "reason": "IPAssigned",
                    "message": "2001:db8::1 from pool p",
                    "lastTransitionTime": "2027-01-15T08:00:00Z", "observedGeneration": 2
                }]
            }
        })
    );
    assert!(
        event(&u[0], "node-a", now()).is_none(),
        "no Event for an assignment"
    );
}

#[test]
fn a_status_that_says_it_already_is_not_written() {
    let status = json!({
        "loadBalancer": {"ingress": [{"ip": "2001:db8::1"}]},
        "conditions": [condition("True", "IPAssigned", "2001:db8::1 from pool p", 2)]
    });
    let u = run(
        &[("web", svc("web", "LoadBalancer", status))],
        &[("web", assigned())],
    );
    assert_eq!(u, []);
}

#[test]
fn a_new_generation_is_written_keeping_the_transition_time() {
    let status = json!({
        "loadBalancer": {"ingress": [{"ip": "2001:db8::1"}]},
        "conditions": [condition("True", "IPAssigned", "2001:db8::1 from pool p", 1)]
    });
    let u = run(
        &[("web", svc("web", "LoadBalancer", status))],
        &[("web", assigned())],
    );
    assert_eq!(u.len(), 1);
    let c = &apply_body(&u[0], now())["status"]["conditions"][0];
    assert_eq!(c["lastTransitionTime"], "2025-01-01T00:00:00Z");
    assert_eq!(c["observedGeneration"], 2);
}

#[test]
fn another_address_in_status_is_replaced() {
    let status = json!({
        "loadBalancer": {"ingress": [{"ip": "2001:db8::7"}, {"hostname": "x.example"}]},
        "conditions": [condition("True", "IPAssigned", "2001:db8::1 from pool p", 2)]
    });
    let u = run(
        &[("web", svc("web", "LoadBalancer", status))],
        &[("web", assigned())],
    );
    assert_eq!(u.len(), 1);
    assert_eq!(
        apply_body(&u[0], now())["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "2001:db8::1"}])
    );
}

#[test]
fn pending_is_written_with_an_event_once() {
    let u = run(
        &[("web", svc("web", "LoadBalancer", json!({})))],
        &[("web", exhausted())],
    );
    assert_eq!(u.len(), 1);
    let body = apply_body(&u[0], now());
    assert_eq!(body["status"]["loadBalancer"], json!({"ingress": []}));
    let c = &body["status"]["conditions"][0];
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&json!("False"), &json!("PoolExhausted"))
    );
    assert_eq!(c["message"], "no free address left in pool p");
    let ev = event(&u[0], "node-a", now()).unwrap();
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.reason.as_deref(), Some("PoolExhausted"));
    assert_eq!(ev.note.as_deref(), Some("no free address left in pool p"));
    assert_eq!(ev.reporting_instance.as_deref(), Some("node-a"));
    assert_eq!(ev.metadata.generate_name.as_deref(), Some("web."));
    let regarding = ev.regarding.unwrap();
    assert_eq!(
        (
            regarding.kind.as_deref(),
            regarding.name.as_deref(),
            regarding.uid.as_deref()
        ),
        (Some("Service"), Some("web"), Some("u1"))
    );

    // Written: nothing more, no second Event.
    let status = json!({
        "loadBalancer": {},
        "conditions": [condition("False", "PoolExhausted", "no free address left in pool p", 2)]
    });
    let u = run(
        &[("web", svc("web", "LoadBalancer", status.clone()))],
        &[("web", exhausted())],
    );
    assert_eq!(u, []);
    // Pending for another reason: written, with an Event.
    let other = Outcome::Pending(Reason::NotInPool("2001:db8:9::1".parse().unwrap()));
    let u = run(
        &[("web", svc("web", "LoadBalancer", status))],
        &[("web", other)],
    );
    assert!(matches!(u[0].change, Change::Set { event: true, .. }));
}

#[test]
fn a_service_that_is_no_longer_ours_loses_what_we_wrote() {
    let ours = json!({"conditions": [condition("True", "IPAssigned", "m", 2)]});
    let u = run(&[("web", svc("web", "ClusterIP", ours))], &[]);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].change, Change::Release);
    assert_eq!(
        apply_body(&u[0], now()),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "x", "resourceVersion": "5"}, "status": {}})
    );
    // Never ours: nothing to do.
    let u = run(&[("web", svc("web", "ClusterIP", json!({})))], &[]);
    assert_eq!(u, []);
}

#[test]
fn shared_addresses_name_each_other() {
    let u = run(
        &[
            ("a", svc("a", "LoadBalancer", json!({}))),
            ("b", svc("b", "LoadBalancer", json!({}))),
        ],
        &[("a", assigned()), ("b", assigned())],
    );
    let Change::Set { condition, .. } = &u[0].change else {
        panic!()
    };
    assert_eq!(
        condition.message,
        "2001:db8::1 from pool p, shared with x/b"
    );
}
