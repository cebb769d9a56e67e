//! Reconcile from recorded Kubernetes JSON (`testdata/`, the shape `kubectl get -o json` and
//! the watch API return).

use std::path::Path;

use serde_json::json;

use super::*;
use crate::source::{
    manifests::{objects_from_value, parse_text},
    store::{Change, Kind, Object},
};

fn objects(name: &str) -> Vec<Object> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/reconcile/testdata")
        .join(name);
    parse_text(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn obj(v: serde_json::Value) -> Object {
    let mut out = Vec::new();
    objects_from_value(v, &mut out).unwrap();
    out.pop().unwrap()
}

/// A store holding `objs`, every kind synced.
fn store(objs: Vec<Object>) -> Store {
    let mut st = Store::default();
    for k in Kind::ALL {
        let of: Vec<Object> = objs.iter().filter(|o| o.kind() == k).cloned().collect();
        st.apply(Change::Replace(k, of));
    }
    st
}

fn params(node: &str) -> Params {
    Params {
        node_name: node.into(),
        proxy_name: Some("sixlane".into()),
        local_addresses: vec![],
        cluster_ips_from_outside: false,
    }
}

fn id(ns: &str, name: &str) -> ServiceId {
    ServiceId {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn be(
    addr: &str,
    port: u16,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
) -> Backend {
    Backend {
        addr: ip(addr),
        port,
        ready,
        serving,
        terminating,
        local,
    }
}

#[test]
fn cluster_ip_service_with_two_slices() {
    let snap = build(&store(objects("cluster.json")), &params("node-a"));
    let web = &snap.desired.services[&id("shop", "web")];
    assert_eq!(web.cluster_ips, [ip("fd00:10:96::1a2b")]);
    assert_eq!(web.session_affinity, Some(Duration::from_secs(600)));
    assert_eq!(web.external_traffic_policy, TrafficPolicy::Cluster);
    assert_eq!(web.health_check_node_port, None);
    let http = &web.ports[0];
    assert_eq!(
        (http.name.as_str(), http.protocol, http.port),
        ("http", Protocol::Tcp, 80)
    );
    assert_eq!(http.node_port, None);
    // The named target port ("http-alt") comes resolved in the slices (8080). The pod listed
    // in both slices counts once with its better conditions; nil conditions mean ready.
    assert_eq!(
        http.backends,
        [
            be("fd00:10:244::5", 8080, true, true, false, true),
            be("fd00:10:244::9", 8080, true, true, false, true),
            be("fd00:10:244:1::7", 8080, true, true, false, false),
        ]
    );
    let dns = &web.ports[1];
    assert_eq!((dns.protocol, dns.port), (Protocol::Udp, 53));
    assert!(dns.backends.iter().all(|b| b.port == 5353));
    assert_eq!(dns.backends.len(), 3);
}

#[test]
fn nodes_are_ipv6_only_and_own_addresses_are_collected() {
    let mut p = params("node-b");
    p.local_addresses = vec![ip("fc00:f853:ccd:e793::3"), ip("fd00::b")];
    let snap = build(&store(objects("cluster.json")), &p);
    let b = snap.own_node().unwrap();
    assert_eq!(b.internal_ips, [ip("fc00:f853:ccd:e793::3")]);
    assert_eq!(b.external_ips, [ip("2001:db8::3")]);
    assert_eq!(
        b.pod_cidrs,
        ["fd00:10:244:1::/64".parse::<Ipv6Net>().unwrap()]
    );
    assert!(b.leaving, "autoscaler taint");
    let a = snap.nodes.iter().find(|n| n.name == "node-a").unwrap();
    assert!(!a.leaving);
    assert_eq!(
        a.pod_cidrs,
        ["fd00:10:244::/64".parse::<Ipv6Net>().unwrap()]
    );
    // Local first, then the Node's InternalIP/ExternalIP, without duplicates.
    assert_eq!(
        snap.desired.node.addresses,
        [
            ip("fc00:f853:ccd:e793::3"),
            ip("fd00::b"),
            ip("2001:db8::3")
        ]
    );
    assert_eq!(snap.desired.node.name, "node-b");
}

#[test]
fn node_labels_and_service_cidrs_reach_routing() {
    let cidr = |name: &str, cidrs: &[&str]| {
        obj(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
            "metadata": {"name": name},
            "spec": {"cidrs": cidrs}
        }))
    };
    let mut objs = objects("cluster.json");
    objs.push(cidr("kubernetes", &["10.96.0.0/16", "fd00:10:96::/108"]));
    objs.push(cidr("more", &["fd00:10:97::/108"]));
    // The same range twice, and one written with host bits, count once as their network.
    objs.push(cidr("again", &["fd00:10:96::1/108"]));
    let snap = build(&store(objs), &params("node-a"));
    let a = snap.nodes.iter().find(|n| n.name == "node-a").unwrap();
    assert_eq!(a.labels["kubernetes.io/hostname"], "node-a");
    assert_eq!(
        snap.service_cidrs,
        ["fd00:10:96::/108", "fd00:10:97::/108"].map(|c| c.parse::<Ipv6Net>().unwrap())
    );
    let none = build(&store(objects("cluster.json")), &params("node-a"));
    assert!(none.service_cidrs.is_empty());
}

#[test]
fn traffic_policies_terminating_endpoints_and_health_check_node_port() {
    let snap = build(&store(objects("policies.json")), &params("node-a"));
    let ing = &snap.desired.services[&id("edge", "ingress")];
    assert_eq!(ing.external_traffic_policy, TrafficPolicy::Local);
    assert_eq!(ing.internal_traffic_policy, TrafficPolicy::Local);
    assert_eq!(ing.health_check_node_port, Some(32100));
    assert_eq!(ing.external_ips, [ip("2001:db8:1::80")]);
    assert_eq!(ing.load_balancer_ips, [ip("2001:db8:2::1")]);
    assert_eq!(ing.ports[0].node_port, Some(31443));
    assert_eq!(
        ing.ports[0].backends,
        [
            be("fd00:10:244::20", 8443, true, true, false, true),
            be("fd00:10:244::21", 8443, false, true, true, true),
            be("fd00:10:244:1::20", 8443, true, true, false, false),
        ]
    );
    // A NodePort service: no health check port without Local/LoadBalancer; unnamed port.
    let np = &snap.desired.services[&id("edge", "np")];
    assert_eq!(np.health_check_node_port, None);
    assert_eq!(np.ports[0].name, "");
    assert_eq!(np.ports[0].node_port, Some(30080));
    assert_eq!(np.ports[0].backends.len(), 1);
    assert!(!np.ports[0].backends[0].local);
    assert!(
        snap.notes
            .iter()
            .any(|n| n.warn && n.message.contains("IPv4 external IP 198.51.100.80"))
    );
    assert!(
        snap.notes
            .iter()
            .any(|n| n.message.contains("IPv4 load-balancer IP 203.0.113.9"))
    );
}

#[test]
fn dual_stack_headless_external_name_and_proxy_name_filtering() {
    let snap = build(&store(objects("dualstack.json")), &params("node-a"));
    let names: Vec<String> = snap
        .desired
        .services
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(names, ["default/dual", "default/ours"]);
    let dual = &snap.desired.services[&id("default", "dual")];
    assert_eq!(dual.cluster_ips, [ip("fd00:10:96::20")]);
    assert_eq!(
        dual.ports[0].backends,
        [be("fd00:10:244::5", 8080, true, true, false, true)],
        "IPv4 slice ignored"
    );
    let warned: Vec<&str> = snap
        .notes
        .iter()
        .filter(|n| n.warn)
        .map(|n| n.message.as_str())
        .collect();
    assert!(
        warned
            .iter()
            .any(|m| m.contains("default/legacy: no IPv6 cluster IP")),
        "{warned:?}"
    );
    assert!(
        warned
            .iter()
            .any(|m| m.contains("ignoring IPv4 EndpointSlice dual-v4")),
        "{warned:?}"
    );
    assert!(
        warned
            .iter()
            .any(|m| m.contains("ignoring IPv4 cluster IP 10.96.0.20")),
        "{warned:?}"
    );
    assert!(
        snap.notes
            .iter()
            .any(|n| !n.warn && n.message.contains("default/db: headless"))
    );
    assert!(
        snap.notes
            .iter()
            .any(|n| !n.warn && n.message.contains("\"some-other-proxy\""))
    );

    // Without a proxy name of our own, every labelled Service belongs to someone else.
    let mut p = params("node-a");
    p.proxy_name = None;
    let snap = build(&store(objects("dualstack.json")), &p);
    let names: Vec<String> = snap
        .desired
        .services
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(names, ["default/dual"]);
}

#[test]
fn target_port_fallbacks_for_hand_written_slices() {
    let svc = obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "s", "namespace": "d"},
        "spec": {"clusterIPs": ["fd00:96::1"], "ports": [
            {"name": "a", "port": 80, "targetPort": 8080},
            {"name": "b", "port": 81},
            {"name": "c", "port": 82, "targetPort": "web"}
        ]}
    }));
    let slice = obj(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "s-1", "namespace": "d", "labels": {"kubernetes.io/service-name": "s"}},
        "addressType": "IPv6",
        "endpoints": [{"addresses": ["fd00:10::1"]}],
        "ports": [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    }));
    let snap = build(&store(vec![svc, slice]), &params("n"));
    let s = &snap.desired.services[&id("d", "s")];
    let ports: Vec<Vec<u16>> = s
        .ports
        .iter()
        .map(|p| p.backends.iter().map(|b| b.port).collect())
        .collect();
    assert_eq!(ports, [vec![8080], vec![81], vec![]]);
    assert!(
        snap.notes
            .iter()
            .any(|n| n.warn && n.message.contains("named port \"web\""))
    );
}

