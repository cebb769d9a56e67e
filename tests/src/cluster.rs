//! A simulated multi-node cluster for service tests:
//!
//! ```text
//!   netns lan: bridge joining every node's uplink and the outside client
//!   node i (netns): uplink fd00:1::i/64, datapath loaded under its own pin dir, uplink
//!                   programs attached, pods fd00:<i>0::/64 (SimPod), static routes to the
//!                   other nodes' pod ranges via their uplink addresses
//!   ext (netns):    fd00:1::100/64 on the LAN, no route to any pod range
//! ```
//!
//! Each node loads its own copy of the datapath (its own pinned maps), as real nodes do.

use std::{
    fs,
    net::Ipv6Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sixlane_agent::{
    PinLayout,
    loader::{Datapath, LoadOptions},
};
use sixlane_attach::{chain, tcx};
use sixlane_common::layout::UPLINK_PROGRAMS;
use sixlane_testkit::{ChildGuard, NetNs, PinDir, Veth, names};

use crate::sim;

pub const EXT: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x100);

/// Uplink address of node `i` (1-based).
pub fn node_addr(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, i)
}

/// Address `host` in node `i`'s pod range `fd00:<i>0::/64`.
pub fn pod_addr(i: u16, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, i * 0x10, 0, 0, 0, 0, 0, host)
}

pub struct SimNode {
    // Drop order: the uplink, then the namespace, then the datapath and its pins.
    pub uplink: Veth,
    pub ns: NetNs,
    pub dp: Option<Datapath>,
    pub layout: PinLayout,
    pub pins: PinDir,
    pub index: u16,
    pub addr: Ipv6Addr,
}

impl SimNode {
    /// The uplink's name inside the node namespace.
    pub fn uplink_if(&self) -> &str {
        &self.uplink.a.name
    }

    /// Attaches `layout::UPLINK_PROGRAMS` to the uplink (what the agent daemon does).
    pub fn attach_uplink(&self) {
        let ifname = self.uplink_if().to_owned();
        let layout = self.layout.clone();
        self.ns.enter(move || {
            for (prog, hook) in UPLINK_PROGRAMS {
                tcx::attach_pinned(&layout, prog, &ifname, hook)
                    .unwrap_or_else(|e| panic!("attaching {prog} to {ifname}: {}", chain(&e)));
            }
        });
    }
}

pub struct SimCluster {
    pub ext_veth: Veth,
    pub ext: NetNs,
    pub nodes: Vec<SimNode>,
    pub lan: NetNs,
}

fn quiet(ns: &NetNs) {
    ns.sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0").unwrap();
}

/// Builds `n` nodes and the outside client, datapaths loaded and uplink programs attached.
pub fn cluster(n: u16) -> SimCluster {
    sixlane_testkit::require_root();
    let lan = NetNs::new().unwrap();
    quiet(&lan);
    lan.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    lan.ip(&["link", "set", "br0", "up"]).unwrap();
    let mut nodes = Vec::new();
    for i in 1..=n {
        let ns = sim::node().unwrap();
        let uplink = Veth::new_down(Some(&ns), Some(&lan)).unwrap();
        uplink
            .b
            .ip(&["link", "set", "{}", "master", "br0"])
            .unwrap();
        uplink.b.ip(&["link", "set", "{}", "up"]).unwrap();
        uplink.a.ip(&["link", "set", "{}", "up"]).unwrap();
        let addr = node_addr(i);
        uplink
            .a
            .ip(&["addr", "add", &format!("{addr}/64"), "dev", "{}", "nodad"])
            .unwrap();
        let pins = PinDir::new().unwrap();
        let layout = PinLayout::new(pins.path());
        let dp = Datapath::load(&layout, &LoadOptions::default()).expect("load datapath");
        let node = SimNode {
            uplink,
            ns,
            dp: Some(dp),
            layout,
            pins,
            index: i,
            addr,
        };
        node.attach_uplink();
        nodes.push(node);
    }
    for a in &nodes {
        for b in &nodes {
            if a.index != b.index {
                a.ns.ip(&[
                    "-6",
                    "route",
                    "add",
                    &format!("fd00:{:x}::/64", b.index * 0x10),
                    "via",
                    &b.addr.to_string(),
                ])
                .unwrap();
            }
        }
    }
    let ext = NetNs::new().unwrap();
    quiet(&ext);
    let ext_veth = Veth::new_down(Some(&ext), Some(&lan)).unwrap();
    ext_veth
        .b
        .ip(&["link", "set", "{}", "master", "br0"])
        .unwrap();
    ext_veth.b.ip(&["link", "set", "{}", "up"]).unwrap();
    ext_veth.a.ip(&["link", "set", "{}", "up"]).unwrap();
    ext_veth
        .a
        .ip(&["addr", "add", &format!("{EXT}/64"), "dev", "{}", "nodad"])
        .unwrap();
    SimCluster {
        ext_veth,
        ext,
        nodes,
        lan,
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(names::unique('t'));
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// nginx serving `<name> <client address>` on `[::]:port` in a namespace.
pub struct Nginx {
    // The process goes before its directory.
    _child: ChildGuard,
    _dir: TempDir,
}

impl Nginx {
    pub fn start(ns: &NetNs, name: &str, port: u16) -> Self {
        let dir = TempDir::new();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{ listen [::]:{port}; location / {{ return 200 \"{name} $remote_addr\\n\"; }} }}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        fs::write(&path, conf).unwrap();
        let child = ns
            .spawn(
                "nginx",
                &[
                    "-c",
                    path.to_str().unwrap(),
                    "-e",
                    &format!("{d}/error.log"),
                    "-p",
                    dir.path().to_str().unwrap(),
                ],
            )
            .expect("starting nginx");
        wait_listen(ns, port);
        Self {
            _child: child,
            _dir: dir,
        }
    }
}

/// Waits until something listens on TCP `port` in `ns`.
pub fn wait_listen(ns: &NetNs, port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let out = ns
            .exec("ss", &["-Hltn", &format!("sport = :{port}")])
            .unwrap_or_default();
        if !out.trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port} in {}", ns.name());
}

/// `curl` in `ns`: the body, or the error.
pub fn curl(ns: &NetNs, url: &str, timeout_s: u32) -> Result<String, String> {
    let out = ns
        .exec_output(
            "curl",
            &["-sS", "-g", "--max-time", &timeout_s.to_string(), url],
        )
        .map_err(|e| chain(&e).to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
