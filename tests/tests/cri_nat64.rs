//! kubelet's path, end to end: containerd's CRI plugin, driven over gRPC with the calls kubelet
//! makes (RunPodSandbox, CreateContainer, StartContainer, ExecSync, StopPodSandbox,
//! RemovePodSandbox), creates a pod whose network namespace it pins itself and hands to the
//! sixlane CNI plugin (with the conflist the agent writes, and the `K8S_POD_*` CNI_ARGS runtimes
//! send). The pod, IPv6-only, fetches from an IPv4-only server by name: its resolv.conf is the
//! DNS config the CRI request carried, the resolver is a real DNS64 (unbound), and the node's tc
//! programs translate (NAT64).
//!
//! ```text
//!  CRI pod (fd00:10::/64) ─veth─ node ─up─ rtr ─wan─ inet (198.18.1.10 web, .53 DNS, IPv4 only)
//!            containerd + DNS64 fd00:53::53 on the node; pool 198.18.0.1, prefix fd00:6464::/96
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sixlane_agent::{config::CniConfig, nat64::Span, node::cni};
use sixlane_attach::chain;
use sixlane_cni::plumb;
use sixlane_tests::{
    bins,
    cni::{TempDir, links, reservations},
    cri::{Cri, Pod, containerd_with_sixlane},
    dns64, load_datapath,
    nat64::{self as n, HttpServer, Internet, SERVER4},
    sim,
};

const PREFIX: &str = "fd00:6464::/96";
/// The network name in the agent's conflist.
const NETWORK: &str = "sixlane";
/// The image of both the sandbox (its default command sleeps) and the pod's container.
const IMAGE: &str = "docker.io/library/slpod:latest";

/// Host sides of pod veths on `node` (named by the plugin's own rule).
fn pod_veths(node: &sixlane_testkit::NetNs) -> Vec<String> {
    links(node)
        .into_iter()
        .filter(|l| plumb::is_host_ifname(l))
        .collect()
}

