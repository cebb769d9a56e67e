//! The demo's Kubernetes side: per node a private containerd (pods), the real `sixlane-agent`
//! in static-manifest mode and the real `sixlane` CNI plugin; the manifests the agents watch.

use std::{
    fs,
    net::Ipv6Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use sixlane_testkit::{ChildGuard, NetNs, containerd::Containerd};

use super::{
    bird::Bird,
    net::{self, NODES, NodeSpec},
    router,
};

pub const CLUSTER_IP: &str = "fd00:96::80";
/// Service `web-lb`'s ClusterIP.
pub const LB_CLUSTER_IP: &str = "fd00:96::81";
/// The Service ClusterIP range (kube-apiserver's `--service-cluster-ip-range`), announced by
/// every node.
pub const SERVICE_RANGE: &str = "fd00:96::/108";
/// The LoadBalancer pool; its first address is `::1`, never `::` (the subnet-router anycast).
pub const LB_POOL: &str = "fd00:200::/120";
/// What LoadBalancer addresses may be announced from (the allow-list).
pub const LB_ANNOUNCE: &str = "fd00:200::/64";
pub const NODE_PORT: u16 = 30080;
/// Where each agent serves metrics and health, inside its node namespace.
pub const METRICS: &str = "[::1]:9660";

/// One node's moving parts.
pub struct Node {
    pub spec: &'static NodeSpec,
    pub dir: PathBuf,
    pub pins: PathBuf,
    pub containerd: Containerd,
    pub agent: ChildGuard,
    /// The BIRD the agent started: stopped after the agent (field order is drop order).
    #[allow(dead_code, reason = "held for its drop guard")]
    pub bird: Bird,
}

impl Node {
    /// `sixlane-agent` against this node's pins, run inside the node.
    pub fn agent_cmd(&self, ns: &NetNs, bin: &Path, args: &[&str]) -> Command {
        let mut c = ns.command(&bin.to_string_lossy());
        c.arg("--pin-root").arg(&self.pins).args(args);
        c
    }

    /// `sixlane-agent --json <args>` on this node, decoded.
    pub fn agent_json(
        &self,
        ns: &NetNs,
        bin: &Path,
        args: &[&str],
    ) -> anyhow::Result<serde_json::Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = crate::sh::output(&mut self.agent_cmd(ns, bin, &all))?;
        serde_json::from_str(&out)
            .with_context(|| format!("sixlane-agent --json {}: {out}", args.join(" ")))
    }

    /// The agent's state directory (`--state-dir` of the CLI).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }
}

/// Where the agent keeps BIRD's configuration, control socket, pid file and log: inside the
/// node's directory, so nothing of the host's `/run` is touched.
pub fn bird_dir(node_dir: &Path) -> PathBuf {
    node_dir.join("bird")
}

fn agent_config(spec: &NodeSpec, dir: &Path, cd: &Containerd, manifests: &Path) -> String {
    format!(
        "# sixlane-agent configuration for {name} (written by cargo xtask demo)\n\
         node:\n  name: {name}\n  stateDir: {state}\n  uplink: eth0\n\
         source:\n  mode: static\n  manifestDir: {manifests}\n  pollIntervalMs: 200\n  debounceMs: 50\n\
         cni:\n  confDir: {netd}\n  binDir: {bins}\n  dataDir: {ipam}\n  dataplane: required\n  logFile: {cnilog}\n  logLevel: info\n\
         metrics:\n  listen: \"{metrics}\"\n\
         healthz:\n  kubeProxyListen: \"[::]:10256\"\n\
         logging:\n  level: info\n\
         nat64:\n  mode: translate\n  prefix: {prefix}\n  pool: [{v4}]\n  podCIDRs: [{pods}]\n\
         routing:\n  mode: bgp\n\
         bgp:\n  enabled: true\n  localASN: {asn}\n\
         \x20 peers:\n  - {{name: fabric, address: \"{router}\", asn: {router_asn}}}\n\
         \x20 import: [\"{pods}\"]\n\
         \x20 announce:\n    clusterIPRanges: [\"{services}\"]\n    loadBalancerIPs: [\"{lb_announce}\"]\n\
         \x20 bird: {{supervise: true, dir: {bird}}}\n\
         loadBalancer:\n  enabled: true\n  pools:\n  - {{name: public, cidrs: [\"{lb_pool}\"]}}\n",
        name = spec.name,
        state = dir.join("state").display(),
        manifests = manifests.display(),
        netd = cd.dir().join("net.d").display(),
        bins = cd.dir().join("cni-bin").display(),
        ipam = dir.join("ipam").display(),
        cnilog = dir.join("cni.log").display(),
        metrics = METRICS,
        prefix = net::NAT64_PREFIX,
        v4 = spec.v4,
        pods = net::POD_SUPERNET,
        asn = router::NODE_ASN,
        router = net::FABRIC6,
        router_asn = router::ASN,
        services = SERVICE_RANGE,
        lb_announce = LB_ANNOUNCE,
        bird = bird_dir(dir).display(),
        lb_pool = LB_POOL,
    )
}

