//! Pod source validation in the benches (docs/cni.md, "Source validation"). The CNI plugin
//! records a pod's addresses for its host veth before attaching the pod programs; the benches
//! attach them with the agent's CLI instead, so they record the client's and server's addresses
//! here, as the plugin would (with bpftool): what they measure is the validated path, one
//! lookup that finds the source, as on a node.

use std::{net::Ipv6Addr, process::Command};

use anyhow::Context as _;
use sixlane_common::{
    layout::{MAP_POD_SOURCES, MAPS_DIR},
    source::{ADDRESS, ENFORCE, MARKER},
};
use sixlane_testkit::{NetNs, PinDir};

use crate::sh;

/// Records `addrs` as the sources of the pod behind `iface` (in `node`), validated.
pub fn record(node: &NetNs, pins: &PinDir, iface: &str, addrs: &[Ipv6Addr]) -> anyhow::Result<()> {
    let out = node.ip(&["-o", "link", "show", iface])?;
    let ifindex: u32 = out
        .split(':')
        .next()
        .and_then(|i| i.trim().parse().ok())
        .with_context(|| format!("ifindex of {iface} in {out:?}"))?;
    let map = pins.path().join(MAPS_DIR).join(MAP_POD_SOURCES);
    let entries = addrs
        .iter()
        .map(|a| (a.octets(), ADDRESS))
        .chain([(MARKER, ENFORCE)]);
    for (addr, value) in entries {
        let mut key = ifindex.to_ne_bytes().to_vec();
        key.extend_from_slice(&addr);
        let mut c = Command::new("bpftool");
        c.args(["map", "update", "pinned"])
            .arg(&map)
            .arg("key")
            .arg("hex")
            .args(key.iter().map(|b| format!("{b:02x}")))
            .args(["value", "hex"])
            .args(value.to_ne_bytes().iter().map(|b| format!("{b:02x}")));
        sh::output(&mut c)?;
    }
    Ok(())
}
