//! The daemon in-process with a recording sink: the whole path from manifest files through the
//! debounced, level-based reconcile to `ServiceSink::apply`, including EndpointSlice churn that
//! must never publish a Service with zero backends.

use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use sixlane_agent::{
    PinLayout,
    config::{Config, SourceMode},
    daemon,
    model::{DesiredState, ServiceId},
    sink::RecordingSink,
};
use sixlane_testkit::{NetNs, PinDir, Veth, names};
use sixlane_tests::manifests::{self, put};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
spec: {clusterIPs: [\"fd00:96::10\"], ports: [{name: http, port: 80, targetPort: 8080}]}\n";

fn slice(name: &str, addrs: &[&str]) -> String {
    let eps: Vec<String> = addrs
        .iter()
        .map(|a| format!("- addresses: [\"{a}\"]\n  conditions: {{ready: true}}\n"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: default\n  \
         labels: {{kubernetes.io/service-name: web}}\naddressType: IPv6\nports: [{{name: http, port: 8080}}]\nendpoints:{}\n{}",
        if eps.is_empty() { " []" } else { "" },
        eps.concat()
    )
}

fn web(s: &DesiredState) -> Option<Vec<String>> {
    let id = ServiceId {
        namespace: "default".into(),
        name: "web".into(),
    };
    s.services.get(&id).map(|svc| {
        svc.ports[0]
            .backends
            .iter()
            .map(|b| format!("[{}]:{}", b.addr, b.port))
            .collect()
    })
}

async fn until(sink: &RecordingSink, what: &str, f: impl Fn(&DesiredState) -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if sink.states().last().is_some_and(&f) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "timed out waiting for {what}; states: {:#?}",
        sink.states().iter().map(web).collect::<Vec<_>>()
    );
}

#[test]
fn daemon_feeds_the_sink_without_zero_backend_windows() {
    sixlane_testkit::require_root();
    let pins = PinDir::new().unwrap();
    let dir = TempDir(std::env::temp_dir().join(names::unique('d')));
    let manifests = dir.0.join("manifests");
    fs::create_dir_all(&manifests).unwrap();
    let node = NetNs::new().unwrap();
    let peer = NetNs::new().unwrap();
    let link = Veth::new_down(Some(&node), Some(&peer)).unwrap();
    node.sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
    link.a
        .ip(&["addr", "add", "fd00:98::1/64", "dev", "{}", "nodad"])
        .unwrap();
    link.a.ip(&["link", "set", "{}", "up"]).unwrap();

    put(
        &manifests,
        "node.yaml",
        &manifests::node("node-a", "fd00:98::1", "fd00:10:a::/64"),
    );
    put(&manifests, "svc.yaml", SERVICE);
    put(
        &manifests,
        "slice-a.yaml",
        &slice("web-a", &["fd00:10:a::1", "fd00:10:a::2"]),
    );

    let mut cfg = Config::default();
    cfg.node.name = Some("node-a".into());
    cfg.node.state_dir = dir.0.join("state");
    cfg.source.mode = SourceMode::Static;
    cfg.source.manifest_dir = Some(manifests.clone());
    cfg.source.poll_interval_ms = 20;
    cfg.source.debounce_ms = 20;
    cfg.source.slice_gap_hold_ms = 3000;
    cfg.cni.conf_dir = dir.0.join("net.d");
    cfg.cni.check_binaries = false;
    cfg.cni.mtu = Some(1500);
    cfg.metrics.listen = None;
    cfg.healthz.kube_proxy_listen = None;
    cfg.healthz.health_check_node_ports = false;
    cfg.logging.ebpf = false;
    cfg.validate().unwrap();

    let sink = RecordingSink::default();
    let layout = PinLayout::new(pins.path());
    let states = node.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let agent = tokio::spawn(daemon::run(
                cfg,
                daemon::Runtime {
                    pins: layout.clone(),
                    sink: daemon::sink(sink.clone()),
                    stop: Some(stop_rx),
                },
            ));
            until(&sink, "the initial state", |s| {
                web(s).is_some_and(|b| b.len() == 2)
            })
            .await;

            // Slice replacement as the controller does it: delete, then (after a full
            // reconcile has seen the gap) create. The old backends are held in between.
            fs::remove_file(manifests.join("slice-a.yaml")).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            put(
                &manifests,
                "slice-b.yaml",
                &slice("web-b", &["fd00:10:a::2", "fd00:10:a::3"]),
            );
            until(&sink, "the replacement slice", |s| {
                web(s)
                    == Some(vec![
                        "[fd00:10:a::2]:8080".into(),
                        "[fd00:10:a::3]:8080".into(),
                    ])
            })
            .await;

            // Scale to zero: the slice stays, empty; that is published at once.
            put(&manifests, "slice-b.yaml", &slice("web-b", &[]));
            until(&sink, "zero backends", |s| web(s) == Some(vec![])).await;

            // The Service goes.
            fs::remove_file(manifests.join("svc.yaml")).unwrap();
            until(&sink, "the service to go", |s| web(s).is_none()).await;

            stop_tx.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(5), agent)
                .await
                .expect("agent stops")
                .unwrap()
                .unwrap();
        });
        sink.states()
    });

    // Every state, in order (consecutive duplicates from resyncs folded): exactly the old set,
    // the new set, the scale-down, the deletion. A zero-backend state between the first two
    // would be the window this guards against.
    let mut seq: Vec<Option<Vec<String>>> = states.iter().map(web).collect();
    seq.dedup();
    let set = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    assert_eq!(
        seq,
        [
            set(&["[fd00:10:a::1]:8080", "[fd00:10:a::2]:8080"]),
            set(&["[fd00:10:a::2]:8080", "[fd00:10:a::3]:8080"]),
            set(&[]),
            None
        ]
    );
    // The node's own addresses come with every state.
    assert!(
        states.iter().all(|s| s.node.name == "node-a"
            && s.node.addresses.contains(&"fd00:98::1".parse().unwrap()))
    );
    // Stopping left the datapath pinned.
    assert!(
        layout
            .prog(sixlane_common::layout::PROG_FROM_UPLINK)
            .exists()
    );
    assert!(
        layout
            .link(&link.a.name, sixlane_common::layout::PROG_FROM_UPLINK)
            .exists()
    );
}