#[test]
fn nothing_is_published_before_every_kind_is_listed() {
    let mut st = Store::default();
    let mut r = Reconciler::new(params("node-a"), Duration::from_secs(2));
    let objs = objects("cluster.json");
    st.apply(Change::Replace(
        Kind::Service,
        objs.iter()
            .filter(|o| o.kind() == Kind::Service)
            .cloned()
            .collect(),
    ));
    st.apply(Change::Replace(
        Kind::Node,
        objs.iter()
            .filter(|o| o.kind() == Kind::Node)
            .cloned()
            .collect(),
    ));
    // Services known, slices not yet listed: publishing now would program zero backends.
    assert!(r.run(&st, Instant::now()).is_none());
    st.apply(Change::Replace(
        Kind::EndpointSlice,
        objs.iter()
            .filter(|o| o.kind() == Kind::EndpointSlice)
            .cloned()
            .collect(),
    ));
    let out = r.run(&st, Instant::now()).unwrap();
    assert_eq!(
        out.snapshot.desired.services[&id("shop", "web")].ports[0]
            .backends
            .len(),
        3
    );
}

fn slice(name: &str, addrs: &[&str]) -> Object {
    obj(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv6",
        "endpoints": addrs.iter().map(|a| json!({"addresses": [a], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}]
    }))
}

