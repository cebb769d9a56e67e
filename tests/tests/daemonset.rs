//! `manifests/daemonset.yaml` as kubelet runs it, through containerd's CRI, on a node of its
//! own: the image built by `cargo xtask image` (as users build it), the pod template turned into
//! CRI calls field by field (`sixlane_tests::kubelet`), the ConfigMaps of
//! `manifests/configmap.yaml`, and an API server stand-in reached the way the manifests say
//! (the apiserver ConfigMap's address, the service account's token and CA).
//!
//! ```text
//!   CRI pod (fd00:10:244:1::/64) ─veth─ node ─up─ rtr ─wan─ inet (198.18.1.10, IPv4 only)
//!   node: fd00:1::1 (API server :6443), 198.18.0.1 (NAT64 pool)   rtr: fd00:1::2 (Service web)
//! ```
//!
//! With BGP on, the router beside the node runs FRR and peers with the pod's `bird` container:
//! an agent restart, a rollout (BIRD's preStop graceful restart, the next pod's BIRD recovering
//! from the hostPath's configuration) and BGP turned off are judged by the router's own view
//! (its sessions and kernel FIB).
//!
//! The node's filesystem is per test: its own bpffs for `/sys/fs/bpf`, directories for the CNI
//! configuration, plugins and IPAM store, the agent's state and the runtime's logs. containerd
//! and the CNI plugin it runs see the same directories at the node's paths, so the plugin the
//! init container installs and the conflist the agent writes are what the runtime uses.

use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, TcAttachType};
use ipnet::Ipv6Net;
use serde_json::{Value, json};
use sixlane_attach::chain;
use sixlane_cni::plumb;
use sixlane_testkit::{
    NetNs,
    bpffs::BpfFs,
    containerd::{self, Containerd},
    fib,
    frr::{Frr, FrrConfig, Neighbor, RemoteAs},
    netns::enter_path,
    rtmon::{self, Change, RouteMonitor},
    wait,
};
use sixlane_tests::{
    bins,
    cni::{TempDir, links},
    cri::{Cri, Pod},
    echo::{self, EchoServer, Pinger},
    image,
    kubeapi::{self, ApiServer, Tls},
    kubelet::{self, Cluster, Kubelet, Node, PodRun, probe::HttpProbe},
    nat64::{HttpServer, Internet, NODE4, SERVER4},
    sim,
};

const NODE: &str = "node-a";
const NODE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
/// The Service backend's host, beside the node on its uplink (like an off-cluster endpoint).
const BACKEND6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
const POD_CIDR: &str = "fd00:10:244:1::/64";
const WEB_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x10);
const KUBERNETES_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 1);
const PREFIX: &str = "fd00:6464::/96";
const API_PORT: u16 = 6443;
/// The pods' image (busybox): also the sandbox ("pause") image.
const POD_IMAGE: &str = "docker.io/library/slpod:latest";
/// The image the manifests name.
const IMAGE: &str = "sixlane/sixlane:dev";
/// The rebuilt image a rolling update moves to.
const NEXT_IMAGE: &str = "sixlane/sixlane:next";
/// The agent container's capabilities, as the manifest adds them: CAP_NET_ADMIN (12),
/// CAP_PERFMON (38), CAP_BPF (39).
const AGENT_CAPS: u64 = (1 << 12) | (1 << 38) | (1 << 39);

/// The NAT64 address of an IPv4 one.
fn nat64_addr(v4: Ipv4Addr) -> Ipv6Addr {
    let p: Ipv6Addr = PREFIX.trim_end_matches("/96").parse().unwrap();
    sixlane_tests::nat64::embed(p, 96, v4)
}

/// The node's paths, each a directory of this test (the kernel's `/proc/sys/net` excepted).
/// Dropped in field order: the bpffs is unmounted before its directory's parent is removed.
struct NodeFs {
    bpffs: BpfFs,
    _tmp: TempDir,
    root: PathBuf,
}

