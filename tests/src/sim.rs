//! Simulated nodes and pods for integration tests.
//!
//! A node is a network namespace with forwarding on; a pod is a namespace attached to its node by
//! the REAL `sixlane` CNI plugin (ADD on attach, DEL on drop), so every datapath test exercises
//! the plumbing operators get: a veth whose host side carries the link-local gateway `fe80::1`,
//! the pod's address without DAD, a default route via the host side, a /128 route to the pod on
//! the node and, when the node has a datapath, sixlane's pod programs attached to the host side
//! (`"dataplane": "required"`) in the plugin's default mode (`attach: tc`: a clsact qdisc and
//! sixlane's cls_bpf filters), or in the mode a test asks for ([`SimPod::attach_with`]).

use std::{
    net::Ipv6Addr,
    path::{Path, PathBuf},
};

use serde_json::{Value, json};
use sixlane_agent::PinLayout;
use sixlane_attach::AttachMode;
use sixlane_testkit::{NetNs, Result, names};

use crate::cni::{Call, Plugin};

/// The link-local gateway every pod routes through (configured on each host-side veth).
pub const POD_GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// The network name the simulated pods are attached to.
const NETWORK: &str = "sim";
/// The pod-side interface name.
const POD_IF: &str = "eth0";

/// A node namespace with IPv6 forwarding on and DAD off.
pub fn node() -> Result<NetNs> {
    let ns = NetNs::new()?;
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    Ok(ns)
}

/// A pod: its namespace and address; the CNI attachment is deleted when it drops.
#[derive(Debug)]
pub struct SimPod {
    // Drop order: the attachment (CNI DEL, run in the node namespace), then the namespace.
    attachment: Attachment,
    pub ns: NetNs,
    pub addr: Ipv6Addr,
}

#[derive(Debug)]
struct Attachment {
    plugin: Plugin,
    node_ns: PathBuf,
    container_id: String,
    netns: String,
    conf: Value,
    data_dir: PathBuf,
    host_if: String,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let call = Call::new("DEL", &self.container_id, &self.netns, POD_IF);
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node_ns.display()))
            .arg("--")
            .arg(&self.plugin.bin);
        let out = run_in(&mut cmd, &call, &self.conf);
        if let Err(e) = out {
            eprintln!("warning: CNI DEL of {}: {e}", self.container_id);
        }
        // The data dir is per node; remove it once its last reservation is gone.
        if crate::cni::reservations(&self.data_dir, NETWORK).is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn run_in(
    cmd: &mut std::process::Command,
    call: &Call<'_>,
    conf: &Value,
) -> std::result::Result<Value, String> {
    use std::io::Write as _;
    cmd.env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawning {cmd:?}: {e}"))?;
    match child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&serde_json::to_vec(conf).expect("json"))
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.to_string()),
        _ => {}
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let parsed = crate::cni::parse_output(out.status.success(), &out.stdout, &out.stderr);
    if parsed.success {
        Ok(parsed.doc.unwrap_or(Value::Null))
    } else {
        Err(format!(
            "{}; stderr: {}",
            parsed.stdout.trim(),
            parsed.stderr.trim()
        ))
    }
}

/// The per-node IPAM data directory.
fn data_dir(node: &NetNs) -> PathBuf {
    std::env::temp_dir().join(format!("sixlane-sim-{}", node.name()))
}

/// A range that contains `addr` and can hand it out: its /64, starting at the network address,
/// with the (unused: pods route via `fe80::1`) range gateway moved off `addr`.
fn range_for(addr: Ipv6Addr) -> Value {
    let net = u128::from(addr) & !((1u128 << 64) - 1);
    let last = net | ((1u128 << 64) - 1);
    let gateway = if u128::from(addr) == last {
        net + 1
    } else {
        last
    };
    json!({
        "subnet": format!("{}/64", Ipv6Addr::from(net)),
        "rangeStart": Ipv6Addr::from(net).to_string(),
        "gateway": Ipv6Addr::from(gateway).to_string(),
    })
}

fn conf_for(
    addr: Ipv6Addr,
    data_dir: &Path,
    pins: Option<&PinLayout>,
    mode: Option<AttachMode>,
) -> Value {
    let mut c = json!({
        "cniVersion": "1.1.0",
        "name": NETWORK,
        "type": "sixlane",
        "ipam": {
            "type": "sixlane-ipam",
            "ranges": [[range_for(addr)]],
            "routes": [{"dst": "::/0"}],
            "dataDir": data_dir,
        },
        "mtu": 1500,
        "dataplane": "off",
        "logLevel": "warn",
        "runtimeConfig": {"ips": [addr.to_string()]},
    });
    if let Some(pins) = pins {
        c["dataplane"] = json!("required");
        c["pinRoot"] = json!(pins.root());
    }
    // No key: the plugin's default.
    if let Some(m) = mode {
        c["attach"] = json!(m.as_str());
    }
    c
}

impl SimPod {
    /// The host-side interface name (in the node namespace).
    pub fn host_if(&self) -> &str {
        &self.attachment.host_if
    }

    /// The pod-side interface name (in the pod namespace).
    pub fn pod_if(&self) -> &str {
        POD_IF
    }

    /// Creates a pod with `addr` on `node` by running the `sixlane` CNI plugin's ADD in the node
    /// namespace. With `pins`, the conflist requires the dataplane, so sixlane's pod programs
    /// (`layout::POD_PROGRAMS`) are attached to the host side from the datapath pinned there, in
    /// the plugin's default mode.
    pub fn attach(node: &NetNs, addr: Ipv6Addr, pins: Option<&PinLayout>) -> Result<Self> {
        Self::attach_inner(node, addr, pins, None)
    }

    /// [`Self::attach`] with the conflist's `attach` set to `mode`.
    pub fn attach_with(
        node: &NetNs,
        addr: Ipv6Addr,
        pins: &PinLayout,
        mode: AttachMode,
    ) -> Result<Self> {
        Self::attach_inner(node, addr, Some(pins), Some(mode))
    }

    fn attach_inner(
        node: &NetNs,
        addr: Ipv6Addr,
        pins: Option<&PinLayout>,
        mode: Option<AttachMode>,
    ) -> Result<Self> {
        let ns = NetNs::new()?;
        let plugin = Plugin::sixlane();
        let data_dir = data_dir(node);
        let conf = conf_for(addr, &data_dir, pins, mode);
        let container_id = names::unique('c');
        let netns = ns.path().display().to_string();
        let call = Call::new("ADD", &container_id, &netns, POD_IF);
        let result = run_in(&mut plugin.command(Some(node)), &call, &conf).map_err(|stderr| {
            sixlane_testkit::Error::Command {
                cmd: format!("sixlane CNI ADD {addr} on {}", node.name()),
                status: "error".into(),
                stderr,
            }
        })?;
        let host_if = result["interfaces"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let attachment = Attachment {
            plugin,
            node_ns: node.path(),
            container_id,
            netns,
            conf,
            data_dir,
            host_if,
        };
        Ok(Self {
            attachment,
            ns,
            addr,
        })
    }
}