/// The Node objects both agents watch (static mode reads what kubelet would register).
pub fn nodes_manifest() -> String {
    let mut out = String::new();
    for n in &NODES {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDRs: [\"{cidr}\"]\n\
             status:\n  addresses:\n  - {{type: InternalIP, address: \"{v6}\"}}\n",
            name = n.name,
            cidr = n.pod_cidr,
            v6 = n.v6,
        ));
    }
    out
}

/// Service `web` (ClusterIP and NodePort) and its EndpointSlice with the given backends
/// (address, node).
pub fn web_manifest(backends: &[(Ipv6Addr, &str)]) -> String {
    service_manifest(
        "web",
        &format!(
            "\x20 type: NodePort\n  clusterIP: \"{CLUSTER_IP}\"\n  clusterIPs: [\"{CLUSTER_IP}\"]\n\
             \x20 ports:\n  - {{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: {NODE_PORT}}}\n"
        ),
        backends,
    )
}

/// Service `web-lb` (LoadBalancer: its address comes from the agents' pool) and its
/// EndpointSlice with the given backends (address, node).
pub fn web_lb_manifest(backends: &[(Ipv6Addr, &str)]) -> String {
    service_manifest(
        "web-lb",
        &format!(
            "\x20 type: LoadBalancer\n  clusterIP: \"{LB_CLUSTER_IP}\"\n  clusterIPs: [\"{LB_CLUSTER_IP}\"]\n\
             \x20 ports:\n  - {{name: http, protocol: TCP, port: 80, targetPort: 8080}}\n"
        ),
        backends,
    )
}

/// A Service `name` selecting `app: web` (`spec` lines added) and its EndpointSlice with the
/// given backends (address, node).
fn service_manifest(name: &str, spec: &str, backends: &[(Ipv6Addr, &str)]) -> String {
    let mut eps = String::new();
    for (addr, node) in backends {
        eps.push_str(&format!(
            "- addresses: [\"{addr}\"]\n  conditions: {{ready: true, serving: true, terminating: false}}\n  nodeName: {node}\n"
        ));
    }
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n\
         \x20 ipFamilies: [IPv6]\n  externalTrafficPolicy: Cluster\n  selector: {{app: web}}\n{spec}\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-demo\n  namespace: default\n\
         \x20 labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv6\n\
         ports:\n- {{name: http, protocol: TCP, port: 8080}}\nendpoints:\n{eps}"
    )
}

