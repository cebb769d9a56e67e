//! Playing kubelet for a DaemonSet's pod on one node: the pod template, read from the manifest,
//! becomes the CRI calls kubelet makes (`RunPodSandbox`, the init containers run to completion,
//! then `CreateContainer` + `StartContainer` for each container) with the fields kubelet fills
//! in: namespaces, capabilities, `no_new_privs`, seccomp, the runtime's default masked and
//! read-only paths for unprivileged containers, mounts for the volumes, the environment
//! (downward API, ConfigMaps, service variables), resources, and the service account token
//! ([`security`]: the security context, resources and namespaces).
//!
//! Stopping a container is kubelet's too: its `preStop` exec hook run (`ExecSync`) before
//! `StopContainer`, within the grace period.
//!
//! Every field of the manifest is accounted for in [`fields::TABLE`]: one it does not name
//! fails the test. The node's paths (hostPath volumes) are per-test directories given by
//! [`Node::host_paths`]; the probes are the test's to run ([`probe`]).

pub mod fields;
pub mod probe;
pub mod security;
mod value;

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, DnsConfig, ImageSpec, KeyValue,
    LinuxContainerConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount,
    MountPropagation, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
};
use serde_json::Value;
use sixlane_attach::chain;

use self::{
    security::{namespaces, resources, security_context},
    value::{str_of, strings},
};
use crate::cri::Cri;

/// Where kubelet mounts a pod's service account token.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The node kubelet runs on.
#[derive(Clone, Debug)]
pub struct Node {
    /// `spec.nodeName` of its pods.
    pub name: String,
    /// hostPath → the directory that stands for it on this test node.
    pub host_paths: BTreeMap<String, PathBuf>,
    /// kubelet's own directory: pods' volumes and logs.
    pub root: PathBuf,
    /// The cgroup pods are created under.
    pub cgroup_parent: String,
    /// kubelet's `clusterDNS` and `clusterDomain`.
    pub cluster_dns: String,
    pub cluster_domain: String,
    /// The `kubernetes` Service (ClusterIP, port): kubelet's service environment variables.
    pub kubernetes_service: SocketAddr,
}

/// What kubelet gets from the API server for a pod.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// ConfigMaps by `namespace/name`: their data.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// The service account's token (what the TokenRequest API would issue) and the cluster CA.
    pub token: String,
    pub ca_crt: String,
}

/// A pod kubelet started.
#[derive(Clone, Debug)]
pub struct PodRun {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub sandbox_id: String,
    pub sandbox: PodSandboxConfig,
    /// (name, ID) of the running containers (not the init containers).
    pub containers: Vec<(String, String)>,
    /// `terminationGracePeriodSeconds`.
    pub grace_secs: i64,
    /// The DaemonSet the pod was made from (a container restarted is made from it again).
    pub daemonset: Value,
    /// How often each container was restarted (its current container's `attempt`).
    pub restarts: BTreeMap<String, u32>,
}

/// What stopping a container gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopped {
    pub name: String,
    pub exit_code: i32,
    /// Its `preStop` exec hook's exit code and output (`None`: no hook); a failing hook is
    /// what kubelet reports as an event, not an error.
    pub pre_stop: Option<(i32, String)>,
}

/// The exit codes of `stopped`, by container name: what kubelet reports.
pub fn exit_codes(stopped: &[Stopped]) -> Vec<(String, i32)> {
    stopped
        .iter()
        .map(|s| (s.name.clone(), s.exit_code))
        .collect()
}

impl PodRun {
    /// The ID of container `name`.
    pub fn container(&self, name: &str) -> &str {
        self.containers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.as_str())
            .unwrap_or_else(|| panic!("pod {} has no container {name}", self.name))
    }
}

/// Reads every YAML document of `path` (empty documents skipped).
pub fn read_yaml(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The document of `kind` named `name` among `docs`.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// A random lowercase suffix of `n` characters (pod names, UIDs).
fn suffix(n: usize) -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = sixlane_testkit::rng::Rng::new(seed);
    (0..n)
        .map(|_| char::from(rng.pick(b"bcdfghjklmnpqrstvwxz2456789")))
        .collect()
}

/// kubelet on `node`, talking to the runtime through `cri`.
pub struct Kubelet<'a> {
    pub cri: &'a mut Cri,
    pub node: &'a Node,
    pub cluster: &'a Cluster,
}

