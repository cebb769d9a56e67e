//! LoadBalancer IP assignment in Kubernetes mode, with the real `sixlane-agent` against the API
//! server stand-in (`kubeapi`, HTTPS and a bearer token through a kubeconfig): the agent takes
//! the Lease `kube-system/sixlane-lb-ipam` as its node, server-side-applies the assigned
//! address and the condition to the Service's status subresource (and only that Service's),
//! records a Warning Event for a Service left pending, shows itself as the writer in
//! `sixlane-agent lb` and the metrics, and releases the Lease when it stops.

use std::{
    fs,
    net::{Ipv6Addr, SocketAddr},
    thread,
    time::Duration,
};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use sixlane_tests::{
    agentproc::{AgentRun, wait_for},
    bins,
    cluster::{self, TempDir, curl, node_addr},
    kubeapi::{self, ApiServer, Tls, Write},
};

const API_PORT: u16 = 6443;
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/sixlane-lb-ipam";
/// The pool holds one address: the older Service gets it, the newer stays pending.
const ADDR: &str = "2001:db8:200::1";

fn node(addr: Ipv6Addr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node1", "resourceVersion": "1"},
        "spec": {"podCIDR": "fd00:10::/64", "podCIDRs": ["fd00:10::/64"]},
        "status": {"addresses": [{"type": "InternalIP", "address": addr.to_string()}]},
    })
}

/// A LoadBalancer Service created `created` seconds into 2025.
fn lb_service(name: &str, n: u16, created: u32) -> Value {
    let vip = format!("fd00:96::{n:x}");
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": format!("{n}"), "generation": 1,
                     "creationTimestamp": format!("2025-01-01T00:00:{created:02}Z")},
        "spec": {"type": "LoadBalancer", "clusterIP": vip, "clusterIPs": [vip],
                 "ipFamilies": ["IPv6"], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    })
}

fn status_write<'a>(writes: &'a [Write], name: &str) -> Vec<&'a Write> {
    let path = format!("/api/v1/namespaces/default/services/{name}/status");
    writes.iter().filter(|w| w.path == path).collect()
}

#[test]
fn the_lease_holder_writes_the_assignment_to_the_service_status() {
    let c = cluster::cluster(1);
    let n1 = &c.nodes[0];
    let dir = TempDir::new();
    let tls = Tls::new(&dir.path().join("tls"), node_addr(1));
    let token = format!("sixlane-lb-{}", std::process::id());
    let api = ApiServer::start(
        &n1.ns,
        SocketAddr::from((node_addr(1), API_PORT)),
        &tls,
        &token,
        kubeapi::objects(
            vec![node(node_addr(1))],
            vec![lb_service("web", 0x20, 1), lb_service("late", 0x21, 2)],
            vec![],
        ),
    );
    let kubeconfig = dir.path().join("kubeconfig");
    kubeapi::kubeconfig(&kubeconfig, api.addr, &tls, &token);
    let cfg = dir.path().join("agent.yaml");
    fs::write(
        &cfg,
        "loadBalancer:\n  enabled: true\n  pools:\n  - {name: public, ranges: [\"2001:db8:200::1-2001:db8:200::1\"]}\n\
         cni:\n  checkBinaries: false\n  mtu: 1500\nhealthz:\n  kubeProxyListen: null\n",
    )
    .unwrap();
    let root = n1.layout.root().to_owned();
    let run = AgentRun::new(&root, "node1", dir.path()).kubeconfig(&kubeconfig);
    let (state, log) = (run.state(), run.log());
    let agent = run.spawn(&n1.ns);

    // The Lease, created holding it as this node.
    let lease = wait_for("the Lease", &log, || api.created(LEASE));
    assert_eq!(lease["spec"]["holderIdentity"], "node1", "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15, "{lease}");

    // The assigned Service: server-side apply of its status subresource, with the version it
    // was decided from, the address and the condition.
    let web = wait_for("web's status write", &log, || {
        status_write(&api.writes(), "web")
            .first()
            .map(|w| (*w).clone())
    });
    assert_eq!(web.method, "PATCH");
    assert!(
        web.query.contains("fieldManager=sixlane-lb-ipam") && web.query.contains("force=true"),
        "{web:?}"
    );
    assert_eq!(web.content_type, "application/apply-patch+yaml");
    assert_eq!(web.body["metadata"]["resourceVersion"], "32", "{web:?}");
    assert_eq!(
        web.body["status"]["loadBalancer"]["ingress"],
        json!([{"ip": ADDR}])
    );
    let cond = &web.body["status"]["conditions"][0];
    assert_eq!(
        (
            &cond["type"],
            &cond["status"],
            &cond["reason"],
            &cond["message"]
        ),
        (
            &json!("sixlane.io/LoadBalancerIPAssigned"),
            &json!("True"),
            &json!("IPAssigned"),
            &json!(format!("{ADDR} from pool public"))
        )
    );

    // The pending one: no address, the reason, and a Warning Event about it.
    let late = wait_for("late's status write", &log, || {
        status_write(&api.writes(), "late")
            .first()
            .map(|w| (*w).clone())
    });
    assert_eq!(late.body["status"]["loadBalancer"]["ingress"], json!([]));
    let cond = &late.body["status"]["conditions"][0];
    assert_eq!(
        (&cond["status"], &cond["reason"]),
        (&json!("False"), &json!("PoolExhausted"))
    );
    let event = wait_for("the Event", &log, || {
        api.writes()
            .into_iter()
            .find(|w| w.path == "/apis/events.k8s.io/v1/namespaces/default/events")
    });
    assert_eq!(event.method, "POST");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "PoolExhausted");
    assert_eq!(event.body["regarding"]["name"], "late");
    assert_eq!(event.body["reportingInstance"], "node1");

    // What the operator sees: this agent writes, as the Lease holder.
    let r = wait_for("the lb report", &log, || {
        let r = bins::agent_json(&root, &["lb", "--state-dir", state.to_str().unwrap()]);
        (r["writer"]["leader"] == true).then_some(r)
    });
    assert_eq!(r["writer"]["mode"], "lease", "{r}");
    assert_eq!(r["writer"]["holder"], "node1", "{r}");
    assert_eq!(r["assigned"][0]["service"], "default/web", "{r}");
    assert_eq!(r["pending"][0]["service"], "default/late", "{r}");
    let m = curl(&n1.ns, "http://[::1]:9660/metrics", 5).unwrap_or_default();
    for want in [
        "sixlane_lb_leader 1",
        "sixlane_lb_assigned{pool=\"public\"} 1",
        "sixlane_lb_pending 1",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }

    // Renewals only: nothing else is written to the Services (the watch shows no change, and
    // what was written is not written again).
    thread::sleep(Duration::from_secs(6));
    let writes = api.writes();
    assert_eq!(status_write(&writes, "web").len(), 1, "{writes:?}");
    assert_eq!(status_write(&writes, "late").len(), 1, "{writes:?}");
    assert!(
        writes
            .iter()
            .filter(|w| w.path.starts_with("/api/v1/"))
            .all(|w| w.path.ends_with("/status") && w.method == "PATCH"),
        "only status writes: {writes:?}"
    );
    let renewals = writes.iter().filter(|w| w.path == LEASE).count();
    assert!(renewals >= 1, "{writes:?}");

    // A clean stop releases the Lease for the next agent.
    agent.signal(Signal::SIGTERM).unwrap();
    let released = wait_for("the release", &log, || {
        api.created(LEASE)
            .filter(|l| l["spec"]["holderIdentity"].is_null())
    });
    assert_eq!(released["spec"]["leaseTransitions"], 0, "{released}");
}