/// Writes `text` to `path` atomically (the agents poll the directory).
pub fn write_manifest(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > Duration::from_secs(secs) {
            bail!("timed out after {secs} s waiting for {what}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// HTTP GET inside `ns` with curl; the body, or why not.
pub fn http_get(ns: &NetNs, url: &str) -> anyhow::Result<String> {
    let out = ns.exec_output("curl", &["-sS", "-g", "--max-time", "5", url])?;
    if !out.status.success() {
        bail!(
            "curl {url} in {}: {}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts containerd and the agent on `spec`'s node and waits until the agent is ready.
pub fn start_node(
    ns: &NetNs,
    spec: &'static NodeSpec,
    root: &Path,
    bins: &Bins,
    manifests: &Path,
    image: &Path,
) -> anyhow::Result<Node> {
    let dir = root.join(spec.name);
    let cd_dir = dir.join("containerd");
    fs::create_dir_all(&cd_dir)?;
    let containerd = Containerd::start(
        ns,
        &cd_dir,
        &[],
        &[
            ("sixlane", &bins.cni),
            ("loopback", Path::new("/usr/lib/cni/loopback")),
        ],
    )
    .with_context(|| format!("starting containerd on {}", spec.name))?;
    containerd
        .import(image)
        .with_context(|| format!("importing the pod image on {}", spec.name))?;

    let pins = PathBuf::from(format!(
        "/sys/fs/bpf/{}{}",
        super::teardown::PREFIX,
        spec.name
    ));
    let cfg_path = dir.join("agent.yaml");
    fs::write(&cfg_path, agent_config(spec, &dir, &containerd, manifests))?;
    let log = fs::File::create(dir.join("agent.log"))?;
    let mut c = ns.command(&bins.agent.to_string_lossy());
    c.arg("--pin-root")
        .arg(&pins)
        .arg("run")
        .arg("--config")
        .arg(&cfg_path)
        .env("SIXLANE_LOG", "info")
        .stdout(log.try_clone()?)
        .stderr(log);
    let agent = ChildGuard::spawn(&mut c)?;
    let bird = Bird {
        pid_file: bird_dir(&dir).join("bird.pid"),
    };
    let mut node = Node {
        spec,
        dir,
        pins,
        containerd,
        agent,
        bird,
    };
    let url = format!("http://{METRICS}/readyz");
    let ready = wait_for(&format!("{}'s agent to be ready", spec.name), 60, || {
        if node.agent.exited().is_some() {
            return Some(false);
        }
        let out = ns.exec_output("curl", &["-sf", "-g", &url]).ok()?;
        out.status.success().then_some(true)
    })?;
    if !ready {
        bail!(
            "{}'s agent exited; its log:\n{}",
            spec.name,
            fs::read_to_string(node.dir.join("agent.log")).unwrap_or_default()
        );
    }
    Ok(node)
}

/// The binaries the demo runs.
pub struct Bins {
    pub agent: PathBuf,
    pub cni: PathBuf,
}

/// A pod: a container run with `ctr run --rm --cni` in the foreground of a background process
/// (so containerd calls CNI DEL when it ends).
pub struct Pod {
    pub name: String,
    pub node: &'static str,
    pub addr: Ipv6Addr,
    pub task_pid: u32,
    pub ctr: ChildGuard,
}

/// Runs a pod named `name` on `node` with command `cmd` and waits for its address.
pub fn run_pod(node: &Node, name: &str, cmd: &[&str]) -> anyhow::Result<Pod> {
    let log = fs::File::create(node.dir.join(format!("pod-{name}.log")))?;
    let runc_root = node.containerd.runc_root();
    let runc_root = runc_root.to_string_lossy();
    let mut args = vec![
        "run",
        "--rm",
        "--cni",
        "--runc-root",
        &runc_root,
        "--snapshotter",
        "native",
        sixlane_testkit::containerd::BUSYBOX_IMAGE,
        name,
    ];
    args.extend_from_slice(cmd);
    let mut c = node.containerd.ctr_cmd(&args);
    c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    let mut ctr = ChildGuard::spawn(&mut c)?;
    let task_pid = wait_for(&format!("pod {name} to run"), 30, || {
        if ctr.exited().is_some() {
            return Some(None);
        }
        node.containerd.task_pid(name).map(Some)
    })?
    .with_context(|| {
        format!(
            "pod {name} exited; its log:\n{}\nCNI log:\n{}",
            fs::read_to_string(node.dir.join(format!("pod-{name}.log"))).unwrap_or_default(),
            fs::read_to_string(node.dir.join("cni.log")).unwrap_or_default()
        )
    })?;
    let addr = pod_addr(task_pid)?;
    Ok(Pod {
        name: name.to_owned(),
        node: node.spec.name,
        addr,
        task_pid,
        ctr,
    })
}

/// `ip args...` (the host's iproute2) in a pod's network namespace.
pub fn pod_ip(pod: &Pod, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", pod.task_pid))
        .arg("ip")
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The global IPv6 address of a task's eth0.
fn pod_addr(pid: u32) -> anyhow::Result<Ipv6Addr> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args([
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next()?.parse().ok())
        .with_context(|| format!("no global address on the pod's eth0: {text}"))
}

/// Runs `cmd` inside pod `pod` (its namespaces, via its task pid): what `kubectl exec` does.
pub fn pod_exec(pod: &Pod, cmd: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("nsenter")
        .arg("-t")
        .arg(pod.task_pid.to_string())
        .args(["-n", "-m", "-u", "-i", "-p", "--"])
        .args(cmd)
        // The image's PATH: the host's (/usr/bin...) does not exist in a busybox container.
        .env("PATH", "/bin")
        .output()
        .context("nsenter into the pod")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "`{}` in pod {} failed: {}",
            cmd.join(" "),
            pod.name,
            text.trim()
        );
    }
    Ok(text)
}

/// Stops a pod the way kubelet would (kill the task); ctr's `--rm` then runs CNI DEL.
pub fn stop_pod(node: &Node, pod: &mut Pod) -> anyhow::Result<()> {
    let _ = node
        .containerd
        .ctr(&["task", "kill", "-s", "SIGKILL", &pod.name])?;
    pod.ctr
        .wait_timeout(Duration::from_secs(20))
        .with_context(|| format!("pod {} did not stop", pod.name))?;
    Ok(())
}