fn web_backends(out: &Outcome) -> Vec<Ipv6Addr> {
    out.snapshot.desired.services[&id("shop", "web")].ports[0]
        .backends
        .iter()
        .map(|b| b.addr)
        .collect()
}

#[test]
fn endpoint_slice_churn_never_publishes_zero_backends() {
    let hold = Duration::from_secs(2);
    let mut r = Reconciler::new(params("node-a"), hold);
    let svc = objects("cluster.json")
        .into_iter()
        .find(|o| o.kind() == Kind::Service)
        .unwrap();
    let mut st = store(vec![
        svc.clone(),
        slice("web-a", &["fd00:10:244::5", "fd00:10:244::6"]),
    ]);
    let t0 = Instant::now();
    let out = r.run(&st, t0).unwrap();
    assert_eq!(
        web_backends(&out),
        [ip("fd00:10:244::5"), ip("fd00:10:244::6")]
    );

    // The controller replaces the slice: delete first ...
    st.apply(Change::Delete(slice("web-a", &[])));
    let out = r.run(&st, t0 + Duration::from_millis(10)).unwrap();
    assert_eq!(
        web_backends(&out),
        [ip("fd00:10:244::5"), ip("fd00:10:244::6")],
        "held"
    );
    assert_eq!(out.held, [id("shop", "web")]);
    assert_eq!(out.recheck_at, Some(t0 + Duration::from_millis(10) + hold));

    // ... then creates the new one (a rollout moved a pod): the new set, at once.
    st.apply(Change::Apply(slice(
        "web-b",
        &["fd00:10:244::6", "fd00:10:244::7"],
    )));
    let out = r.run(&st, t0 + Duration::from_millis(50)).unwrap();
    assert_eq!(
        web_backends(&out),
        [ip("fd00:10:244::6"), ip("fd00:10:244::7")]
    );
    assert!(out.held.is_empty() && out.recheck_at.is_none());

    // Scaled to zero: the controller keeps a placeholder slice without endpoints, and that is
    // published as is (a real zero, not a gap).
    st.apply(Change::Apply(slice("web-b", &[])));
    let out = r.run(&st, t0 + Duration::from_millis(60)).unwrap();
    assert!(web_backends(&out).is_empty());
    assert!(out.held.is_empty());

    // Back up, then every slice goes for good: held for `hold`, then published empty.
    st.apply(Change::Apply(slice("web-b", &["fd00:10:244::8"])));
    r.run(&st, t0 + Duration::from_millis(70)).unwrap();
    st.apply(Change::Delete(slice("web-b", &[])));
    let t1 = t0 + Duration::from_millis(80);
    assert_eq!(
        web_backends(&r.run(&st, t1).unwrap()),
        [ip("fd00:10:244::8")]
    );
    assert_eq!(
        web_backends(&r.run(&st, t1 + hold / 2).unwrap()),
        [ip("fd00:10:244::8")],
        "still held, measured from the first gap"
    );
    let out = r.run(&st, t1 + hold).unwrap();
    assert!(web_backends(&out).is_empty(), "hold expired");
    assert!(out.held.is_empty());
    assert!(web_backends(&r.run(&st, t1 + hold * 3).unwrap()).is_empty());

    // Deleting the Service removes it at once (nothing to hold).
    st.apply(Change::Delete(svc));
    assert!(
        r.run(&st, t1 + hold * 4)
            .unwrap()
            .snapshot
            .desired
            .services
            .is_empty()
    );
}

#[test]
fn terminating_endpoints_keep_their_conditions_through_churn() {
    let mut r = Reconciler::new(params("node-a"), Duration::from_secs(1));
    let mut objs = objects("policies.json");
    let mut st = store(objs.clone());
    let out = r.run(&st, Instant::now()).unwrap();
    let ing = &out.snapshot.desired.services[&id("edge", "ingress")].ports[0];
    assert!(
        ing.backends
            .iter()
            .any(|b| b.terminating && b.serving && !b.ready)
    );
    // The terminating pod goes away: the slice is updated in place.
    for o in &mut objs {
        if let Object::EndpointSlice(s) = o
            && s.metadata.name.as_deref() == Some("ingress-abcde")
        {
            s.endpoints.retain(|e| e.addresses[0] != "fd00:10:244::21");
        }
    }
    for o in objs {
        st.apply(Change::Apply(o));
    }
    let out = r.run(&st, Instant::now()).unwrap();
    let ing = &out.snapshot.desired.services[&id("edge", "ingress")].ports[0];
    assert_eq!(ing.backends.len(), 2);
    assert!(ing.backends.iter().all(|b| b.ready && !b.terminating));
}