impl Kubelet<'_> {
    /// Creates the pod of DaemonSet `ds` on this node as kubelet does, init containers run to
    /// completion first. Panics (with the container's log) on any failure, and on any field
    /// of the manifest [`fields::TABLE`] does not map.
    pub fn run(&mut self, ds: &Value) -> PodRun {
        check_daemonset(ds);
        let name = format!("{}-{}", str_of(&ds["metadata"]["name"], "name"), suffix(5));
        let namespace = str_of(&ds["metadata"]["namespace"], "namespace").to_owned();
        let uid = format!("{}-0000-4000-8000-{}", suffix(8), suffix(12));
        let spec = &ds["spec"]["template"]["spec"];
        let sandbox = self.sandbox_config(ds, &name, &namespace, &uid);
        let pod_dir = self.node.root.join(format!("pods/{uid}"));
        let volumes = self.volumes(spec, &namespace, &pod_dir);
        let sandbox_id = self
            .cri
            .run_sandbox(sandbox.clone())
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {}", chain(&e)));
        let ctx = PodCtx {
            spec,
            namespace: &namespace,
            volumes: &volumes,
            pod_dir: &pod_dir,
        };
        for c in spec["initContainers"].as_array().into_iter().flatten() {
            let id = self.start(&sandbox_id, &sandbox, &ctx, c, 0);
            self.wait_exit(&id, str_of(&c["name"], "name"));
        }
        let containers = spec["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .map(|c| {
                let id = self.start(&sandbox_id, &sandbox, &ctx, c, 0);
                (str_of(&c["name"], "name").to_owned(), id)
            })
            .collect();
        PodRun {
            name,
            namespace,
            uid,
            sandbox_id,
            sandbox,
            containers,
            grace_secs: spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(30),
            daemonset: ds.clone(),
            restarts: BTreeMap::new(),
        }
    }

    /// Deletes `pod` as kubelet does: each container stopped ([`Self::stop`]), then the
    /// sandbox stopped and removed.
    pub fn delete(&mut self, pod: &PodRun) -> Vec<Stopped> {
        let stopped = pod
            .containers
            .iter()
            .map(|(name, id)| self.stop(pod, name, id))
            .collect();
        self.cri.stop_pod(&pod.sandbox_id).expect("StopPodSandbox");
        self.cri
            .remove_pod(&pod.sandbox_id)
            .expect("RemovePodSandbox");
        stopped
    }

    /// Restarts container `name` of `pod` alone, as kubelet does when it kills one (a failed
    /// liveness probe) or after a crash: stopped, then a new container (the next attempt)
    /// created and started in the same sandbox.
    pub fn restart(&mut self, pod: &mut PodRun, name: &str) -> Stopped {
        let old = pod.container(name).to_owned();
        let stopped = self.stop(pod, name, &old);
        let attempt = pod.restarts.entry(name.to_owned()).or_default();
        *attempt += 1;
        let attempt = *attempt;
        let spec = &pod.daemonset["spec"]["template"]["spec"];
        let pod_dir = self.node.root.join(format!("pods/{}", pod.uid));
        let volumes = self.volumes(spec, &pod.namespace, &pod_dir);
        let ctx = PodCtx {
            spec,
            namespace: &pod.namespace,
            volumes: &volumes,
            pod_dir: &pod_dir,
        };
        let c = template_container(&pod.daemonset, name);
        let id = self.start(&pod.sandbox_id, &pod.sandbox, &ctx, c, attempt);
        for (n, i) in &mut pod.containers {
            if n == name {
                *i = id.clone();
            }
        }
        stopped
    }

    /// Stops container `id` (`name`) of `pod` as kubelet does: its `preStop` exec hook first
    /// (within the grace period; a failure is only reported), then `StopContainer` (SIGTERM,
    /// SIGKILL when what is left of the grace period ends, at least 2 s as kubelet grants).
    fn stop(&mut self, pod: &PodRun, name: &str, id: &str) -> Stopped {
        let c = template_container(&pod.daemonset, name);
        let start = Instant::now();
        let hook = strings(&c["lifecycle"]["preStop"]["exec"]["command"]);
        let pre_stop = (!hook.is_empty()).then(|| {
            let cmd: Vec<&str> = hook.iter().map(String::as_str).collect();
            match self.cri.exec_sync(id, &cmd, pod.grace_secs) {
                Ok(out) => (
                    out.exit_code,
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                ),
                Err(e) => (-1, chain(&e).to_string()),
            }
        });
        let left = (pod.grace_secs - start.elapsed().as_secs() as i64).max(2);
        self.cri
            .stop_container(id, left)
            .unwrap_or_else(|e| panic!("StopContainer {name}: {}", chain(&e)));
        // containerd records the task's exit from its event, which can trail StopContainer's
        // answer by a moment: the status is polled, briefly.
        let stopped = Instant::now();
        let l = loop {
            let l = self.cri.lifecycle(id).expect("ContainerStatus");
            if l.state == ContainerState::ContainerExited
                || stopped.elapsed() > Duration::from_secs(5)
            {
                break l;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(l.state, ContainerState::ContainerExited, "{name}: {l:?}");
        Stopped {
            name: name.to_owned(),
            exit_code: l.exit_code,
            pre_stop,
        }
    }

    fn start(
        &mut self,
        sandbox_id: &str,
        sandbox: &PodSandboxConfig,
        ctx: &PodCtx<'_>,
        c: &Value,
        attempt: u32,
    ) -> String {
        let name = str_of(&c["name"], "name");
        let image = str_of(&c["image"], "image");
        // imagePullPolicy IfNotPresent: ask, and pull only if absent (there is no registry).
        assert_eq!(c["imagePullPolicy"], "IfNotPresent", "{name}");
        assert!(
            self.cri.image_present(image).expect("ImageStatus"),
            "{name}: image {image} is not on the node, and no registry is reachable to pull it"
        );
        let config = self.container_config(ctx, c, attempt);
        let id = self
            .cri
            .create_container(sandbox_id, config, sandbox)
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {}", chain(&e)));
        self.cri
            .start(&id)
            .unwrap_or_else(|e| panic!("StartContainer {name}: {}\n{}", chain(&e), self.log(&id)));
        id
    }

    /// Waits for init container `id` to exit, and requires exit code 0.
    fn wait_exit(&mut self, id: &str, name: &str) {
        let start = Instant::now();
        loop {
            let l = self.cri.lifecycle(id).expect("ContainerStatus");
            if l.state == ContainerState::ContainerExited {
                assert_eq!(
                    l.exit_code,
                    0,
                    "init container {name} failed ({} {}):\n{}",
                    l.reason,
                    l.message,
                    self.log(id)
                );
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "init container {name} still {:?} after 60 s",
                l.state
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The container's log (CRI format: one `time stream tag message` line per line).
    pub fn log(&mut self, id: &str) -> String {
        self.cri
            .lifecycle(id)
            .ok()
            .and_then(|l| fs::read_to_string(l.log_path).ok())
            .unwrap_or_default()
    }

    fn sandbox_config(
        &self,
        ds: &Value,
        name: &str,
        namespace: &str,
        uid: &str,
    ) -> PodSandboxConfig {
        let spec = &ds["spec"]["template"]["spec"];
        assert_eq!(
            spec["hostNetwork"], true,
            "only hostNetwork pods are mapped"
        );
        assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
        let mut labels: HashMap<String, String> = ds["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), str_of(v, k).to_owned()))
            .collect();
        labels.insert("io.kubernetes.pod.name".into(), name.into());
        labels.insert("io.kubernetes.pod.namespace".into(), namespace.into());
        labels.insert("io.kubernetes.pod.uid".into(), uid.into());
        let domain = &self.node.cluster_domain;
        let port_mappings = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .map(|p| {
                let port = p["containerPort"].as_i64().expect("containerPort") as i32;
                assert_eq!(p["protocol"], "TCP", "{p}");
                PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: port,
                    host_port: port,
                    host_ip: String::new(),
                }
            })
            .collect();
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            // kubelet names only pods with a network (and UTS) namespace of their own: a
            // hostNetwork pod shares the node's.
            hostname: String::new(),
            log_directory: self
                .node
                .root
                .join(format!("logs/{namespace}_{name}_{uid}"))
                .display()
                .to_string(),
            dns_config: Some(DnsConfig {
                servers: vec![self.node.cluster_dns.clone()],
                searches: vec![
                    format!("{namespace}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.clone(),
                ],
                options: vec!["ndots:5".into()],
            }),
            port_mappings,
            labels,
            annotations: HashMap::new(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.node.cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            windows: None,
        }
    }
}

/// Container `name` of DaemonSet `ds`'s pod template.
fn template_container<'a>(ds: &'a Value, name: &str) -> &'a Value {
    ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("the pod template has no container {name}"))
}

/// Checks what the controller in front of kubelet relies on: the kind, the selector, the
/// update strategy, and that every field is mapped.
fn check_daemonset(ds: &Value) {
    assert_eq!(ds["apiVersion"], "apps/v1");
    assert_eq!(ds["kind"], "DaemonSet");
    let unmapped = fields::unmapped(ds);
    assert!(
        unmapped.is_empty(),
        "fields of the DaemonSet this test does not map (add them to kubelet::fields::TABLE \
         with what kubelet does with them): {unmapped:#?}"
    );
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in ds["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(
            &labels[k], v,
            "the selector must match the template's label {k}"
        );
    }
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
    for t in ds["spec"]["template"]["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert_eq!(
            t["operator"], "Exists",
            "tolerations are the scheduler's: {t}"
        );
    }
}

