//! Attaching the agent's pinned pod programs (`layout::POD_PROGRAMS`) to a pod's host veth, and
//! verifying and cleaning up after them. Two modes (`attach` in the conflist):
//!
//! - `tc` (default): a clsact qdisc and one direct-action cls_bpf filter per hook at sixlane's
//!   priority and handle (`sixlane_attach::tc`). No pins; the filters go with the veth.
//! - `tcx`: pinned TCX links at `<pinRoot>/links/<prog>@<host veth>` (`sixlane_attach::tcx`).
//!   Each attach waits for an RCU grace period in the kernel.

use std::path::Path;

use sixlane_attach::{AttachMode, HookExt as _, PinLayout, iface, tc, tcx};
use sixlane_common::layout::POD_PROGRAMS;

use crate::error::{Error, Result};

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

/// Attaches every pod program to `host_if` in `mode`; on failure, removes what it attached.
pub fn attach(pin_root: &Path, host_if: &str, mode: AttachMode) -> Result<()> {
    let layout = PinLayout::new(pin_root);
    let Err((i, e)) = mode.attach_pinned_all(&layout, host_if, &POD_PROGRAMS, |_, _| {}) else {
        return Ok(());
    };
    for (done, done_hook) in &POD_PROGRAMS[..i] {
        let _ = mode.detach(&layout, host_if, done, *done_hook);
    }
    let prog = POD_PROGRAMS[i].0;
    Err(match e {
        sixlane_attach::Error::NotPinned { .. } => Error::TryAgain(format!(
            "the sixlane datapath is not loaded: {e} (start the agent)"
        )),
        e => Error::dataplane(format!("attaching {prog} to {host_if} ({mode})"), e),
    })
}

/// Removes the TCX link pins of `host_if` (detaching synchronously any still live). Missing pins
/// are fine. tc filters need nothing: they go with the veth.
pub fn detach(pin_root: &Path, host_if: &str) -> Result<()> {
    let layout = PinLayout::new(pin_root);
    let mut errors = Vec::new();
    for (prog, _) in POD_PROGRAMS {
        if !layout.link(host_if, prog).exists() {
            continue;
        }
        if let Err(e) = tcx::detach(&layout, host_if, prog) {
            errors.push(Error::dataplane(
                format!("detaching {prog} from {host_if}"),
                e,
            ));
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}

/// CHECK: every pod program runs on `host_if` exactly once — as sixlane's tc filter or through a
/// live TCX link, whichever mode attached it (the conflist's `attach` may have changed since) —
/// and it is the program pinned now. Returns what is wrong, as CHECK reports it.
pub fn verify(pin_root: &Path, host_if: &str) -> Result<()> {
    let layout = PinLayout::new(pin_root);
    if iface::index(host_if).is_none() {
        return Err(Error::Check(format!(
            "host interface {host_if} does not exist"
        )));
    }
    let dp = |e: sixlane_attach::Error| match e {
        sixlane_attach::Error::NotPinned { .. } => {
            Error::Check(format!("the sixlane datapath is not loaded: {e}"))
        }
        e => Error::dataplane(format!("inspecting {host_if}"), e),
    };
    for (prog, hook) in POD_PROGRAMS {
        let want = layout.program_id(prog).map_err(dp)?;
        let mut found = Vec::new();
        for mode in AttachMode::ALL {
            if let Some(id) = mode.find(&layout, host_if, prog, hook).map_err(dp)? {
                found.push((mode, id));
            }
        }
        let at = format!("{prog} on {host_if} {}", hook.name());
        match found[..] {
            [] => {
                return Err(Error::Check(format!(
                    "dataplane is required but {at} is not attached (no tc filter at pref {} \
                     handle {:#x}, no TCX link)",
                    tc::PRIORITY,
                    tc::HANDLE
                )));
            }
            [(mode, id)] if id != want => {
                return Err(Error::Check(format!(
                    "{at}: the {} runs program id {id}, the pinned program is {want}",
                    mode.attachment()
                )));
            }
            [_] => {}
            _ => {
                return Err(Error::Check(format!(
                    "{at} is attached twice (a tc filter and a TCX link)"
                )));
            }
        }
    }
    Ok(())
}

/// GC: removes link pins of pod programs whose interface is gone (the link is defunct).
pub fn prune_defunct(pin_root: &Path, exists: &mut dyn FnMut(&str) -> bool) -> Result<Vec<String>> {
    let layout = PinLayout::new(pin_root);
    let links = layout
        .links()
        .map_err(|e| Error::dataplane("listing link pins", e))?;
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
