//! A CRI client: the calls kubelet makes to a container runtime for a pod (Kubernetes CRI v1
//! over gRPC on containerd's socket), blocking, for tests. Requests carry what kubelet sends
//! that matters to networking: the pod's name, namespace and UID (which the runtime hands the
//! CNI plugin in `CNI_ARGS`), its DNS configuration (the pod's resolv.conf) and its cgroup.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, DnsConfig, ExecSyncRequest, ImageSpec, ImageStatusRequest,
    LinuxPodSandboxConfig, ListPodSandboxRequest, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxState, PodSandboxStatusRequest, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    VersionRequest, image_service_client::ImageServiceClient,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// A failed CRI call: which, and the runtime's status as the source (print the chain).
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("connecting to the CRI at {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("CRI {call}")]
    Call {
        call: &'static str,
        #[source]
        status: tonic::Status,
    },
    #[error("CRI {0}: the response lacks its payload")]
    Empty(&'static str),
    #[error("CRI ContainerStatus: no pid in the verbose info ({0})")]
    NoPid(String),
}

pub type Result<T> = std::result::Result<T, CriError>;

/// Runs one CRI call to completion on `rt`: its payload, or the call's name with the status.
fn block<T>(
    rt: &tokio::runtime::Runtime,
    name: &'static str,
    call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    rt.block_on(call)
        .map(tonic::Response::into_inner)
        .map_err(|status| CriError::Call { call: name, status })
}

/// A pod as kubelet describes it to the runtime.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// resolv.conf of the pod: name servers and search domains (kubelet's `dnsConfig`).
    pub dns_servers: Vec<String>,
    pub dns_searches: Vec<String>,
    pub cgroup_parent: String,
    pub log_directory: PathBuf,
    /// The Pod's annotations, as kubelet passes them.
    pub annotations: Vec<(String, String)>,
}

impl Pod {
    fn config(&self) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: self.name.clone(),
            log_directory: self.log_directory.to_string_lossy().into_owned(),
            dns_config: Some(DnsConfig {
                servers: self.dns_servers.clone(),
                searches: self.dns_searches.clone(),
                options: vec!["ndots:1".into()],
            }),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                ..Default::default()
            }),
            annotations: self.annotations.iter().cloned().collect(),
            ..Default::default()
        }
    }
}

/// What the runtime reports about a pod sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxStatus {
    pub ready: bool,
    /// The pod IP (what kubelet publishes in the Pod's status), from the CNI result.
    pub ip: String,
    pub additional_ips: Vec<String>,
}

/// Output of a command run in a container ([`Cri::exec_sync`]).
#[derive(Clone, Debug)]
pub struct Exec {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What `ContainerStatus` reports about a container's life (what kubelet's status sync reads).
#[derive(Clone, Debug)]
pub struct Lifecycle {
    pub state: ContainerState,
    /// Meaningful once exited.
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// The container's log file (CRI log format), under the pod's log directory.
    pub log_path: PathBuf,
}