/// A volume as kubelet prepares it: the directory mounted for it, and whether it is always
/// read-only (ConfigMaps are).
#[derive(Clone, Debug)]
struct Volume {
    path: PathBuf,
    always_readonly: bool,
}

/// What containers of one pod share.
struct PodCtx<'a> {
    spec: &'a Value,
    namespace: &'a str,
    volumes: &'a BTreeMap<String, Volume>,
    pod_dir: &'a Path,
}

impl Kubelet<'_> {
    /// The pod's volumes by name: hostPaths resolved to the node's directories (checked or
    /// created per their type), ConfigMaps written out.
    fn volumes(&self, spec: &Value, namespace: &str, pod_dir: &Path) -> BTreeMap<String, Volume> {
        let mut out = BTreeMap::new();
        for v in spec["volumes"].as_array().into_iter().flatten() {
            let name = str_of(&v["name"], "volume name").to_owned();
            let vol = if let Some(hp) = v.get("hostPath") {
                Volume {
                    path: self.host_path(&name, hp),
                    always_readonly: false,
                }
            } else if let Some(cm) = v.get("configMap") {
                let cm_name = str_of(&cm["name"], "configMap.name");
                let data = self
                    .cluster
                    .config_maps
                    .get(&format!("{namespace}/{cm_name}"))
                    .unwrap_or_else(|| panic!("volume {name}: no ConfigMap {cm_name}"));
                let dir = pod_dir.join(format!("volumes/kubernetes.io~configmap/{name}"));
                fs::create_dir_all(&dir).unwrap();
                for (k, text) in data {
                    fs::write(dir.join(k), text).unwrap();
                }
                Volume {
                    path: dir,
                    always_readonly: true,
                }
            } else {
                panic!("volume {name}: only hostPath and configMap volumes are mapped: {v}");
            };
            out.insert(name, vol);
        }
        out
    }

    fn host_path(&self, volume: &str, hp: &Value) -> PathBuf {
        let path = str_of(&hp["path"], "hostPath.path");
        let dir = self.node.host_paths.get(path).unwrap_or_else(|| {
            panic!("volume {volume}: hostPath {path} has no directory on this test node")
        });
        match hp["type"].as_str() {
            Some("Directory") => assert!(
                dir.is_dir(),
                "volume {volume}: hostPath {path} ({}) is not a directory: kubelet would not \
                 start the pod",
                dir.display()
            ),
            Some("DirectoryOrCreate") => {
                if !dir.exists() {
                    fs::create_dir_all(dir).unwrap();
                }
            }
            other => panic!("volume {volume}: hostPath type {other:?} is not mapped"),
        }
        dir.clone()
    }

    fn container_config(&self, ctx: &PodCtx<'_>, c: &Value, attempt: u32) -> ContainerConfig {
        let name = str_of(&c["name"], "name");
        let mut labels = HashMap::new();
        labels.insert("io.kubernetes.container.name".to_owned(), name.to_owned());
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            image: Some(ImageSpec {
                image: str_of(&c["image"], "image").into(),
                ..Default::default()
            }),
            command: strings(&c["command"]),
            args: strings(&c["args"]),
            envs: self.env(ctx, c),
            mounts: self.mounts(ctx, c),
            labels,
            log_path: format!("{name}/{attempt}.log"),
            linux: Some(LinuxContainerConfig {
                resources: Some(resources(ctx.spec, c)),
                security_context: Some(security_context(c)),
            }),
            ..Default::default()
        }
    }

    /// The environment in kubelet's order of precedence: `env` over `envFrom`, both over the
    /// service variables (only the `kubernetes` Service's here).
    fn env(&self, ctx: &PodCtx<'_>, c: &Value) -> Vec<KeyValue> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let r = &from["configMapRef"];
            let cm = str_of(&r["name"], "configMapRef.name");
            match self
                .cluster
                .config_maps
                .get(&format!("{}/{cm}", ctx.namespace))
            {
                Some(data) => env.extend(data.clone()),
                None => assert_eq!(r["optional"], true, "ConfigMap {cm} is missing"),
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let key = str_of(&e["name"], "env name").to_owned();
            let field = str_of(&e["valueFrom"]["fieldRef"]["fieldPath"], "fieldPath");
            assert_eq!(
                field, "spec.nodeName",
                "env {key}: only spec.nodeName is mapped"
            );
            env.insert(key, self.node.name.clone());
        }
        let svc = self.node.kubernetes_service;
        let (host, port) = (svc.ip().to_string(), svc.port().to_string());
        let url = format!("tcp://{svc}");
        for (k, v) in [
            ("KUBERNETES_SERVICE_HOST", host.clone()),
            ("KUBERNETES_SERVICE_PORT", port.clone()),
            ("KUBERNETES_SERVICE_PORT_HTTPS", port.clone()),
            ("KUBERNETES_PORT", url.clone()),
            (&format!("KUBERNETES_PORT_{port}_TCP"), url),
            (&format!("KUBERNETES_PORT_{port}_TCP_PROTO"), "tcp".into()),
            (&format!("KUBERNETES_PORT_{port}_TCP_PORT"), port.clone()),
            (&format!("KUBERNETES_PORT_{port}_TCP_ADDR"), host),
        ] {
            env.entry(k.to_owned()).or_insert(v);
        }
        env.into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect()
    }

    /// The container's volume mounts, then kubelet's own: the service account token and the
    /// termination message file.
    fn mounts(&self, ctx: &PodCtx<'_>, c: &Value) -> Vec<Mount> {
        let mut mounts: Vec<Mount> = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let vol = str_of(&m["name"], "volumeMount name");
                let v = ctx
                    .volumes
                    .get(vol)
                    .unwrap_or_else(|| panic!("volumeMount of an unknown volume {vol}"));
                let propagation = match m["mountPropagation"].as_str() {
                    None | Some("None") => MountPropagation::PropagationPrivate,
                    Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
                    Some("Bidirectional") => MountPropagation::PropagationBidirectional,
                    Some(other) => panic!("mountPropagation {other}"),
                };
                Mount {
                    container_path: str_of(&m["mountPath"], "mountPath").into(),
                    host_path: v.path.display().to_string(),
                    readonly: v.always_readonly || m["readOnly"] == true,
                    propagation: propagation as i32,
                    ..Default::default()
                }
            })
            .collect();
        if ctx.spec.get("serviceAccountName").is_some() {
            let dir = ctx
                .pod_dir
                .join("volumes/kubernetes.io~projected/kube-api-access");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("token"), &self.cluster.token).unwrap();
            fs::write(dir.join("ca.crt"), &self.cluster.ca_crt).unwrap();
            fs::write(dir.join("namespace"), ctx.namespace).unwrap();
            mounts.push(Mount {
                container_path: SERVICE_ACCOUNT_DIR.into(),
                host_path: dir.display().to_string(),
                readonly: true,
                ..Default::default()
            });
        }
        let name = str_of(&c["name"], "name");
        let msg = ctx
            .pod_dir
            .join(format!("containers/{name}/termination-log"));
        fs::create_dir_all(msg.parent().unwrap()).unwrap();
        fs::write(&msg, "").unwrap();
        mounts.push(Mount {
            container_path: "/dev/termination-log".into(),
            host_path: msg.display().to_string(),
            ..Default::default()
        });
        mounts
    }
}
