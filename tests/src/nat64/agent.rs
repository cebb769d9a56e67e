//! The start of the NAT64 tests that run the real agent: a node namespace with the IPv4
//! internet of [`Internet`] behind its uplink (which holds `node_addr`), a static-mode agent for
//! Node `node-a` and its pod CIDR, its pins and files. The test writes the configuration and
//! starts the agent (its `ChildGuard`, declared after this, ends first).

use std::fs;

use sixlane_agent::PinLayout;
use sixlane_testkit::{NetNs, PinDir, TempDir};

use super::Internet;
use crate::{
    agentproc::AgentRun,
    manifests::{self, put},
    sim,
};

/// Fields drop in this order: the links before the namespaces, the pins and files last.
pub struct AgentNode {
    pub net: Internet,
    pub node: NetNs,
    pub run: AgentRun,
    pub layout: PinLayout,
    pub pins: PinDir,
    pub dir: TempDir,
}

impl AgentNode {
    pub fn new(tag: char, node_addr: &str, pod_cidr: &str) -> Self {
        sixlane_testkit::require_root();
        let pins = PinDir::new().unwrap();
        let layout = PinLayout::new(pins.path());
        let dir = TempDir::new(tag).unwrap();
        let dir_manifests = dir.path().join("manifests");
        fs::create_dir_all(&dir_manifests).unwrap();
        put(
            &dir_manifests,
            "node.yaml",
            &manifests::node("node-a", node_addr, pod_cidr),
        );
        let node = sim::node().unwrap();
        let net = Internet::new(&node).unwrap();
        net.up
            .a
            .ip(&[
                "addr",
                "add",
                &format!("{node_addr}/64"),
                "dev",
                "{}",
                "nodad",
            ])
            .unwrap();
        let run = AgentRun::new(pins.path(), "node-a", dir.path()).manifests(&dir_manifests);
        Self {
            net,
            node,
            run,
            layout,
            pins,
            dir,
        }
    }
}
