//! Attaching the agent's pinned pod programs (`layout::POD_PROGRAMS`) to a pod's host veth through
//! pinned TCX links, and detaching them.

use std::path::Path;

use aya::programs::TcAttachType;
use sixlane_agent::{PinLayout, tcx};
use sixlane_common::layout::{Hook, POD_PROGRAMS};

use crate::error::{Error, Result};

fn attach_type(h: Hook) -> TcAttachType {
    match h {
        Hook::Ingress => TcAttachType::Ingress,
        Hook::Egress => TcAttachType::Egress,
    }
}

/// Program pins that are missing under `pin_root` (empty = the datapath is loaded).
pub fn missing_pins(pin_root: &Path) -> Vec<String> {
    let layout = PinLayout::new(pin_root);
    POD_PROGRAMS
        .iter()
        .map(|(p, _)| layout.prog(p))
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect()
}

/// Attaches every pod program to `host_if`; on failure, detaches what it attached.
pub fn attach(pin_root: &Path, host_if: &str) -> Result<()> {
    let layout = PinLayout::new(pin_root);
    for (i, (prog, hook)) in POD_PROGRAMS.iter().enumerate() {
        if let Err(e) = tcx::attach_pinned(&layout, prog, host_if, attach_type(*hook)) {
            for (done, _) in &POD_PROGRAMS[..i] {
                let _ = tcx::detach(&layout, host_if, done);
            }
            return Err(match e {
                sixlane_agent::Error::NotPinned { .. } => Error::TryAgain(format!(
                    "the sixlane datapath is not loaded: {e} (start the agent)"
                )),
                e => Error::Dataplane(format!("attaching {prog} to {host_if}: {e}")),
            });
        }
    }
    Ok(())
}

/// Detaches every pod program from `host_if` (synchronously) and removes the link pins. Missing
/// pins are fine.
pub fn detach(pin_root: &Path, host_if: &str) -> Result<()> {
    let layout = PinLayout::new(pin_root);
    let mut errors = Vec::new();
    for (prog, _) in POD_PROGRAMS {
        if !layout.link(host_if, prog).exists() {
            continue;
        }
        if let Err(e) = tcx::detach(&layout, host_if, prog) {
            errors.push(Error::Dataplane(format!(
                "detaching {prog} from {host_if}: {e}"
            )));
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}

/// Which pod programs have a link pin for `host_if`.
pub fn attached(pin_root: &Path, host_if: &str) -> Vec<&'static str> {
    let layout = PinLayout::new(pin_root);
    POD_PROGRAMS
        .iter()
        .filter(|(p, _)| layout.link(host_if, p).exists())
        .map(|(p, _)| *p)
        .collect()
}

/// GC: removes link pins of pod programs whose interface is gone (the link is defunct).
pub fn prune_defunct(pin_root: &Path, exists: &mut dyn FnMut(&str) -> bool) -> Result<Vec<String>> {
    let layout = PinLayout::new(pin_root);
    let links = layout
        .links()
        .map_err(|e| Error::Dataplane(format!("listing link pins: {e}")))?;
    let mut removed = Vec::new();
    for (ifname, prog, path) in links {
        let ours = POD_PROGRAMS.iter().any(|(p, _)| *p == prog);
        if ours && crate::plumb::is_host_ifname(&ifname) && !exists(&ifname) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(format!("{prog}@{ifname}")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", path, e)),
            }
        }
    }
    Ok(removed)
}
