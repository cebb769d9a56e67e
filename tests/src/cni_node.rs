//! One node for the CNI plugin tests (`cni_*`): its network namespace, an IPAM data directory
//! and the plugin ([`crate::cni`]), with what the tests read back (reservations, links, routes
//! as iproute2 JSON).

use std::{fs, io::Write as _, net::Ipv6Addr, path::Path, process::Stdio, thread, time::Duration};

use serde_json::{Value, json};
use sixlane_agent::PinLayout;
use sixlane_attach::AttachMode;
use sixlane_testkit::{NetNs, require_root};

use crate::{
    cni::{self, Call, Output, Plugin, TempDir, links, reservations},
    sim,
};

/// The pod range of [`Net::conf`].
pub const SUBNET: &str = "fd00:10:244:1::/64";

/// A node namespace, an IPAM data dir and the plugin.
pub struct Net {
    pub node: NetNs,
    pub data: TempDir,
    pub plugin: Plugin,
    /// The network name (the IPAM store's directory under the data dir).
    pub name: String,
}

impl Net {
    pub fn new() -> Self {
        require_root();
        Self {
            node: sim::node().unwrap(),
            data: TempDir::new('d'),
            plugin: Plugin::sixlane(),
            name: "sixlane".into(),
        }
    }

    /// The plugin configuration for [`SUBNET`] in spec `version`, dataplane off.
    pub fn conf(&self, version: &str) -> Value {
        cni::conf(version, &self.name, SUBNET, self.data.path())
    }

    /// [`Net::conf`] with the dataplane required, attached in `mode` from the pins at `pins`.
    pub fn dataplane_conf(&self, version: &str, pins: &Path, mode: AttachMode) -> Value {
        let mut conf = self.conf(version);
        conf["dataplane"] = json!("required");
        conf["attach"] = json!(mode.as_str());
        conf["pinRoot"] = json!(pins);
        conf
    }

    pub fn call(&self, cmd: &str, id: &str, netns: &str, conf: &Value) -> Output {
        self.plugin
            .call(Some(&self.node), &Call::new(cmd, id, netns, "eth0"), conf)
    }

    pub fn add(&self, id: &str, pod: &NetNs, conf: &Value) -> Output {
        self.call("ADD", id, &pod.path().display().to_string(), conf)
    }

    /// Nothing left on the node: no pod veth, no reservation, no TCX link pin.
    pub fn assert_clean(&self, layout: &PinLayout) {
        assert_eq!(self.node_links(), ["lo"]);
        assert!(self.reservations().is_empty(), "{:?}", self.reservations());
        let pins: Vec<_> = fs::read_dir(layout.links_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(pins.is_empty(), "link pins left: {pins:?}");
    }

    /// Starts an ADD and SIGKILLs it after `delay`; true when it was still running then.
    pub fn killed_add(&self, id: &str, pod: &NetNs, conf: &[u8], delay: Duration) -> bool {
        let mut child = self
            .plugin
            .command(Some(&self.node))
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", pod.path())
            .env("CNI_IFNAME", "eth0")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(conf).unwrap();
        thread::sleep(delay);
        // nsenter execs the plugin in place, so this pid is the plugin's.
        let running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        running
    }

    pub fn reservations(&self) -> Vec<(Ipv6Addr, String)> {
        reservations(self.data.path(), &self.name)
    }

    pub fn node_links(&self) -> Vec<String> {
        links(&self.node)
    }
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

/// `ip -j args...` in `ns`, parsed.
pub fn ip_json(ns: &NetNs, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&ns.ip(&full).unwrap()).unwrap()
}
