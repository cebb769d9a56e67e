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
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::json;
use sixlane_testkit::{
    ChildGuard,
    containerd::{self, Containerd},
    require_root,
};
use sixlane_tests::{
    bins,
    cni::{TempDir, links, reservations},
    sim,
};

const IMAGE: &str = containerd::BUSYBOX_IMAGE;
const NETWORK: &str = "slctr";

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
    let image = containerd::busybox_image(
        &tmp.path().join("image"),
        &["sh", "sleep", "ping", "ping6", "ip", "cat", "true"],
        &[],
    )
    .unwrap();
    let plugin = bins::path("sixlane");
    let cd = Containerd::start(
        &node,
        tmp.path(),
        &[(
            "10-sixlane.conflist",
            serde_json::to_string_pretty(&conflist).unwrap(),
        )],
        &[
            ("sixlane", &plugin),
            ("loopback", Path::new("/usr/lib/cni/loopback")),
        ],
    )
    .unwrap();
    cd.import(&image).unwrap();
    let runc_root = cd.runc_root().to_string_lossy().into_owned();

    // Container A: runs in the foreground of a background `ctr run --rm`, so ctr calls DEL when
    // it exits.
    let a_log = fs::File::create(tmp.path().join("a.log")).unwrap();
    let mut a_cmd = cd.ctr_cmd(&[
        "run",
        "--rm",
        "--cni",
        "--runc-root",
        &runc_root,
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
    let pid = wait_for("container A's task", 30, || cd.task_pid("slta"));
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
    let out = cd
        .ctr(&[
            "run",
            "--rm",
            "--cni",
            "--runc-root",
            &runc_root,
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
        ])
        .unwrap();
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
    let out = cd.ctr(&["task", "kill", "-s", "SIGKILL", "slta"]).unwrap();
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
