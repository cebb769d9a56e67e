//! The source-validation opt-out through kubelet's path: containerd's CRI plugin passes a pod's
//! annotations to a plugin whose conflist declares the `io.kubernetes.cri.pod-annotations`
//! capability (as the agent's conflist does), so `sixlane.io/source-validation: disabled` on a
//! Pod opts it out; its neighbour without the annotation stays validated, and StopPodSandbox's
//! DEL forgets both.

use sixlane_agent::{config::CniConfig, node::cni};
use sixlane_attach::{chain, sources::Sources};
use sixlane_cni::{conf::SOURCE_VALIDATION_ANNOTATION, plumb};
use sixlane_tests::{
    cni::TempDir,
    cri::{Cri, Pod, containerd_with_sixlane},
    load_datapath,
    nat64::ifindex,
    sim,
};

const IMAGE: &str = "docker.io/library/slpod:latest";

#[test]
fn the_pod_annotation_reaches_the_plugin_through_containerd() {
    sixlane_testkit::require_root();
    let tmp = TempDir::new('v');
    let (_pins, layout, _dp) = load_datapath();
    let node = sim::node().unwrap();
    let log = tmp.path().join("sixlane-cni.log");
    let conflist = cni::conflist(&cni::Inputs {
        cni: &CniConfig {
            data_dir: tmp.path().join("ipam"),
            log_file: log.clone(),
            log_level: "debug".into(),
            ..Default::default()
        },
        pod_cidr: "fd00:10::/64".parse().unwrap(),
        mtu: 1500,
        pin_root: layout.root(),
        nat64: None,
    });
    let cd = containerd_with_sixlane(&node, tmp.path(), &conflist, IMAGE, &["sh", "sleep"]);
    let logs = || {
        format!(
            "containerd:\n{}\nCNI:\n{}",
            std::fs::read_to_string(cd.dir().join("containerd.log")).unwrap_or_default(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let mut cri = Cri::connect(cd.socket()).unwrap();
    let pod = |name: &str, uid: &str, annotations: Vec<(String, String)>| Pod {
        name: name.into(),
        namespace: "default".into(),
        uid: uid.into(),
        dns_servers: vec![],
        dns_searches: vec![],
        cgroup_parent: cd.cgroup_parent().unwrap(),
        log_directory: tmp.path().join(format!("{name}-logs")),
        annotations,
    };
    let free = pod(
        "free",
        "6e3c5d0a-0000-4000-8000-0000000000f1",
        vec![(SOURCE_VALIDATION_ANNOTATION.into(), "disabled".into())],
    );
    let strict = pod("strict", "6e3c5d0a-0000-4000-8000-0000000000f2", vec![]);
    let mut ids = Vec::new();
    for (p, enforce) in [(&free, false), (&strict, true)] {
        let id = cri
            .run_pod(p)
            .unwrap_or_else(|e| panic!("{}\n{}", chain(&e), logs()));
        let ip = cri.pod_status(&id).unwrap().ip.parse().unwrap();
        let veth = ifindex(&node, &plumb::host_ifname(&id, "eth0"));
        let table = Sources::open(&layout).unwrap().unwrap().entries().unwrap();
        let got = &table[&veth];
        assert_eq!(
            got.enforce,
            Some(enforce),
            "{}: {got:?}\n{}",
            p.name,
            logs()
        );
        assert_eq!(got.addrs, [ip].into(), "{}", p.name);
        ids.push(id);
    }
    for id in &ids {
        cri.stop_pod(id).unwrap();
        cri.remove_pod(id).unwrap();
    }
    let table = Sources::open(&layout).unwrap().unwrap().entries().unwrap();
    assert!(table.is_empty(), "{table:?}\n{}", logs());
}
