//! Simulated nodes and pods for integration tests.
//!
//! A node is a network namespace with forwarding on; a pod is a namespace joined to its node by a
//! veth with ptp-style IPv6 plumbing (the pod's address as /128, default route via the link-local
//! `fe80::1` on the host side, a /128 route to the pod on the node) and, when the node has a
//! datapath, sixlane's pod programs attached to the host side through pinned TCX links.
//!
//! [`SimPod::attach`] is the one place that plumbs a pod; once the CNI plugin is in the tree it
//! runs the real `sixlane` binary instead, so every datapath test goes through it.

use std::net::Ipv6Addr;

use aya::programs::TcAttachType;
use sixlane_agent::{PinLayout, tcx};
use sixlane_common::layout::{Hook, POD_PROGRAMS};
use sixlane_testkit::{NetNs, Result, Veth};

/// The link-local gateway every pod routes through (configured on each host-side veth).
pub const POD_GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// A node namespace with IPv6 forwarding on and DAD off.
pub fn node() -> Result<NetNs> {
    let ns = NetNs::new()?;
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    Ok(ns)
}

/// A pod: its namespace, address and the host side of its veth (in the node namespace).
#[derive(Debug)]
pub struct SimPod {
    // Drop order: the veth (and with it the links on its host side), then the namespace.
    pub veth: Veth,
    pub ns: NetNs,
    pub addr: Ipv6Addr,
}

impl SimPod {
    /// The host-side interface name (in the node namespace).
    pub fn host_if(&self) -> &str {
        &self.veth.a.name
    }

    /// The pod-side interface name (in the pod namespace).
    pub fn pod_if(&self) -> &str {
        &self.veth.b.name
    }

    /// Creates a pod with `addr` on `node`. With `pins`, sixlane's pod programs
    /// (`layout::POD_PROGRAMS`) are attached to the host side from the datapath pinned there.
    pub fn attach(node: &NetNs, addr: Ipv6Addr, pins: Option<&PinLayout>) -> Result<Self> {
        let ns = NetNs::new()?;
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        let veth = Veth::new_down(Some(node), Some(&ns))?;
        let host = &veth.a;
        let pod = &veth.b;
        node.sysctl(&format!("net.ipv6.conf.{}.accept_ra", host.name), "0")?;
        host.ip(&["link", "set", "{}", "up"])?;
        pod.ip(&["link", "set", "{}", "up"])?;
        host.ip(&[
            "addr",
            "add",
            &format!("{POD_GATEWAY}/64"),
            "dev",
            "{}",
            "nodad",
        ])?;
        pod.ip(&["addr", "add", &format!("{addr}/128"), "dev", "{}", "nodad"])?;
        pod.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &POD_GATEWAY.to_string(),
            "dev",
            "{}",
        ])?;
        host.ip(&["-6", "route", "add", &format!("{addr}/128"), "dev", "{}"])?;
        if let Some(pins) = pins {
            let ifname = host.name.clone();
            node.enter(|| -> std::result::Result<(), sixlane_agent::Error> {
                for (prog, hook) in POD_PROGRAMS {
                    let hook = match hook {
                        Hook::Ingress => TcAttachType::Ingress,
                        Hook::Egress => TcAttachType::Egress,
                    };
                    tcx::attach_pinned(pins, prog, &ifname, hook)?;
                }
                Ok(())
            })
            .map_err(|e| sixlane_testkit::Error::Command {
                cmd: format!("attaching pod programs to {ifname}"),
                status: "error".into(),
                stderr: e.to_string(),
            })?;
        }
        Ok(Self { veth, ns, addr })
    }
}
