//! A private containerd for tests and the demo: Debian's containerd + runc with its own root,
//! state and socket under a directory, running in a node's network namespace and in its own mount
//! namespace where `/etc/cni/net.d` and `/opt/cni/bin` are mounted over, so the host's CNI setup
//! is neither read nor touched. Images are OCI tarballs built here (no registry).
//!
//! Two ways in: `ctr` ([`Containerd::start`]; the CRI plugin is off) and the CRI, kubelet's
//! gRPC API ([`Containerd::start_cri`]), which creates and pins each pod's network namespace
//! itself and calls the CNI plugins for it.
//!
//! Notes: containerd 1.6 speaks CNI ≤ 1.0.0; a detached `ctr run -d` never calls DEL, so
//! containers run `ctr run --rm` in the foreground of a background process.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{ChildGuard, Error, NetNs, Result, cmd};

/// The name the busybox image is imported under.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/slbusybox:latest";

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

fn sha256(path: &Path) -> Result<String> {
    let out = cmd::run("sha256sum", &[&path.to_string_lossy()])?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Moves `path` into `blobs/sha256/<digest>` and returns (digest, size).
fn blob(layout: &Path, path: &Path) -> Result<(String, u64)> {
    let digest = sha256(path)?;
    let size = fs::metadata(path).map_err(io("reading", path))?.len();
    let dst = layout.join("blobs/sha256").join(&digest);
    fs::rename(path, &dst).map_err(io("moving to", &dst))?;
    Ok((format!("sha256:{digest}"), size))
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    fs::write(path, data).map_err(io("writing", path))
}

/// Builds an OCI image layout tarball with Debian's static busybox (package `busybox-static`),
/// links for `applets` and extra `files` (path inside the image, contents), in `dir`, named
/// [`BUSYBOX_IMAGE`] with `/bin/sh` as its command. Returns the tarball's path.
pub fn busybox_image(dir: &Path, applets: &[&str], files: &[(&str, &str)]) -> Result<PathBuf> {
    busybox_image_as(dir, BUSYBOX_IMAGE, &["/bin/sh"], applets, files)
}

/// [`busybox_image`] under the image name `name` with the default command `cmd` (plain ASCII
/// words: they are quoted into the image's JSON config as Rust string literals).
pub fn busybox_image_as(
    dir: &Path,
    name: &str,
    cmd: &[&str],
    applets: &[&str],
    files: &[(&str, &str)],
) -> Result<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        return Err(Error::Io {
            what: "finding",
            path: busybox.to_owned(),
            source: std::io::Error::other(
                "busybox-static is missing (cargo xtask setup installs it)",
            ),
        });
    }
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    fs::create_dir_all(&bin).map_err(io("creating", &bin))?;
    fs::copy(busybox, bin.join("busybox")).map_err(io("copying", busybox))?;
    for applet in applets {
        symlink("busybox", bin.join(applet)).map_err(io("linking", &bin))?;
    }
    for (path, text) in files {
        let dst = rootfs.join(path.trim_start_matches('/'));
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        write(&dst, text.as_bytes())?;
    }
    let layout = dir.join("oci");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io("creating", &blobs))?;
    let layer = dir.join("layer.tar");
    cmd::run(
        "tar",
        &[
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-cf",
            &layer.to_string_lossy(),
            "-C",
            &rootfs.to_string_lossy(),
            ".",
        ],
    )?;
    let (layer_digest, layer_size) = blob(&layout, &layer)?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let cmd = cmd
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(",");
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":[{cmd}]}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let cfg_path = dir.join("config.json");
    write(&cfg_path, config.as_bytes())?;
    let (cfg_digest, cfg_size) = blob(&layout, &cfg_path)?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg_digest}","size":{cfg_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let m_path = dir.join("manifest.json");
    write(&m_path, manifest.as_bytes())?;
    let (m_digest, m_size) = blob(&layout, &m_path)?;
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m_digest}","size":{m_size},"annotations":{{"io.containerd.image.name":"{name}","org.opencontainers.image.ref.name":"latest"}}}}]}}"#
    );
    write(&layout.join("index.json"), index.as_bytes())?;
    write(
        &layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let tarball = dir.join("busybox-oci.tar");
    cmd::run(
        "tar",
        &[
            "-cf",
            &tarball.to_string_lossy(),
            "-C",
            &layout.to_string_lossy(),
            ".",
        ],
    )?;
    Ok(tarball)
}

