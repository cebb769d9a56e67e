//! TCX attachment through pinned links.
//!
//! A TCX link lives as long as a file descriptor or a bpffs pin refers to it. sixlane pins every
//! link at `links/<program>@<ifname>` so that attachments made by short-lived processes (the CNI
//! plugin) persist, and so that a new agent can swap the program behind a link atomically
//! (`bpf_link_update`) instead of detaching and re-attaching.

use std::path::Path;

use aya::{
    Ebpf,
    programs::{
        LinkOrder, SchedClassifier,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
    },
};
use sixlane_common::layout::Hook;
use tracing::{debug, warn};

use crate::{
    Attached, Error, HookExt as _, PinLayout, Repointed, Result, iface, pins::remove_pin, program,
    sys,
};

/// What [`replace_program`] did with one pinned link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replace {
    Replaced,
    AlreadyCurrent,
    /// The link's interface is gone.
    Defunct,
}

/// The id of the program that the live link pinned for `prog_name` on `iface` runs at `hook`:
/// none without a pin, or when the pinned link's interface is gone, is another one of the same
/// name, or the link is on the other hook.
pub fn find(layout: &PinLayout, iface: &str, prog_name: &str, hook: Hook) -> Result<Option<u32>> {
    let path = layout.link(iface, prog_name);
    if !path.exists() {
        return Ok(None);
    }
    let info = sys::link_info_at(&path).map_err(|e| Error::io("reading link", &path, e))?;
    let live =
        Some(info.ifindex) == iface::index(iface) && info.attach_type == tcx_attach_type(hook);
    Ok(live.then_some(info.prog_id))
}

/// Attaches `prog` (named `prog_name` in the object) to `iface` at `hook` via a pinned TCX link.
/// Idempotent: if a live link for the same interface and program is pinned, its program is
/// replaced atomically; a stale pin (interface deleted, or a new interface with the same name)
/// is dropped and a fresh link created.
pub fn attach(
    prog: &mut SchedClassifier,
    prog_name: &str,
    iface: &str,
    hook: Hook,
    layout: &PinLayout,
) -> Result<Attached> {
    let ifindex = iface::index(iface).ok_or_else(|| Error::NoSuchInterface(iface.to_owned()))?;
    let path = layout.link(iface, prog_name);
    if path.exists() {
        let info = sys::link_info_at(&path).map_err(|e| Error::io("reading link", &path, e))?;
        if info.ifindex == ifindex && info.attach_type == tcx_attach_type(hook) {
            update_link(prog, &path)?;
            debug!(iface, prog_name, "replaced program behind pinned link");
            return Ok(Attached::Replaced);
        }
        debug!(
            iface,
            prog_name,
            old_ifindex = info.ifindex,
            "dropping stale link pin"
        );
        remove_pin(&path)?;
    }
    let id = prog
        .attach_with_options(
            iface,
            hook.attach_type(),
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|source| Error::program(prog_name, source))?;
    let link = prog
        .take_link(id)
        .map_err(|source| Error::program(prog_name, source))?;
    let fd_link: FdLink = link.try_into().map_err(|source| Error::Link {
        path: path.clone(),
        source,
    })?;
    fd_link.pin(&path).map_err(|source| Error::Pin {
        path: path.clone(),
        source,
    })?;
    debug!(iface, prog_name, "attached");
    Ok(Attached::Created)
}

/// Attaches the program pinned at `progs/<prog_name>` (by a running agent) to `iface`. This is
/// what the CNI plugin calls for a new pod; it fails with [`Error::NotPinned`] when the agent has
/// not loaded the datapath.
pub fn attach_pinned(
    layout: &PinLayout,
    prog_name: &str,
    iface: &str,
    hook: Hook,
) -> Result<Attached> {
    let mut prog = layout.open_classifier(prog_name)?;
    attach(&mut prog, prog_name, iface, hook, layout)
}

/// Detaches the pinned link of `prog_name` on `iface` and removes its pin. The detach is
/// synchronous (`BPF_LINK_DETACH`): merely dropping the last reference defers the release to a
/// kernel work queue, so traffic could still hit the program after we return. Returns whether a
/// pin existed.
pub fn detach(layout: &PinLayout, iface: &str, prog_name: &str) -> Result<bool> {
    let path = layout.link(iface, prog_name);
    if !path.exists() {
        return Ok(false);
    }
    match sys::link_detach_at(&path) {
        Ok(()) => {}
        // The interface is already gone: nothing to detach from.
        Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {}
        Err(e) => return Err(Error::io("detaching link", &path, e)),
    }
    remove_pin(&path)?;
    Ok(true)
}

/// Re-points every link pinned under `layout` (the uplink, pods attached in TCX mode) at the
/// program of the same name in `ebpf` (a new load): `bpf_link_update` switches traffic atomically.
/// Links of deleted interfaces are unpinned; links for programs `ebpf` lacks are left alone.
pub fn repoint(layout: &PinLayout, ebpf: &mut Ebpf) -> Result<Repointed> {
    let mut report = Repointed::default();
    for (ifname, prog, path) in layout.links()? {
        let Some(p) = program::classifier(ebpf, &prog) else {
            warn!(link = %path.display(), "link for a program this build does not have; left alone");
            report.unknown += 1;
            continue;
        };
        match replace_program(p, &path)? {
            Replace::Replaced => report.replaced += 1,
            Replace::AlreadyCurrent => report.current += 1,
            Replace::Defunct => {
                debug!(%ifname, %prog, "interface gone; unpinning its link");
                remove_pin(&path)?;
                report.gone += 1;
            }
        }
    }
    Ok(report)
}

/// Swaps the program behind the link pinned at `path` for `prog`, unless it already runs it.
fn replace_program(prog: &mut SchedClassifier, path: &Path) -> Result<Replace> {
    let info = sys::link_info_at(path).map_err(|e| Error::io("reading link", path, e))?;
    if info.ifindex == 0 {
        return Ok(Replace::Defunct);
    }
    let current = program::id(prog, &path.display().to_string())?;
    if info.prog_id == current {
        return Ok(Replace::AlreadyCurrent);
    }
    update_link(prog, path)?;
    Ok(Replace::Replaced)
}

/// `bpf_link_update` on the pinned link. The pin keeps the link; the fd aya holds afterwards is
/// only closed when `prog` drops.
fn update_link(prog: &mut SchedClassifier, path: &Path) -> Result<()> {
    let pinned = PinnedLink::from_pin(path).map_err(|source| Error::Link {
        path: path.to_owned(),
        source,
    })?;
    let link =
        SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|source| Error::Link {
            path: path.to_owned(),
            source,
        })?;
    prog.attach_to_link(link)
        .map_err(|source| Error::program(path.display().to_string(), source))?;
    Ok(())
}

/// The kernel's attach type of a TCX link at `hook` (`bpf_link_info.tcx.attach_type`).
const fn tcx_attach_type(hook: Hook) -> u32 {
    match hook {
        Hook::Ingress => sys::BPF_TCX_INGRESS,
        Hook::Egress => sys::BPF_TCX_EGRESS,
    }
}