impl NodeFs {
    fn new() -> Self {
        let tmp = TempDir::new('k');
        let root = tmp.path().join("node");
        let bpffs = BpfFs::mount(&tmp.path().join("bpffs")).unwrap();
        for d in [
            "etc/cni/net.d",
            "opt/cni/bin",
            "var/lib/cni/networks",
            "var/log",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        // The runtime's own plugin for the pods' loopback, as a distribution installs it.
        fs::copy("/usr/lib/cni/loopback", root.join("opt/cni/bin/loopback")).unwrap();
        Self {
            bpffs,
            _tmp: tmp,
            root,
        }
    }

    fn dir(&self) -> &Path {
        self.root.parent().unwrap()
    }

    /// The node path → test directory map (`/var/lib/sixlane` and `/run/sixlane/bird` do not
    /// exist yet: kubelet's DirectoryOrCreate makes them).
    fn host_paths(&self) -> BTreeMap<String, PathBuf> {
        let mut m: BTreeMap<String, PathBuf> = [
            "/etc/cni/net.d",
            "/opt/cni/bin",
            "/var/lib/cni/networks",
            "/var/lib/sixlane",
            "/var/log",
            "/run/sixlane/bird",
        ]
        .iter()
        .map(|p| (p.to_string(), self.root.join(&p[1..])))
        .collect();
        m.insert("/sys/fs/bpf".into(), self.bpffs.path().to_owned());
        // A kernel interface, not a directory of the node: the real one (the agent shares the
        // node's network namespace, which is what these files show).
        m.insert("/proc/sys/net".into(), "/proc/sys/net".into());
        m
    }

    /// What containerd and the CNI plugin see at the node's paths.
    fn binds(&self) -> Vec<(PathBuf, &'static str)> {
        let hp = self.host_paths();
        [
            "/etc/cni/net.d",
            "/opt/cni/bin",
            "/var/lib/cni/networks",
            "/var/log",
            "/sys/fs/bpf",
        ]
        .into_iter()
        .map(|p| (hp[p].clone(), p))
        .collect()
    }

    fn pins(&self) -> PathBuf {
        self.bpffs.path().join("sixlane")
    }
}

fn node_object() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "resourceVersion": "1"},
        "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
        "status": {"addresses": [
            {"type": "InternalIP", "address": NODE6.to_string()},
            {"type": "Hostname", "address": NODE},
        ]},
    })
}

fn service(ns: &str, name: &str, vip: Ipv6Addr, ports: &[(&str, u16, u16)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, port, target)| {
            json!({"name": n, "port": port, "targetPort": target, "protocol": "TCP"})
        })
        .collect();
    let vip = vip.to_string();
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
        "spec": {"type": "ClusterIP", "clusterIP": vip, "clusterIPs": [vip],
                 "ipFamilies": ["IPv6"], "ports": ports},
    })
}

fn slice(ns: &str, svc: &str, addr: Ipv6Addr, ports: &[(&str, u16)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "port": p, "protocol": "TCP"}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-1"), "namespace": ns, "resourceVersion": "1",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv6",
        "ports": ports,
        "endpoints": [{"addresses": [addr.to_string()], "conditions": {"ready": true}}],
    })
}

/// The cluster the agent watches: this node, the `kubernetes` Service (the API server on the
/// node) and `web` (HTTP on 80, echo on 7) with its backend beside the node.
fn cluster_objects() -> kubeapi::Objects {
    kubeapi::objects(
        vec![node_object()],
        vec![
            service(
                "default",
                "kubernetes",
                KUBERNETES_VIP,
                &[("https", 443, API_PORT)],
            ),
            service(
                "default",
                "web",
                WEB_VIP,
                &[("http", 80, 8080), ("echo", 7, 7)],
            ),
        ],
        vec![
            slice("default", "kubernetes", NODE6, &[("https", API_PORT)]),
            slice("default", "web", BACKEND6, &[("http", 8080), ("echo", 7)]),
        ],
    )
}

/// The ConfigMaps of `manifests/configmap.yaml` as a user deploys them on this cluster: the
/// API server's real address filled in (as the kind e2e script does), and the agent's
/// configuration with this node's NAT64 added (its IPv4 pool is the node's own) and `extra`
/// (more top-level sections).
fn config_maps(extra: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let docs = kubelet::read_yaml(&image::workspace_root().join("manifests/configmap.yaml"));
    let mut out = BTreeMap::new();
    for name in ["sixlane-agent-config", "sixlane-agent-apiserver"] {
        let cm = kubelet::find(&docs, "ConfigMap", name);
        let data: BTreeMap<String, String> = cm["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        out.insert(format!("kube-system/{name}"), data);
    }
    let api = out.get_mut("kube-system/sixlane-agent-apiserver").unwrap();
    api.insert("KUBERNETES_SERVICE_HOST".into(), NODE6.to_string());
    api.insert("KUBERNETES_SERVICE_PORT".into(), API_PORT.to_string());
    let cfg = out.get_mut("kube-system/sixlane-agent-config").unwrap();
    let text = cfg.get_mut("config.yaml").unwrap();
    assert!(
        !text.contains("\nnat64:"),
        "the shipped configuration sets nat64 now: {text}"
    );
    text.push_str(&format!(
        "nat64:\n  mode: translate\n  prefix: {PREFIX}\n  pool: [{NODE4}]\n  \
         podCIDRs: [fd00:10:244::/56]\n"
    ));
    assert!(
        !text.contains("\nbgp:"),
        "the shipped configuration sets bgp now: {text}"
    );
    text.push_str(extra);
    out
}

/// The DaemonSet, read from the repository.
fn daemonset() -> Value {
    let docs = kubelet::read_yaml(&image::workspace_root().join("manifests/daemonset.yaml"));
    kubelet::find(&docs, "DaemonSet", "sixlane-agent").clone()
}

/// The agent container of the DaemonSet's template.
fn agent_container(ds: &Value) -> &Value {
    ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "agent")
        .expect("container agent")
}