/// A CRI client on a Unix socket (runtime and image services), with its own single-threaded
/// runtime.
pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the CRI served on `socket`.
    pub fn connect(socket: &Path) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let path = socket.to_owned();
        // The URI is a placeholder: the connector ignores it and dials the socket.
        let endpoint = Endpoint::from_static("http://[::]:50051");
        let p = path.clone();
        let channel = rt
            .block_on(
                endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                    let p = p.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(p).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(s))
                    }
                })),
            )
            .map_err(|source| CriError::Connect { path, source })?;
        Ok(Self {
            rt,
            client: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// The runtime's name and version (`Version`).
    pub fn version(&mut self) -> Result<String> {
        let req = VersionRequest {
            version: "v1".into(),
        };
        let v = block(&self.rt, "Version", self.client.version(req))?;
        Ok(format!("{} {}", v.runtime_name, v.runtime_version))
    }

    /// `RunPodSandbox`: creates the pod's network namespace, calls the CNI ADD, starts the
    /// sandbox container. Returns the sandbox ID.
    pub fn run_pod(&mut self, pod: &Pod) -> Result<String> {
        self.run_sandbox(pod.config())
    }

    /// `RunPodSandbox` with a whole sandbox configuration. Returns the sandbox ID.
    pub fn run_sandbox(&mut self, config: PodSandboxConfig) -> Result<String> {
        let req = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let r = block(&self.rt, "RunPodSandbox", self.client.run_pod_sandbox(req))?;
        Ok(r.pod_sandbox_id)
    }

    /// `PodSandboxStatus`.
    pub fn pod_status(&mut self, id: &str) -> Result<SandboxStatus> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let r = block(
            &self.rt,
            "PodSandboxStatus",
            self.client.pod_sandbox_status(req),
        )?;
        let s = r.status.ok_or(CriError::Empty("PodSandboxStatus"))?;
        let net = s.network.unwrap_or_default();
        Ok(SandboxStatus {
            ready: s.state == PodSandboxState::SandboxReady as i32,
            ip: net.ip,
            additional_ips: net.additional_ips.into_iter().map(|i| i.ip).collect(),
        })
    }

    /// IDs of the pod sandboxes the runtime knows.
    pub fn list_pods(&mut self) -> Result<Vec<String>> {
        let req = ListPodSandboxRequest { filter: None };
        let r = block(
            &self.rt,
            "ListPodSandbox",
            self.client.list_pod_sandbox(req),
        )?;
        Ok(r.items.into_iter().map(|p| p.id).collect())
    }

    /// `CreateContainer` + `StartContainer`: container `name` of `image` running `command` in
    /// sandbox `pod_id`. Returns the container ID.
    pub fn start_container(
        &mut self,
        pod_id: &str,
        pod: &Pod,
        name: &str,
        image: &str,
        command: &[&str],
    ) -> Result<String> {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            log_path: format!("{name}.log"),
            ..Default::default()
        };
        let id = self.create_container(pod_id, config, &pod.config())?;
        self.start(&id)?;
        Ok(id)
    }

    /// `CreateContainer` with a whole container configuration in sandbox `pod_id` (created
    /// from `sandbox`). Returns the container ID.
    pub fn create_container(
        &mut self,
        pod_id: &str,
        config: ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        let req = CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        };
        let r = block(
            &self.rt,
            "CreateContainer",
            self.client.create_container(req),
        )?;
        Ok(r.container_id)
    }

    /// `StartContainer`.
    pub fn start(&mut self, id: &str) -> Result<()> {
        let req = StartContainerRequest {
            container_id: id.into(),
        };
        block(&self.rt, "StartContainer", self.client.start_container(req))?;
        Ok(())
    }

    /// `ContainerStatus`: the container's state, exit code and log.
    pub fn lifecycle(&mut self, id: &str) -> Result<Lifecycle> {
        let req = ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let r = block(
            &self.rt,
            "ContainerStatus",
            self.client.container_status(req),
        )?;
        let s = r.status.ok_or(CriError::Empty("ContainerStatus"))?;
        Ok(Lifecycle {
            state: ContainerState::try_from(s.state).unwrap_or(ContainerState::ContainerUnknown),
            exit_code: s.exit_code,
            reason: s.reason,
            message: s.message,
            log_path: s.log_path.into(),
        })
    }

    /// `StopContainer`: SIGTERM (the image's stop signal), SIGKILL after `timeout_secs` (what
    /// kubelet passes from the pod's `terminationGracePeriodSeconds`).
    pub fn stop_container(&mut self, id: &str, timeout_secs: i64) -> Result<()> {
        let req = StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_secs,
        };
        block(&self.rt, "StopContainer", self.client.stop_container(req))?;
        Ok(())
    }

    /// `RemoveContainer`.
    pub fn remove_container(&mut self, id: &str) -> Result<()> {
        let req = RemoveContainerRequest {
            container_id: id.into(),
        };
        block(
            &self.rt,
            "RemoveContainer",
            self.client.remove_container(req),
        )?;
        Ok(())
    }

    /// `ImageStatus`: whether the runtime has `image` (what `imagePullPolicy: IfNotPresent`
    /// asks before deciding to pull).
    pub fn image_present(&mut self, image: &str) -> Result<bool> {
        let req = ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let r = block(&self.rt, "ImageStatus", self.images.image_status(req))?;
        Ok(r.image.is_some())
    }

    /// Host PID of container `id`'s process, from `ContainerStatus`'s verbose info (containerd
    /// reports it there): to inspect the pod from the host (`nsenter --net=/proc/PID/ns/net`).
    pub fn container_pid(&mut self, id: &str) -> Result<u32> {
        let req = ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        let r = block(
            &self.rt,
            "ContainerStatus",
            self.client.container_status(req),
        )?;
        let info = r.info.get("info").cloned().unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&info)
            .ok()
            .and_then(|v| v["pid"].as_u64())
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p != 0)
            .ok_or(CriError::NoPid(info))
    }

    /// `ExecSync`: runs `cmd` in container `id` (what `kubectl exec` and exec probes do), at
    /// most `timeout_secs`.
    pub fn exec_sync(&mut self, id: &str, cmd: &[&str], timeout_secs: i64) -> Result<Exec> {
        let req = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout: timeout_secs,
        };
        let r = block(&self.rt, "ExecSync", self.client.exec_sync(req))?;
        Ok(Exec {
            exit_code: r.exit_code,
            stdout: r.stdout,
            stderr: r.stderr,
        })
    }

    /// `StopPodSandbox`: stops the pod's containers and calls the CNI DEL.
    pub fn stop_pod(&mut self, id: &str) -> Result<()> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        block(
            &self.rt,
            "StopPodSandbox",
            self.client.stop_pod_sandbox(req),
        )?;
        Ok(())
    }

    /// `RemovePodSandbox`: forgets the pod (and removes its network namespace).
    pub fn remove_pod(&mut self, id: &str) -> Result<()> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        block(
            &self.rt,
            "RemovePodSandbox",
            self.client.remove_pod_sandbox(req),
        )?;
        Ok(())
    }
}

/// containerd with its CRI plugin in `node`, files under `dir`, whose CNI configuration is
/// sixlane's `conflist` (with the `sixlane` and `loopback` plugins), and a busybox image named
/// `image` (sleeping, with `applets`) imported for pods: the runtime kubelet would drive.
pub fn containerd_with_sixlane(
    node: &sixlane_testkit::NetNs,
    dir: &Path,
    conflist: &serde_json::Value,
    image: &str,
    applets: &[&str],
) -> sixlane_testkit::containerd::Containerd {
    use sixlane_testkit::containerd::{self, Containerd};
    let tarball = containerd::busybox_image_as(
        &dir.join("image"),
        image,
        &["/bin/sleep", "2147483647"],
        applets,
        &[],
    )
    .unwrap();
    let cd = Containerd::start_cri(
        node,
        &dir.join("containerd"),
        &[(
            "10-sixlane.conflist",
            serde_json::to_string_pretty(conflist).unwrap(),
        )],
        &[
            ("sixlane", &crate::bins::path("sixlane")),
            ("loopback", Path::new("/usr/lib/cni/loopback")),
        ],
        image,
    )
    .unwrap();
    cd.import_to("k8s.io", &tarball).unwrap();
    cd
}