#[test]
fn cri_pod_reaches_an_ipv4_only_server_by_name_through_nat64() {
    sixlane_testkit::require_root();
    let tmp = TempDir::new('r');
    let (_pins, layout, _dp) = load_datapath();
    let mut nat64 = n::config(
        PREFIX,
        &[n::NODE4],
        &["fd00:10::/64"],
        Span::new(61001, 65535),
    );
    nat64.ipv4_mtu = 1400;
    n::apply(&layout, &nat64);
    let node = sim::node().unwrap();
    let net = Internet::new(&node).unwrap();
    n::attach_uplink(&node, &layout, net.uplink());

    // The IPv4 internet: a web server and its A-only DNS.
    let _web = HttpServer::start(
        &net.inet,
        SocketAddr::from((SERVER4, 8080)),
        b"hello, CRI pod".to_vec(),
    );
    let auth_addr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 53));
    net.wan
        .b
        .ip(&["addr", "add", "198.18.1.53/24", "dev", "{}"])
        .unwrap();
    let _auth = dns64::Unbound::authority(
        &net.inet,
        auth_addr,
        "example.test.",
        &[("web.example.test.", IpAddr::V4(SERVER4))],
    )
    .unwrap();
    // The cluster DNS (DNS64) on the node.
    let dns_addr: Ipv6Addr = "fd00:53::53".parse().unwrap();
    node.ip(&["addr", "add", &format!("{dns_addr}/128"), "dev", "lo"])
        .unwrap();
    let _dns = dns64::Unbound::dns64(
        &node,
        IpAddr::V6(dns_addr),
        PREFIX,
        &[("example.test.", auth_addr)],
    )
    .unwrap();

    // The conflist the agent writes for the runtime (CNI 1.0.0: containerd 1.6's CRI speaks no
    // later version), with the pod route to the NAT64 prefix sized for a 1400-byte IPv4 path.
    let data = tmp.path().join("ipam");
    let log = tmp.path().join("sixlane-cni.log");
    let route = nat64.pod_route(1500).expect("translating");
    assert_eq!((route.mtu, route.advmss), (1420, 1360));
    let conflist = cni::conflist(&cni::Inputs {
        cni: &CniConfig {
            data_dir: data.clone(),
            log_file: log.clone(),
            log_level: "debug".into(),
            ..Default::default()
        },
        pod_cidr: "fd00:10::/64".parse().unwrap(),
        mtu: 1500,
        pin_root: layout.root(),
        nat64: Some(cni::Nat64Route {
            prefix: route.prefix,
            mtu: route.mtu,
            advmss: route.advmss,
        }),
    });
    assert_eq!(conflist["cniVersion"], "1.0.0");
    let cd = containerd_with_sixlane(
        &node,
        tmp.path(),
        &conflist,
        IMAGE,
        &["sh", "sleep", "wget", "cat", "ip"],
    );
    let cd_log = || std::fs::read_to_string(cd.dir().join("containerd.log")).unwrap_or_default();
    let cni_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut cri = Cri::connect(cd.socket()).unwrap();
    let version = cri.version().unwrap();
    assert!(version.starts_with("containerd"), "{version}");
    let pod = Pod {
        name: "web-client".into(),
        namespace: "default".into(),
        uid: "6e3c5d0a-0000-4000-8000-000000000001".into(),
        dns_servers: vec![dns_addr.to_string()],
        dns_searches: vec!["example.test".into()],
        cgroup_parent: cd.cgroup_parent().unwrap(),
        log_directory: tmp.path().join("pod-logs"),
        annotations: Vec::new(),
    };
    let pod_id = cri.run_pod(&pod).unwrap_or_else(|e| {
        panic!(
            "{}\ncontainerd:\n{}\nCNI:\n{}",
            chain(&e),
            cd_log(),
            cni_log()
        )
    });

    // The pod IP kubelet would publish comes from sixlane's CNI result, and is the address
    // sixlane's IPAM reserved for this sandbox.
    let status = cri.pod_status(&pod_id).unwrap();
    assert!(status.ready, "{status:?}");
    let reserved = reservations(&data, NETWORK);
    assert_eq!(reserved.len(), 1, "{reserved:?}");
    let (pod_ip, owner) = &reserved[0];
    assert_eq!(status.ip, pod_ip.to_string(), "{status:?}");
    assert!(status.additional_ips.is_empty(), "{status:?}");
    assert_eq!(owner, &format!("{pod_id}\r\neth0"), "reservation owner");
    // The sandbox's own veth: named from the sandbox ID, as DEL will find it.
    assert_eq!(pod_veths(&node), [plumb::host_ifname(&pod_id, "eth0")]);

    let ctr = cri
        .start_container(&pod_id, &pod, "client", IMAGE, &["/bin/sleep", "3600"])
        .unwrap_or_else(|e| panic!("{}\ncontainerd:\n{}", chain(&e), cd_log()));
    let run = |cri: &mut Cri, cmd: &[&str]| {
        let out = cri
            .exec_sync(&ctr, cmd, 30)
            .unwrap_or_else(|e| panic!("{cmd:?}: {}", chain(&e)));
        assert_eq!(
            out.exit_code,
            0,
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The container shares the sandbox's network: sixlane's address on eth0, no IPv4.
    let addrs = run(&mut cri, &["ip", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{pod_ip}/")), "{addrs}");
    assert!(!addrs.contains("inet "), "IPv6-only pod: {addrs}");
    // The NAT64 prefix's route carries the CNI 1.1 route fields (MTU, advertised MSS) even
    // through a 1.0.0 conflist: checked with iproute2 from the host (busybox's `ip` omits them).
    let pid = cri.container_pid(&ctr).unwrap();
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-6", "route", "show", &route.prefix.to_string()])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&out.stdout);
    assert!(
        routes.contains("mtu 1420") && routes.contains("advmss 1360"),
        "{routes}"
    );
    let resolv = run(&mut cri, &["cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains(&format!("nameserver {dns_addr}")),
        "{resolv}"
    );
    // By name, through DNS64 and NAT64: `web` + the search domain, A-only upstream.
    let body = run(&mut cri, &["wget", "-q", "-O", "-", "http://web:8080/"]);
    assert_eq!(body, "hello, CRI pod");

    // The translator's session belongs to the pod's address.
    let rows = bins::agent_json(layout.root(), &["nat64", "sessions"]);
    assert!(
        rows.as_array().unwrap().iter().any(|r| r["proto"] == "tcp"
            && r["pod"] == pod_ip.to_string()
            && r["peer"] == SERVER4.to_string()),
        "{rows:?}"
    );

    // Pod deletion: StopPodSandbox runs the CNI DEL (reservation and veth gone), and the pod
    // is forgotten after RemovePodSandbox.
    cri.stop_pod(&pod_id).unwrap();
    assert!(!cri.pod_status(&pod_id).unwrap().ready);
    assert!(
        reservations(&data, NETWORK).is_empty(),
        "{:?}\nCNI:\n{}",
        reservations(&data, NETWORK),
        cni_log()
    );
    assert!(pod_veths(&node).is_empty(), "{:?}", links(&node));
    cri.remove_pod(&pod_id).unwrap();
    assert!(cri.list_pods().unwrap().is_empty());
    let log = cni_log();
    // The runtime's K8S_POD_* arguments name the pod in the plugin's log.
    assert!(
        log.contains(&format!("ADD {pod_id}/eth0 pod=default/web-client:"))
            && log.contains(&format!("DEL {pod_id}/eth0 pod=default/web-client:")),
        "{log}"
    );
}