/// Every pin under the node's bpffs (paths relative to it), sorted.
fn pins(dir: &Path) -> Vec<String> {
    fn walk(d: &Path, base: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The BPF programs attached to `dev` in `ns`, one line each without the program's ID (which an
/// upgrade changes): tc filters (bpftool: `dev(ifindex) clsact/ingress NAME id N`) and TCX
/// programs (queried from the kernel: Debian's bpftool predates TCX).
fn attached(ns: &NetNs, dev: &str) -> Vec<String> {
    let text = ns.exec("bpftool", &["net", "show", "dev", dev]).unwrap();
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| l.contains("/ingress ") || l.contains("/egress "))
        .map(|l| l.split(" id ").next().unwrap_or(l).to_owned())
        .collect();
    for (hook, name) in [
        (TcAttachType::Ingress, "ingress"),
        (TcAttachType::Egress, "egress"),
    ] {
        let (_, progs) = ns
            .enter(|| SchedClassifier::query_tcx(dev, hook))
            .unwrap_or_else(|e| panic!("TCX programs on {dev}: {e}"));
        out.extend(
            progs
                .iter()
                .map(|p| format!("{dev} tcx/{name} {}", p.name_as_str().unwrap_or("?"))),
        );
    }
    out
}

/// `name: <value>` of `/proc/<pid>/status`.
fn proc_status(pid: u32, name: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("{name} missing from /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// Waits for the agent's readiness probe (as kubelet polls it), then checks liveness.
fn wait_ready(k: &mut Kubelet<'_>, node: &NetNs, pod: &PodRun, ds: &Value) {
    let agent = agent_container(ds);
    let ready = HttpProbe::of(agent, "readinessProbe");
    if let Err(last) = ready.until_success(node, Duration::from_secs(120)) {
        let log = k.log(pod.container("agent"));
        panic!("the agent never became ready (last /readyz: {last}); its log:\n{log}");
    }
    let live = HttpProbe::of(agent, "livenessProbe");
    let a = live.once(node).expect("liveness probe");
    assert!(a.success(), "liveness: {a:?}");
}

/// Runs `cmd` in container `id`; its stdout, or a panic with its output.
fn exec(cri: &mut Cri, id: &str, cmd: &[&str]) -> String {
    let out = cri
        .exec_sync(id, cmd, 30)
        .unwrap_or_else(|e| panic!("{cmd:?}: {}", chain(&e)));
    assert_eq!(
        out.exit_code,
        0,
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The agent container runs as the manifest asks: its capabilities, no_new_privs, no seccomp
/// filter, and the runtime's read-only `/proc/sys` (the reason for the proc-sys-net mount).
fn check_agent_container(cri: &mut Cri, pod: &PodRun) {
    let id = pod.container("agent");
    let pid = cri.container_pid(id).unwrap();
    let caps = u64::from_str_radix(&proc_status(pid, "CapEff"), 16).unwrap();
    assert_eq!(caps, AGENT_CAPS, "effective capabilities {caps:#x}");
    assert_eq!(
        proc_status(pid, "CapBnd"),
        proc_status(pid, "CapEff"),
        "bounding set"
    );
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(
        proc_status(pid, "Seccomp"),
        "0",
        "seccompProfile: Unconfined"
    );
    let out = cri
        .exec_sync(
            id,
            &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
            10,
        )
        .unwrap();
    assert_ne!(out.exit_code, 0, "/proc/sys is writable in the container");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Read-only file system"), "{err}");
}

/// The agent installed (init container), loaded, pinned and configured the node.
fn check_node_setup(fs_: &NodeFs, node: &NetNs) {
    let installed = fs_.root.join("opt/cni/bin/sixlane");
    let md = fs::metadata(&installed).expect("the init container installed the plugin");
    assert_eq!(md.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        fs::read(&installed).unwrap(),
        fs::read(image::packaged("sixlane")).unwrap(),
        "the installed plugin is the image's"
    );
    let conflist: Value = serde_json::from_slice(
        &fs::read(fs_.root.join("etc/cni/net.d/10-sixlane.conflist")).expect("conflist written"),
    )
    .unwrap();
    let plugin = &conflist["plugins"][0];
    assert_eq!(plugin["pinRoot"], "/sys/fs/bpf/sixlane", "{conflist}");
    assert_eq!(
        plugin["ipam"]["ranges"][0][0]["subnet"], POD_CIDR,
        "{conflist}"
    );
    let pinned = pins(&fs_.pins());
    assert!(pinned.iter().any(|p| p.starts_with("maps/")), "{pinned:?}");
    assert!(pinned.iter().any(|p| p.starts_with("progs/")), "{pinned:?}");
    let fwd = node.enter(|| fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap());
    assert_eq!(
        fwd.trim(),
        "1",
        "the agent enabled IPv4 forwarding through its mount"
    );
    let services = bins::agent_json(&fs_.pins(), &["services"]);
    assert!(
        services.to_string().contains(&WEB_VIP.to_string()),
        "Service web programmed from the API: {services}"
    );
}

/// The node with everything around it: topology, servers, containerd, the API stand-in.
/// Dropped in field order: the API server and containerd (with every container) while the
/// node's namespace still exists, the namespaces, then the node's files.
struct World {
    api: ApiServer,
    cd: Containerd,
    _servers: (HttpServer, HttpServer, EchoServer, EchoServer),
    net: Internet,
    node: NetNs,
    fs: NodeFs,
    cluster: Cluster,
    kubelet_node: Node,
}

/// The node and its networks: the uplink carries the node's IPv6 address (fd00:1::1) and the
/// NAT64 pool; the router beside it hosts the Service's backend (fd00:1::2) and routes the pod
/// range back to the node. IPv4 forwarding is off, as on a node that never needed it: the agent
/// must turn it on.
fn node_network() -> (NetNs, Internet) {
    let node = sim::node().unwrap();
    let net = Internet::new(&node).unwrap();
    node.sysctl("net.ipv4.ip_forward", "0").unwrap();
    let add6 = |addr: Ipv6Addr| format!("{addr}/64");
    node.ip(&[
        "-6",
        "addr",
        "add",
        &add6(NODE6),
        "dev",
        net.uplink(),
        "nodad",
    ])
    .unwrap();
    net.up
        .b
        .ip(&["-6", "addr", "add", &add6(BACKEND6), "dev", "{}", "nodad"])
        .unwrap();
    let via = NODE6.to_string();
    net.rtr
        .ip(&["-6", "route", "add", "fd00:10:244::/56", "via", &via])
        .unwrap();
    (node, net)
}

/// The Service's backend (HTTP, echo) and the IPv4-only server (HTTP, echo).
fn servers(net: &Internet) -> (HttpServer, HttpServer, EchoServer, EchoServer) {
    (
        HttpServer::start(
            &net.rtr,
            (BACKEND6, 8080).into(),
            b"hello from web".to_vec(),
        ),
        HttpServer::start(
            &net.inet,
            (SERVER4, 8080).into(),
            b"hello over NAT64".to_vec(),
        ),
        EchoServer::start(&net.rtr, (BACKEND6, 7).into()),
        EchoServer::start(&net.inet, (SERVER4, 7).into()),
    )
}

impl World {
    /// The node with `extra` appended to the agent's configuration (see [`config_maps`]).
    fn new(extra: &str) -> Self {
        let (node, net) = node_network();
        let servers = servers(&net);
        let fs_ = NodeFs::new();
        let pod_image = containerd::busybox_image_as(
            &fs_.dir().join("pod-image"),
            POD_IMAGE,
            &["/bin/sleep", "2147483647"],
            &["sh", "sleep", "wget", "cat"],
            &[],
        )
        .unwrap();
        let cd = Containerd::start_cri_node(
            &node,
            &fs_.dir().join("containerd"),
            &fs_.binds(),
            POD_IMAGE,
        )
        .unwrap();
        cd.import_to("k8s.io", &pod_image).unwrap();
        let tls = Tls::new(&fs_.dir().join("tls"), NODE6);
        let token = format!("sixlane-test-{}", std::process::id());
        let api = ApiServer::start(
            &node,
            SocketAddr::from((NODE6, API_PORT)),
            &tls,
            &token,
            cluster_objects(),
        );
        let cluster = Cluster {
            config_maps: config_maps(extra),
            token,
            ca_crt: fs::read_to_string(&tls.ca_crt).unwrap(),
        };
        let kubelet_node = Node {
            name: NODE.into(),
            host_paths: fs_.host_paths(),
            root: fs_.dir().join("kubelet"),
            cgroup_parent: cd.cgroup_parent().unwrap(),
            cluster_dns: "fd00:10:96::a".into(),
            cluster_domain: "cluster.local".into(),
            kubernetes_service: SocketAddr::from((KUBERNETES_VIP, 443)),
        };
        Self {
            api,
            cd,
            _servers: servers,
            net,
            node,
            fs: fs_,
            cluster,
            kubelet_node,
        }
    }

    fn import(&self, tag: &str) {
        let out = image::build(
            tag,
            &self
                .fs
                .dir()
                .join(format!("{}.tar", tag.replace(['/', ':'], "_"))),
        );
        self.cd.import_to("k8s.io", &out).unwrap();
    }
}

/// A workload pod through the CRI, addressed by sixlane's CNI plugin; returns (sandbox, a
/// container in it, the pod's network namespace path).
fn workload(cri: &mut Cri, w: &World) -> (String, String, PathBuf) {
    let pod = Pod {
        name: "client".into(),
        namespace: "default".into(),
        uid: "6e3c5d0a-0000-4000-8000-0000000000c1".into(),
        dns_servers: vec![],
        dns_searches: vec![],
        cgroup_parent: w.cd.cgroup_parent().unwrap(),
        log_directory: w.fs.dir().join("client-logs"),
        annotations: Vec::new(),
    };
    let cd_log = || fs::read_to_string(w.cd.dir().join("containerd.log")).unwrap_or_default();
    let sandbox = cri
        .run_pod(&pod)
        .unwrap_or_else(|e| panic!("{}\ncontainerd:\n{}", chain(&e), cd_log()));
    let status = cri.pod_status(&sandbox).unwrap();
    let ip: Ipv6Addr = status.ip.parse().unwrap_or_else(|_| panic!("{status:?}"));
    let cidr: ipnet::Ipv6Net = POD_CIDR.parse().unwrap();
    assert!(cidr.contains(&ip), "pod address {ip} outside {POD_CIDR}");
    let ctr = cri
        .start_container(&sandbox, &pod, "client", POD_IMAGE, &["/bin/sleep", "3600"])
        .unwrap();
    let pid = cri.container_pid(&ctr).unwrap();
    (sandbox, ctr, PathBuf::from(format!("/proc/{pid}/ns/net")))
}

/// Long-lived echo connections from the pod: one through the Service's ClusterIP, one through
/// NAT64 to the IPv4-only host.
fn pingers(pod_ns: &Path) -> [Pinger; 2] {
    [
        SocketAddr::from((WEB_VIP, 7)),
        SocketAddr::from((nat64_addr(SERVER4), 7)),
    ]
    .map(|to| {
        let mut s = enter_path(pod_ns, || {
            std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))
        })
        .unwrap_or_else(|e| panic!("connecting to {to} from the pod: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        echo::exchange(&mut s, b"hello");
        Pinger::start(s)
    })
}

/// What the pod reaches with fresh connections: the Service and the IPv4-only server.
/// (ExecSync's timeout bounds wget: busybox 1.35's `wget -T` crashes.)
fn check_reach(cri: &mut Cri, ctr: &str) {
    let body = exec(
        cri,
        ctr,
        &["wget", "-q", "-O", "-", &format!("http://[{WEB_VIP}]/")],
    );
    assert_eq!(body, "hello from web");
    let url = format!("http://[{}]:8080/", nat64_addr(SERVER4));
    assert_eq!(
        exec(cri, ctr, &["wget", "-q", "-O", "-", &url]),
        "hello over NAT64"
    );
}

/// The DaemonSet with every container's image set to `image` (what `kubectl set image` does).
fn with_image(ds: &Value, image: &str) -> Value {
    let mut next = ds.clone();
    let spec = &mut next["spec"]["template"]["spec"];
    for key in ["initContainers", "containers"] {
        for c in spec[key].as_array_mut().into_iter().flatten() {
            c["image"] = image.into();
        }
    }
    next
}

/// The rolling update as the DaemonSet controller and kubelet do it (maxUnavailable 1): the old
/// pod deleted (SIGTERM, the grace period), a pod of a rebuilt image created. Connections
/// through the ClusterIP and NAT64 flow throughout; pins and attached programs are the same
/// after as before, none of them twice. Returns the new pod.
fn roll(
    k: &mut Kubelet<'_>,
    w: &World,
    ds: &Value,
    old: &PodRun,
    pod_ns: &Path,
    host_veth: &str,
) -> PodRun {
    let pingers = pingers(pod_ns);
    let pins_before = pins(&w.fs.pins());
    let attached_before = [
        attached(&w.node, host_veth),
        attached(&w.node, w.net.uplink()),
    ];
    assert!(
        attached_before.iter().all(|a| !a.is_empty()),
        "{attached_before:?}\n{}",
        w.node.exec("bpftool", &["net", "show"]).unwrap_or_default()
    );
    w.import(NEXT_IMAGE);
    let next = with_image(ds, NEXT_IMAGE);
    let t0 = Instant::now();
    let codes = k.delete(old);
    assert!(
        t0.elapsed() < Duration::from_secs(old.grace_secs as u64),
        "the agent outlived SIGTERM until the grace period's SIGKILL"
    );
    assert_eq!(
        kubelet::exit_codes(&codes),
        [("agent".to_owned(), 0), ("bird".to_owned(), 0)],
        "the agent's and bird-run's exits on SIGTERM"
    );
    let new = k.run(&next);
    wait_ready(k, &w.node, &new, &next);
    let trips: Vec<u64> = pingers.into_iter().map(Pinger::finish).collect();
    assert!(trips.iter().all(|&t| t > 0), "{trips:?}");
    assert_eq!(pins(&w.fs.pins()), pins_before, "pins after the update");
    let attached_after = [
        attached(&w.node, host_veth),
        attached(&w.node, w.net.uplink()),
    ];
    assert_eq!(
        attached_after, attached_before,
        "programs attached after the update"
    );
    new
}

/// `ds` without volume `name` and its mounts: an older manifest, or one edited wrong.
fn without_volume(ds: &Value, name: &str) -> Value {
    let mut ds = ds.clone();
    let spec = &mut ds["spec"]["template"]["spec"];
    let keep = |v: &Value| v["name"] != name;
    spec["volumes"].as_array_mut().unwrap().retain(keep);
    for c in spec["containers"].as_array_mut().unwrap() {
        c["volumeMounts"].as_array_mut().unwrap().retain(keep);
    }
    ds
}

/// Without the proc-sys-net mount the agent cannot turn IPv4 forwarding on (the runtime's
/// `/proc/sys` is read-only): it stays not ready, and `/readyz` names the sysctl, the path it
/// tried and the fix. Nothing is changed on the node.
fn check_unready_without_sysctl_mount(k: &mut Kubelet<'_>, w: &World, ds: &Value) {
    let broken = without_volume(ds, "proc-sys-net");
    let pod = k.run(&broken);
    let probe = HttpProbe::of(agent_container(&broken), "readinessProbe");
    let start = Instant::now();
    let answer = loop {
        match probe.once(&w.node) {
            Ok(a) if a.body.contains("net.ipv4.ip_forward") => break a,
            got => assert!(
                start.elapsed() < Duration::from_secs(60),
                "no sysctl reason on /readyz: {got:?}\n{}",
                k.log(pod.container("agent"))
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(answer.status, 503, "{answer:?}");
    for part in [
        "cannot set net.ipv4.ip_forward=1, which NAT64 (nat64.mode: translate) needs",
        "writing /host/proc/sys/net/ipv4/ip_forward: No such file or directory",
        "sysctl -w net.ipv4.ip_forward=1",
    ] {
        assert!(
            answer.body.contains(part),
            "{part:?} not in: {}",
            answer.body
        );
    }
    let fwd = w
        .node
        .enter(|| fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap());
    assert_eq!(fwd.trim(), "0");
    assert_eq!(
        kubelet::exit_codes(&k.delete(&pod)),
        [("agent".to_owned(), 0), ("bird".to_owned(), 0)]
    );
}

/// The tests of this file one at a time: each builds the image (cargo, buildah's storage).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// With BGP off (the shipped configuration) the bird container only waits, saying for what.
fn check_bird_waits(k: &mut Kubelet<'_>, pod: &PodRun) {
    let id = pod.container("bird").to_owned();
    let start = Instant::now();
    while !k
        .log(&id)
        .contains("waiting for the agent to write BIRD's configuration")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "bird-run's log:\n{}",
            k.log(&id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!k.log(&id).contains("starting BIRD"), "{}", k.log(&id));
}

#[test]
fn the_daemonset_runs_under_kubelet_and_rolls_without_breaking_connections() {
    sixlane_testkit::require_root();
    let _serial = serial();
    let w = World::new("");
    w.import(IMAGE);
    let mut cri = Cri::connect(w.cd.socket()).unwrap();
    let ds = daemonset();
    let mut k = Kubelet {
        cri: &mut cri,
        node: &w.kubelet_node,
        cluster: &w.cluster,
    };
    check_unready_without_sysctl_mount(&mut k, &w, &ds);
    let first = k.run(&ds);
    wait_ready(&mut k, &w.node, &first, &ds);
    check_agent_container(k.cri, &first);
    check_bird_waits(&mut k, &first);
    check_node_setup(&w.fs, &w.node);
    let reqs = w.api.requests();
    assert!(reqs.iter().all(|r| r.authorized), "{reqs:?}");
    for path in [
        "/api/v1/nodes",
        "/api/v1/services",
        "/apis/discovery.k8s.io/v1/endpointslices",
    ] {
        assert!(
            reqs.iter().any(|r| r.path == path && !r.watch),
            "no list of {path}: {reqs:?}"
        );
    }

    let (sandbox, ctr, pod_ns) = workload(k.cri, &w);
    check_reach(k.cri, &ctr);
    let host_veth = links(&w.node)
        .into_iter()
        .find(|l| plumb::is_host_ifname(l))
        .expect("the pod's host veth");
    let rows = bins::agent_json(&w.fs.pins(), &["nat64", "sessions"]);
    assert!(rows.to_string().contains(&SERVER4.to_string()), "{rows}");

    let second = roll(&mut k, &w, &ds, &first, &pod_ns, &host_veth);
    check_reach(k.cri, &ctr);

    k.cri.stop_pod(&sandbox).unwrap();
    k.cri.remove_pod(&sandbox).unwrap();
    k.delete(&second);
}

/// The router's ASN and the node's (the agent's default, `bgp.localASN` unset).
const ROUTER_ASN: u32 = 65000;
const NODE_ASN: u32 = 64512;
/// The bird container's capabilities, as the manifest adds them: CAP_NET_BIND_SERVICE (10),
/// CAP_NET_ADMIN (12).
const BIRD_CAPS: u64 = (1 << 10) | (1 << 12);
/// How long the router keeps a gracefully restarting node's routes (BIRD's `graceful restart
/// time`, the agent's default `gracefulRestartSeconds`).
const RESTART_TIME: Duration = Duration::from_secs(120);

/// BGP on, as docs/routing.md shows it for Kubernetes: one peer, the router beside the node
/// (the ClusterIP range given, not read from the cluster's ServiceCIDR objects).
fn bgp_config() -> String {
    format!(
        "bgp:\n  enabled: true\n  peers:\n  - {{name: tor, address: \"{BACKEND6}\", asn: \
         {ROUTER_ASN}}}\n  announce: {{clusterIPRanges: [\"fd00:10:96::/108\"]}}\n"
    )
}

/// The router beside the node (the namespace holding the Service's backend) running FRR with
/// the node as its neighbor, and a monitor of its kernel FIB.
fn router(w: &World) -> (Frr, RouteMonitor) {
    let mon = RouteMonitor::start(&w.net.rtr).unwrap();
    let frr = Frr::start(
        &w.net.rtr,
        FrrConfig::new(ROUTER_ASN, "10.255.0.1".parse().unwrap())
            .neighbor(Neighbor::new(NODE6, RemoteAs::Asn(NODE_ASN))),
    )
    .unwrap();
    (frr, mon)
}

/// The node's link-local address on its uplink: the next hop a router installs for a route
/// learned from a directly connected peer that sent one.
fn node_link_local(w: &World) -> Ipv6Addr {
    let out = w
        .node
        .exec(
            "ip",
            &[
                "-6",
                "-o",
                "addr",
                "show",
                "dev",
                w.net.uplink(),
                "scope",
                "link",
            ],
        )
        .unwrap();
    out.split_whitespace()
        .find_map(|t| t.strip_suffix("/64")?.parse().ok())
        .unwrap_or_else(|| panic!("no link-local address on the uplink: {out}"))
}

/// Waits until the router forwards `prefix` to the node (its global or link-local address)
/// with a route BGP installed.
fn wait_route_via_node(w: &World, prefix: Ipv6Net) -> fib::Route {
    let node = [NODE6, node_link_local(w)];
    wait::until(
        || format!("the router to install {prefix} via the node ({node:?}) from BGP"),
        Duration::from_secs(60),
        || {
            Ok(fib::route(&w.net.rtr, prefix)?.filter(|r| {
                let gw = r.gateways();
                r.protocol == "bgp" && gw.len() == 1 && node.contains(&gw[0])
            }))
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{}; the router's FIB: {:?}",
            chain(&e),
            fib::routes(&w.net.rtr)
        )
    })
}

/// The removals of `prefix` from the router's FIB since `from`.
fn removals(mon: &RouteMonitor, from: usize, prefix: Ipv6Net) -> Vec<rtmon::Event> {
    mon.events_since(from)
        .into_iter()
        .filter(|e| e.dst == prefix && e.change == Change::Removed)
        .collect()
}

/// `sixlane-agent bgp --json` in the agent container: the peer `tor` as it reports it.
fn agent_peer(cri: &mut Cri, pod: &PodRun) -> Value {
    let out = exec(
        cri,
        pod.container("agent"),
        &["sixlane-agent", "bgp", "--json"],
    );
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "tor"))
        .cloned()
        .unwrap_or_else(|| panic!("no peer tor in {v}"))
}

/// Waits until the agent container's `bgp --json` reports the session established.
fn wait_agent_sees_peer_up(k: &mut Kubelet<'_>, pod: &PodRun) -> Value {
    let start = Instant::now();
    loop {
        let peer = agent_peer(k.cri, pod);
        if peer["up"] == true && peer["state"] == "Established" {
            return peer;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the agent never reported the session up: {peer}\nagent:\n{}\nbird:\n{}",
            k.log(pod.container("agent")),
            k.log(pod.container("bird"))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The bird container runs as the manifest asks: BIRD itself is its main process (bird-run
/// exec'd it; `-R` when `recovering`), with only NET_ADMIN and NET_BIND_SERVICE.
fn check_bird_container(cri: &mut Cri, pod: &PodRun, recovering: bool) {
    let pid = cri.container_pid(pod.container("bird")).unwrap();
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "bird", "the container's main process");
    let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<&str> = cmdline.split('\0').filter(|a| !a.is_empty()).collect();
    let mut want = vec![
        "/usr/sbin/bird",
        "-f",
        "-c",
        "/run/sixlane/bird/bird.conf",
        "-s",
        "/run/sixlane/bird/bird.ctl",
        "-P",
        "/run/sixlane/bird/bird.pid",
    ];
    if recovering {
        want.push("-R");
    }
    assert_eq!(args, want);
    let caps = u64::from_str_radix(&proc_status(pid, "CapEff"), 16).unwrap();
    assert_eq!(caps, BIRD_CAPS, "effective capabilities {caps:#x}");
    assert_eq!(proc_status(pid, "CapBnd"), proc_status(pid, "CapEff"));
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
}

/// The pod replaced as a rollout does it: bird's preStop hook (`birdc … graceful restart`)
/// must have worked, both containers exit 0.
fn replace(k: &mut Kubelet<'_>, w: &World, ds: &Value, old: &PodRun) -> PodRun {
    let stopped = k.delete(old);
    let bird = stopped.iter().find(|s| s.name == "bird").unwrap();
    let (code, out) = bird.pre_stop.clone().expect("bird has a preStop hook");
    assert_eq!(code, 0, "preStop: {out}");
    assert_eq!(
        kubelet::exit_codes(&stopped),
        [("agent".to_owned(), 0), ("bird".to_owned(), 0)]
    );
    let new = k.run(ds);
    wait_ready(k, &w.node, &new, ds);
    new
}

#[test]
fn the_daemonsets_bird_keeps_the_routers_routes_across_agent_restarts_and_rollouts() {
    sixlane_testkit::require_root();
    let _serial = serial();
    let w = World::new(&bgp_config());
    w.import(IMAGE);
    let (mut frr, mon) = router(&w);
    let mut cri = Cri::connect(w.cd.socket()).unwrap();
    let ds = daemonset();
    let pod_cidr: Ipv6Net = POD_CIDR.parse().unwrap();
    let bird_conf = w.fs.root.join("run/sixlane/bird/bird.conf");
    let mut k = Kubelet {
        cri: &mut cri,
        node: &w.kubelet_node,
        cluster: &w.cluster,
    };

    // The node's BIRD peers with the router, which forwards the pod CIDR to the node.
    let mut pod = k.run(&ds);
    wait_ready(&mut k, &w.node, &pod, &ds);
    frr.wait_established(NODE6, Duration::from_secs(60))
        .unwrap_or_else(|e| {
            panic!(
                "{}\nbird:\n{}\nagent:\n{}",
                chain(&e),
                k.log(pod.container("bird")),
                k.log(pod.container("agent"))
            )
        });
    wait_route_via_node(&w, pod_cidr);
    check_bird_container(k.cri, &pod, false);
    let peer = wait_agent_sees_peer_up(&mut k, &pod);
    assert_eq!(peer["asn"], ROUTER_ASN, "{peer}");
    assert_eq!(peer["address"], BACKEND6.to_string(), "{peer}");

    // Only the agent container restarts: the session and the route stay.
    let before = frr.neighbors().unwrap()[&NODE6.to_string()].clone();
    let from = mon.cursor();
    let stopped = k.restart(&mut pod, "agent");
    assert_eq!(stopped.exit_code, 0, "{stopped:?}");
    wait_ready(&mut k, &w.node, &pod, &ds);
    wait_agent_sees_peer_up(&mut k, &pod);
    let after = frr.neighbors().unwrap()[&NODE6.to_string()].clone();
    assert!(after.established(), "{after:?}");
    assert_eq!(
        (after.connections_established, after.connections_dropped),
        (before.connections_established, before.connections_dropped),
        "the session was reset by the agent's restart"
    );
    assert_eq!(removals(&mon, from, pod_cidr), []);
    wait_route_via_node(&w, pod_cidr);

    // The pod is replaced: BIRD stops gracefully (preStop), the next pod's BIRD recovers with
    // the configuration left in the hostPath; the router forwards to the node throughout.
    let from = mon.cursor();
    let pod = replace(&mut k, &w, &ds, &pod);
    check_bird_container(k.cri, &pod, true);
    frr.wait_neighbor(NODE6, "re-established", RESTART_TIME, |n| {
        n.established() && n.connections_established > before.connections_established
    })
    .unwrap();
    wait_agent_sees_peer_up(&mut k, &pod);
    wait_route_via_node(&w, pod_cidr);
    assert_eq!(
        removals(&mon, from, pod_cidr),
        [],
        "the pod CIDR left the router's FIB during the rollout"
    );

    // BGP turned off in the ConfigMap, the pod replaced: the agent retires the configuration
    // and any BIRD started with it, the router withdraws the route: at once if that BIRD had
    // its session back before the agent shut it down, else when the graceful restart time the
    // previous BIRD announced runs out.
    let off = Cluster {
        config_maps: config_maps(""),
        ..w.cluster.clone()
    };
    let from = mon.cursor();
    let mut k = Kubelet {
        cri: k.cri,
        node: &w.kubelet_node,
        cluster: &off,
    };
    let pod = replace(&mut k, &w, &ds, &pod);
    mon.wait_all(
        from,
        Change::Removed,
        &[pod_cidr],
        RESTART_TIME + Duration::from_secs(30),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{}\nagent:\n{}\nbird:\n{}",
            chain(&e),
            k.log(pod.container("agent")),
            k.log(pod.container("bird"))
        )
    });
    assert_eq!(fib::route(&w.net.rtr, pod_cidr).unwrap(), None);
    assert!(
        !bird_conf.exists(),
        "{} is still there",
        bird_conf.display()
    );
    let log = k.log(pod.container("agent"));
    assert!(
        log.contains("retired BIRD's configuration left by an earlier agent"),
        "{log}"
    );
    frr.check_alive().unwrap();
    assert_eq!(
        kubelet::exit_codes(&k.delete(&pod)),
        [("agent".to_owned(), 0), ("bird".to_owned(), 0)]
    );
}