/// A containerd in `node`'s network namespace and its own mount namespace. Dropping it kills
/// its shims and the daemon (by PID), and removes the cgroup its CRI pods were put under.
#[derive(Debug)]
pub struct Containerd {
    daemon: ChildGuard,
    sock: PathBuf,
    node: PathBuf,
    dir: PathBuf,
    /// With the CRI plugin: the cgroup (a top-level `slt…` directory) pods are created under.
    cgroup: Option<String>,
}

/// The cgroup v2 hierarchy: CRI pods' cgroups are made there by runc (cgroupfs driver).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Containerd {
    /// Starts containerd with state under `dir`, the CNI configuration files `conf` (name,
    /// contents) in its `/etc/cni/net.d` and the plugin binaries `bins` (name, path) in its
    /// `/opt/cni/bin`. The CRI plugin is off: containers are run with `ctr`.
    pub fn start(
        node: &NetNs,
        dir: &Path,
        conf: &[(&str, String)],
        bins: &[(&str, &Path)],
    ) -> Result<Self> {
        let binds = cni_dirs(dir, conf, bins)?;
        Self::launch(node, dir, &binds, None)
    }

    /// Like [`Containerd::start`], with the CRI plugin on: what kubelet drives. Its gRPC API is
    /// served on [`Containerd::socket`]; pod sandboxes run `sandbox_image` (import it into the
    /// `k8s.io` namespace with [`Containerd::import_to`] before the first pod), on the `native`
    /// snapshotter, under the cgroup [`Containerd::cgroup_parent`], and their network
    /// namespaces are pinned in a `/run/netns` private to this containerd's mount namespace.
    pub fn start_cri(
        node: &NetNs,
        dir: &Path,
        conf: &[(&str, String)],
        bins: &[(&str, &Path)],
        sandbox_image: &str,
    ) -> Result<Self> {
        let binds = cni_dirs(dir, conf, bins)?;
        Self::launch(node, dir, &binds, Some(sandbox_image))
    }

    /// Like [`Containerd::start_cri`] on a node whose filesystem is given whole: each of
    /// `binds` (a host directory, the node path it is mounted at, e.g. `/etc/cni/net.d`,
    /// `/var/lib/cni/networks`, `/sys/fs/bpf`) is what this containerd, its containers' hostPath
    /// mounts and the CNI plugins it runs see there. Sources must not lie under `/etc`, `/opt`
    /// or `/var`, which this mount namespace replaces.
    pub fn start_cri_node(
        node: &NetNs,
        dir: &Path,
        binds: &[(PathBuf, &str)],
        sandbox_image: &str,
    ) -> Result<Self> {
        for (src, _) in binds {
            if ["/etc", "/opt", "/var"].iter().any(|d| src.starts_with(d)) {
                return Err(Error::Io {
                    what: "binding",
                    path: src.clone(),
                    source: std::io::Error::other("sources under /etc, /opt or /var are hidden"),
                });
            }
        }
        Self::launch(node, dir, binds, Some(sandbox_image))
    }

    fn launch(
        node: &NetNs,
        dir: &Path,
        binds: &[(PathBuf, &str)],
        sandbox_image: Option<&str>,
    ) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let sock = dir.join("containerd.sock");
        // Top-level keys first: in TOML, a key after a table header belongs to that table.
        let mut cfg = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n{disabled}\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
            disabled = if sandbox_image.is_none() {
                "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
            } else {
                ""
            },
        );
        // AppArmor off: a test must not depend on the host's profiles (the CRI's default one
        // needs apparmor_parser). Without restrict_oom_score_adj, runc fails to start the
        // sandbox here ("can't get final child's PID from pipe"). The CNI directories are the
        // defaults, which this mount namespace maps to ours.
        if let Some(image) = sandbox_image {
            cfg.push_str(&format!(
                "[plugins.\"io.containerd.grpc.v1.cri\"]\n\
                 \x20 sandbox_image = \"{image}\"\n\
                 \x20 restrict_oom_score_adj = true\n\
                 \x20 disable_apparmor = true\n\
                 \x20 stream_server_address = \"127.0.0.1\"\n\
                 \x20 stream_server_port = \"0\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n\
                 \x20 snapshotter = \"native\"\n\
                 \x20 default_runtime_name = \"runc\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
                 \x20 runtime_type = \"io.containerd.runc.v2\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n\
                 \x20 Root = \"{runc}\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
                 \x20 bin_dir = \"/opt/cni/bin\"\n\
                 \x20 conf_dir = \"/etc/cni/net.d\"\n",
                runc = dir.join("runc").display(),
            ));
        }
        write(&dir.join("config.toml"), cfg.as_bytes())?;
        for d in ["etc-up", "etc-work", "var-up", "var-work"] {
            let p = dir.join(d);
            fs::create_dir_all(&p).map_err(io("creating", &p))?;
        }
        // The CRI pins pod network namespaces in /run/netns: a private tmpfs there keeps them
        // out of the host's `ip netns` and goes away with this mount namespace.
        let netns = if sandbox_image.is_some() {
            "mkdir -p /run/netns\nmount -t tmpfs sltnetns /run/netns\n"
        } else {
            ""
        };
        // /etc, /opt and /var get private, writable views (the host's stay untouched), on which
        // the binds are made.
        let mut script = format!(
            "set -e\n\
             mount -t tmpfs sltopt /opt\n\
             mount -t overlay sltetc -o lowerdir=/etc,upperdir={d}/etc-up,workdir={d}/etc-work \
             /etc\n\
             mount -t overlay sltvar -o lowerdir=/var,upperdir={d}/var-up,workdir={d}/var-work \
             /var\n",
            d = dir.display(),
        );
        for (src, dst) in binds {
            script.push_str(&format!(
                "mkdir -p {dst}\nmount --bind {src} {dst}\n",
                src = src.display()
            ));
        }
        // Shared as on a systemd host, so containers may mount with HostToContainer
        // propagation; the peer groups are this namespace's own (it was made private first).
        script.push_str(&format!(
            "mount --make-rshared /\n{netns}exec containerd --config {cfg} --log-level warn\n",
            cfg = dir.join("config.toml").display(),
        ));
        let log_path = dir.join("containerd.log");
        let log = fs::File::create(&log_path).map_err(io("creating", &log_path))?;
        let log2 = log.try_clone().map_err(io("cloning", &log_path))?;
        let mut c = node.command("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(log)
            .stderr(log2);
        let daemon = ChildGuard::spawn(&mut c)?;
        let me = Self {
            daemon,
            sock,
            node: node.path(),
            dir: dir.to_owned(),
            cgroup: sandbox_image.map(|_| crate::names::unique('g')),
        };
        let start = Instant::now();
        while !me.sock.exists() || !me.ctr(&["version"])?.status.success() {
            if start.elapsed() > Duration::from_secs(20) {
                return Err(Error::Timeout {
                    what: format!(
                        "containerd to start ({})",
                        fs::read_to_string(&log_path).unwrap_or_default().trim()
                    ),
                    secs: 20,
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(me)
    }

    /// containerd's gRPC socket (the CRI's too, with [`Containerd::start_cri`]).
    pub fn socket(&self) -> &Path {
        &self.sock
    }

    /// The cgroup parent to give CRI pods (`LinuxPodSandboxConfig.cgroup_parent`): removed with
    /// this containerd. `None` without the CRI plugin.
    pub fn cgroup_parent(&self) -> Option<String> {
        self.cgroup.as_ref().map(|c| format!("/{c}"))
    }

    /// The directory holding this containerd's state and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where runc keeps container state for this containerd: pass it to `ctr run --runc-root`
    /// (runc's default, /run/containerd/runc, is shared host-wide and outlives a killed run,
    /// after which a new container with the same name cannot be created).
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// PID of the daemon (its mount namespace is where `ctr` must run).
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// `ctr` in containerd's mount and network namespaces.
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.daemon.pid()))
            .arg(format!("--net={}", self.node.display()))
            .arg("--")
            .arg("ctr")
            .arg("--address")
            .arg(&self.sock)
            .args(args);
        c
    }

    /// Runs `ctr args...` to completion (whatever its exit code).
    pub fn ctr(&self, args: &[&str]) -> Result<Output> {
        let mut c = self.ctr_cmd(args);
        c.stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                cmd: format!("{c:?}"),
                source,
            })
    }

    /// Imports an OCI tarball with the native snapshotter (no overlay-in-overlay trouble).
    pub fn import(&self, tarball: &Path) -> Result<()> {
        self.import_to("default", tarball)
    }

    /// [`Containerd::import`] into containerd namespace `namespace` (`k8s.io` is the CRI's).
    pub fn import_to(&self, namespace: &str, tarball: &Path) -> Result<()> {
        let out = self.ctr(&[
            "--namespace",
            namespace,
            "images",
            "import",
            "--snapshotter",
            "native",
            &tarball.to_string_lossy(),
        ])?;
        if !out.status.success() {
            return Err(Error::Command {
                cmd: "ctr images import".into(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    /// PID of the running task `name`, if any.
    pub fn task_pid(&self, name: &str) -> Option<u32> {
        let out = self.ctr(&["task", "ls"]).ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")) && l.contains("RUNNING"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    }

    /// Shim processes this containerd started (their command line names our socket).
    pub fn shims(&self) -> Vec<i32> {
        let sock = self.sock.display().to_string();
        let Ok(rd) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                let cmdline = fs::read(e.path().join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline);
                (cmdline.contains("containerd-shim") && cmdline.contains(&sock)).then_some(pid)
            })
            .collect()
    }
}

/// The CNI directories of [`Containerd::start`]: `conf` (name, contents) written to `dir/net.d`
/// and `bins` (name, path) linked in `dir/cni-bin`; returned as binds over the default paths.
fn cni_dirs(
    dir: &Path,
    conf: &[(&str, String)],
    bins: &[(&str, &Path)],
) -> Result<Vec<(PathBuf, &'static str)>> {
    let netd = dir.join("net.d");
    fs::create_dir_all(&netd).map_err(io("creating", &netd))?;
    for (name, text) in conf {
        write(&netd.join(name), text.as_bytes())?;
    }
    let cnibin = dir.join("cni-bin");
    fs::create_dir_all(&cnibin).map_err(io("creating", &cnibin))?;
    for (name, path) in bins {
        symlink(path, cnibin.join(name)).map_err(io("linking", path))?;
    }
    Ok(vec![(netd, "/etc/cni/net.d"), (cnibin, "/opt/cni/bin")])
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Containers first: a container's PID 1 ignores SIGTERM, and once its shim is gone it is
        // reparented and would outlive us.
        let shims = self.shims();
        for pid in crate::process::descendants(&shims) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for pid in shims {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.daemon.terminate();
        if let Some(cg) = &self.cgroup {
            for root in cgroup_roots() {
                remove_cgroup(&root.join(cg));
            }
        }
    }
}

/// Where a top-level cgroup can be: the v2 root, and each v1 hierarchy under it on a host
/// with the hybrid layout (`/sys/fs/cgroup/memory`, `…/unified`, …), where runc makes a pod's
/// cgroup in every one.
fn cgroup_roots() -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    let mut roots = vec![root.to_owned()];
    if !root.join("cgroup.procs").exists() {
        roots.extend(
            fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists()),
        );
    }
    roots
}

/// Removes a cgroup tree, children first, killing what is left in it (a pod's processes that
/// outlived their shim). Best effort: this runs in drop.
pub fn remove_cgroup(path: &Path) {
    if let Ok(rd) = fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    for _ in 0..50 {
        let procs = fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            break;
        }
        // cgroup.kill (cgroup v2, 5.14+) kills every process inside at once; v1 has none.
        if fs::write(path.join("cgroup.kill"), "1").is_err() {
            for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = fs::remove_dir(path);
}
