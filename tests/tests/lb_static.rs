//! LoadBalancer IP assignment end to end in static mode: the real `sixlane-agent` on a simulated
//! node gives a `type: LoadBalancer` Service from its manifests an address from a pool, the
//! datapath serves it to a client outside the node, `sixlane-agent lb` and the metrics show
//! the assignment and why another Service is pending, and deleting the Service releases the
//! address for the next one.

use std::{fs, path::Path};

use sixlane_testkit::NetNs;
use sixlane_tests::{
    agentproc::{AgentRun, wait_until},
    bins,
    cluster::{self, Nginx, TempDir, curl, node_addr, pod_addr},
    manifests::{self, put},
    sim::SimPod,
};

/// The pool: the first address given is `::1`, never `::` (the subnet-router anycast).
const POOL: &str = "2001:db8:200::/120";
const FIRST: &str = "2001:db8:200::1";

/// A LoadBalancer Service `name` (ClusterIP `fd00:96::<n>`, `annotations` as YAML flow-mapping
/// entries) with its slice: one ready endpoint, `backend`, on node1.
fn lb_service(name: &str, n: u16, backend: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  annotations: {{{annotations}}}\n\
         spec:\n  type: LoadBalancer\n  clusterIPs: [\"fd00:96::{n:x}\"]\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: default\n  \
         labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv6\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
         endpoints:\n- addresses: [\"{backend}\"]\n  conditions: {{ready: true}}\n  nodeName: node1\n"
    )
}

/// `sixlane-agent --json lb` on the state directory.
fn lb_report(pin_root: &Path, state: &Path) -> serde_json::Value {
    bins::agent_json(pin_root, &["lb", "--state-dir", state.to_str().unwrap()])
}

fn metrics(node: &NetNs) -> String {
    curl(node, "http://[::1]:9660/metrics", 5).unwrap_or_default()
}

#[test]
fn a_load_balancer_service_gets_a_pool_address_served_from_outside() {
    let c = cluster::cluster(1);
    let n1 = &c.nodes[0];
    let backend = SimPod::attach(&n1.ns, pod_addr(1, 0xb1), Some(&n1.layout)).unwrap();
    let _web = Nginx::start(&backend.ns, "b1", 8080);

    let dir = TempDir::new();
    let manifests = dir.path().join("manifests");
    fs::create_dir_all(&manifests).unwrap();
    put(
        &manifests,
        "node.yaml",
        &manifests::node("node1", node_addr(1), "fd00:10::/64"),
    );
    put(
        &manifests,
        "web.yaml",
        &lb_service("web", 0x20, &backend.addr.to_string(), ""),
    );
    // Requests an address outside every pool: pending, with the reason.
    put(
        &manifests,
        "outside.yaml",
        &lb_service(
            "outside",
            0x21,
            &backend.addr.to_string(),
            "sixlane.io/load-balancer-ips: \"2001:db8:999::1\"",
        ),
    );

    let cfg = dir.path().join("agent.yaml");
    fs::write(
        &cfg,
        format!(
            "loadBalancer:\n  enabled: true\n  pools:\n  - {{name: public, cidrs: [\"{POOL}\"]}}\n\
             cni:\n  checkBinaries: false\n  mtu: 1500\nhealthz:\n  kubeProxyListen: null\n"
        ),
    )
    .unwrap();
    let root = n1.layout.root().to_owned();
    let run = AgentRun::new(&root, "node1", dir.path()).manifests(&manifests);
    let (state, log) = (run.state(), run.log());
    let _agent = run.spawn(&n1.ns);

    // The outside client routes the pool to the node, as a router that learned it would.
    c.ext
        .ip(&["-6", "route", "add", POOL, "via", &node_addr(1).to_string()])
        .unwrap();
    let url = format!("http://[{FIRST}]/");
    wait_until("the LoadBalancer address to answer", &log, || {
        curl(&c.ext, &url, 2).is_ok_and(|b| b.starts_with("b1 "))
    });

    let r = lb_report(&root, &state);
    assert_eq!(r["writer"]["mode"], "static", "{r}");
    assert_eq!(r["assigned"][0]["service"], "default/web", "{r}");
    assert_eq!(r["assigned"][0]["address"], FIRST);
    assert_eq!(r["assigned"][0]["pool"], "public");
    assert_eq!(r["pending"][0]["service"], "default/outside", "{r}");
    assert_eq!(r["pending"][0]["reason"], "AddressNotInPool");
    assert_eq!(
        r["pending"][0]["message"],
        "requested 2001:db8:999::1 is in no pool"
    );
    assert_eq!(
        (&r["pools"][0]["size"], &r["pools"][0]["used"]),
        (&255.into(), &1.into())
    );
    let m = metrics(&n1.ns);
    for want in [
        "sixlane_lb_assigned{pool=\"public\"} 1",
        "sixlane_lb_pending 1",
        "sixlane_lb_leader 0",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
    let status = bins::agent_json(&root, &["status", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(
        status["agent"]["loadBalancer"]["assigned"][0]["address"], FIRST,
        "{status}"
    );

    // Deleted: the address stops answering and goes to the next Service.
    fs::remove_file(manifests.join("web.yaml")).unwrap();
    wait_until("the address to be released", &log, || {
        curl(&c.ext, &url, 1).is_err()
    });
    put(
        &manifests,
        "next.yaml",
        &lb_service("next", 0x22, &backend.addr.to_string(), ""),
    );
    wait_until("the next Service on the released address", &log, || {
        lb_report(&root, &state)["assigned"][0]["service"] == "default/next"
    });
    assert_eq!(lb_report(&root, &state)["assigned"][0]["address"], FIRST);
    wait_until("the next Service to answer", &log, || {
        curl(&c.ext, &url, 2).is_ok_and(|b| b.starts_with("b1 "))
    });
}
