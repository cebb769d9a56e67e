//! The real client: a private containerd (Debian's containerd + runc, own root/state/socket under
//! a temp dir) runs `ctr run --cni` with the sixlane conflist and a busybox image built here as an
//! OCI tarball (no registry). Everything runs in a node network namespace and a private mount
//! namespace (`unshare -m`) where `/etc/cni/net.d` and `/opt/cni/bin` are mounted over, so the
//! host's CNI configuration is neither read nor touched.
//!
//! Notes: containerd 1.6 speaks CNI ≤ 1.0.0; a detached `ctr run -d` never calls DEL, so the
//! containers run `--rm` in the foreground of a background process; the CRI plugin is disabled
//! (ctr does not need it).

use std::{
    fs,
    net::Ipv6Addr,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::json;
use sixlane_testkit::{ChildGuard, NetNs, require_root};
use sixlane_tests::{
    bins,
    cni::{TempDir, links, reservations},
    sim,
};

const IMAGE: &str = "docker.io/library/slbusybox:latest";
const NETWORK: &str = "slctr";

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Moves `path` into `blobs/sha256/<digest>` and returns (digest, size).
fn blob(layout: &Path, path: &Path) -> (String, u64) {
    let digest = sha256(path);
    let size = fs::metadata(path).unwrap().len();
    fs::rename(path, layout.join("blobs/sha256").join(&digest)).unwrap();
    (format!("sha256:{digest}"), size)
}

/// An OCI image layout tarball with Debian's static busybox and a few applet links.
fn busybox_image(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox-static is missing (cargo xtask setup installs it)"
    );
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "ping", "ping6", "ip", "cat", "true"] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let layout = dir.join("oci");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let layer = dir.join("layer.tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let (layer_digest, layer_size) = blob(&layout, &layer);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let cfg_path = dir.join("config.json");
    fs::write(&cfg_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let (cfg_digest, cfg_size) = blob(&layout, &cfg_path);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let m_path = dir.join("manifest.json");
    fs::write(&m_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (m_digest, m_size) = blob(&layout, &m_path);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m_digest, "size": m_size,
            "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let tarball = dir.join("busybox-oci.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&layout)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    tarball
}

/// containerd in `node`'s network namespace and its own mount namespace.
struct Containerd {
    daemon: ChildGuard,
    sock: PathBuf,
    node: PathBuf,
}

impl Containerd {
    fn start(node: &NetNs, dir: &Path, conflist: &serde_json::Value) -> Self {
        let sock = dir.join("containerd.sock");
        let cfg = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
        );
        fs::write(dir.join("config.toml"), cfg).unwrap();
        let netd = dir.join("net.d");
        fs::create_dir_all(&netd).unwrap();
        fs::write(
            netd.join("10-sixlane.conflist"),
            serde_json::to_vec_pretty(conflist).unwrap(),
        )
        .unwrap();
        let cnibin = dir.join("cni-bin");
        fs::create_dir_all(&cnibin).unwrap();
        symlink(bins::path("sixlane"), cnibin.join("sixlane")).unwrap();
        symlink("/usr/lib/cni/loopback", cnibin.join("loopback")).unwrap();
        for d in ["etc-up", "etc-work"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        // /etc and /opt get private, writable views; the host's stay untouched.
        let script = format!(
            "set -e\n\
             mount -t tmpfs sltopt /opt\n\
             mkdir -p /opt/cni/bin\n\
             mount --bind {cnibin} /opt/cni/bin\n\
             mount -t overlay sltetc -o lowerdir=/etc,upperdir={up},workdir={work} /etc\n\
             mkdir -p /etc/cni/net.d\n\
             mount --bind {netd} /etc/cni/net.d\n\
             exec containerd --config {cfg} --log-level warn\n",
            cnibin = cnibin.display(),
            up = dir.join("etc-up").display(),
            work = dir.join("etc-work").display(),
            netd = netd.display(),
            cfg = dir.join("config.toml").display(),
        );
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let mut cmd = node.command("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let daemon = ChildGuard::spawn(&mut cmd).unwrap();
        let me = Self {
            daemon,
            sock,
            node: node.path(),
        };
        let start = Instant::now();
        while !me.sock.exists() || !me.ctr(&["version"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "containerd did not start: {}",
                fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(100));
        }
        me
    }

    /// `ctr` in containerd's mount and network namespaces.
    fn ctr_cmd(&self, args: &[&str]) -> Command {
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

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        self.ctr_cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Shim processes this containerd started (their command line names our socket).
    fn shims(&self) -> Vec<i32> {
        let sock = self.sock.display().to_string();
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                let cmdline = fs::read(e.path().join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline);
                (cmdline.contains("containerd-shim") && cmdline.contains(&sock)).then_some(pid)
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for pid in self.shims() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.daemon.terminate();
    }
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctr_run_cni_attaches_containers_that_reach_each_other() {
    require_root();
    let tmp = TempDir::new('k');
    let node = sim::node().unwrap();
    let data = tmp.path().join("ipam");
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [{
            "type": "sixlane",
            "ipam": {
                "type": "sixlane-ipam",
                "ranges": [[{"subnet": "fd00:40::/64"}]],
                "routes": [{"dst": "::/0"}],
                "dataDir": data,
            },
            "mtu": 1500,
            "dataplane": "off",
            "logFile": tmp.path().join("sixlane-cni.log"),
            "logLevel": "debug",
        }],
    });
    let image = busybox_image(&tmp.path().join("image"));
    let cd = Containerd::start(&node, tmp.path(), &conflist);
    let out = cd.ctr(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        image.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Container A: runs in the foreground of a background `ctr run --rm`, so ctr calls DEL when
    // it exits.
    let a_log = fs::File::create(tmp.path().join("a.log")).unwrap();
    let mut a_cmd = cd.ctr_cmd(&[
        "run",
        "--rm",
        "--cni",
        "--snapshotter",
        "native",
        IMAGE,
        "slta",
        "/bin/sleep",
        "60",
    ]);
    a_cmd
        .stdin(Stdio::null())
        .stdout(a_log.try_clone().unwrap())
        .stderr(a_log);
    let mut a = ChildGuard::spawn(&mut a_cmd).unwrap();
    let (a_ip, owner) = wait_for("container A's reservation", 30, || {
        reservations(&data, NETWORK).into_iter().next()
    });
    assert_eq!(
        owner, "default-slta\r\neth0",
        "containerd's CNI container ID"
    );
    // A really has it, on eth0, in its own namespace.
    let pid = wait_for("container A's task", 30, || {
        let out = cd.ctr(&["task", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("slta ") && l.contains("RUNNING"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
    });
    let addrs = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-6", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(addrs.contains(&format!("{a_ip}/64")), "{addrs}");
    let host_veths: Vec<String> = links(&node)
        .into_iter()
        .filter(|l| l.starts_with("sl"))
        .collect();
    assert_eq!(host_veths.len(), 1, "{host_veths:?}");

    // Container B reaches A across the node.
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--cni",
        "--snapshotter",
        "native",
        IMAGE,
        "sltb",
        "/bin/ping6",
        "-c",
        "3",
        "-W",
        "5",
        &a_ip.to_string(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "B could not reach A: {text}");
    assert!(text.contains("3 packets received"), "{text}");
    // B exited with --rm: its reservation is released, A's stays.
    let left = reservations(&data, NETWORK);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, a_ip);

    // Stop A: `ctr run --rm` tears the network down (DEL with an empty CNI_NETNS).
    let out = cd.ctr(&["task", "kill", "-s", "SIGKILL", "slta"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        reservations(&data, NETWORK).is_empty(),
        "A's reservation survived: {:?}\nlog:\n{}",
        reservations(&data, NETWORK),
        fs::read_to_string(tmp.path().join("sixlane-cni.log")).unwrap_or_default()
    );
    assert!(
        !links(&node)
            .iter()
            .any(|l| l.starts_with("sl") && l.len() == 15)
    );
    let log = fs::read_to_string(tmp.path().join("sixlane-cni.log")).unwrap();
    assert!(
        log.contains("ADD default-slta/eth0") && log.contains("DEL default-slta/eth0"),
        "{log}"
    );
    let _: Ipv6Addr = a_ip;
}
