//! Classic tc attachment of the pod programs: a `clsact` qdisc on the interface and one
//! direct-action `cls_bpf` filter per hook, at sixlane's own priority and handle.
//!
//! Why not TCX for pods: a TCX attach (and detach) waits for an RCU grace period while holding
//! RTNL (`tcx_entry_sync()` → `synchronize_rcu()`), about 15 ms per program on a small VM, which
//! was most of a pod's CNI ADD. A `cls_bpf` filter is published with RCU and no synchronous
//! grace period (≈ 0.1 ms).
//!
//! What that costs: a filter is not a bpf_link, so there is nothing to pin. sixlane finds its
//! filters by their fixed priority and handle ([`PRIORITY`], [`HANDLE`]) and tells its own from
//! another datapath's by the maps their programs use ([`PinLayout::map_ids`]). Filters live in a
//! network namespace, not on bpffs, so an upgrade walks the interfaces of the namespace it runs in
//! ([`repoint`]). Re-pointing a filter (`RTM_NEWTFILTER` on the same priority and handle without
//! `NLM_F_EXCL`) swaps its program in place (`cls_bpf_change` → `list_replace_rcu`): there is
//! never a moment without a program.

use std::{collections::HashSet, io};

use aya::{
    Ebpf,
    programs::{
        ProgramError, SchedClassifier,
        tc::{self as aya_tc, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
    },
};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcFilterBpfOption, TcHandle as NlHandle, TcMessage, TcOption},
};
use sixlane_common::layout::Hook;
use tracing::{debug, warn};

use crate::{
    Attached, Error, HookExt as _, PinLayout, Repointed, Result, iface, program, rtnl::Rtnl, sys,
};

/// The priority (`tc ... pref`) of sixlane's filters. Low, so sixlane's programs see a pod's
/// packets before filters added without an explicit priority (the kernel starts those at 49152),
/// and unusual, so nothing else is expected there.
pub const PRIORITY: u16 = 6;
/// The handle of sixlane's filter at [`PRIORITY`] (`tc ... handle 0x516c`). The kernel allocates
/// `cls_bpf` handles from 1 upwards, so an automatically numbered filter never takes it.
pub const HANDLE: u32 = 0x516c;

const ETH_P_ALL: u16 = 0x0003;
const CLSACT_MAJOR: u16 = 0xffff;
const MIN_INGRESS: u16 = 0xfff2;
const MIN_EGRESS: u16 = 0xfff3;

/// A sixlane filter (at [`PRIORITY`] and [`HANDLE`]) found on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub ifindex: u32,
    pub ifname: String,
    pub hook: Hook,
    /// The id of the program the filter runs.
    pub prog_id: u32,
    /// That program's name as the kernel has it (at most 15 bytes; empty if it could not be
    /// read).
    pub program: String,
    /// The maps that program uses: which datapath it belongs to ([`PinLayout::map_ids`]).
    pub map_ids: Vec<u32>,
}

/// The clsact qdisc's class that `hook`'s filters hang off.
fn parent(hook: Hook) -> NlHandle {
    let minor = match hook {
        Hook::Ingress => MIN_INGRESS,
        Hook::Egress => MIN_EGRESS,
    };
    NlHandle {
        major: CLSACT_MAJOR,
        minor,
    }
}

fn tc_err(what: &'static str, iface: &str, source: io::Error) -> Error {
    Error::Tc {
        what,
        iface: iface.to_owned(),
        source,
    }
}

fn errno_of(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::TcError(TcError::NetlinkError(n)) | ProgramError::NetlinkError(n) => {
            n.raw_os_error()
        }
        ProgramError::TcError(TcError::IoError(e)) => e.raw_os_error(),
        _ => None,
    }
}

/// Adds the `clsact` qdisc to `iface` unless it has one.
fn ensure_clsact(iface: &str) -> Result<()> {
    if iface::index(iface).is_none() {
        return Err(Error::NoSuchInterface(iface.to_owned()));
    }
    match aya_tc::qdisc_add_clsact(iface) {
        Ok(()) => Ok(()),
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(tc_err(
            "adding the clsact qdisc",
            iface,
            io::Error::other(e),
        )),
    }
}

/// aya keeps the links it creates and detaches them when the program value drops: hand ours to
/// the kernel for good (a netlink link holds no file descriptor, forgetting it leaks nothing).
fn keep(prog: &mut SchedClassifier, id: aya_tc::SchedClassifierLinkId, name: &str) -> Result<()> {
    let link = prog
        .take_link(id)
        .map_err(|source| Error::program(name, source))?;
    std::mem::forget(link);
    Ok(())
}

/// Attaches `prog` (named `prog_name`) to `iface` at `hook` as sixlane's filter, on an interface
/// whose clsact qdisc is known to be there. Idempotent: an existing filter at sixlane's priority
/// and handle has its program replaced in place (never a second filter).
fn attach_filter(
    prog: &mut SchedClassifier,
    prog_name: &str,
    iface: &str,
    hook: Hook,
) -> Result<Attached> {
    let opts = TcAttachOptions::Netlink(NlOptions {
        priority: PRIORITY,
        handle: TcHandle::from(HANDLE),
        classid: None,
    });
    // aya creates with NLM_F_CREATE | NLM_F_EXCL: EEXIST means our filter is there already.
    match prog.attach_with_options(iface, hook.attach_type(), opts) {
        Ok(id) => {
            keep(prog, id, prog_name)?;
            debug!(iface, prog_name, hook = hook.name(), "tc filter attached");
            Ok(Attached::Created)
        }
        Err(e) if errno_of(&e) == Some(libc::EEXIST) => {
            replace(prog, prog_name, iface, hook)?;
            Ok(Attached::Replaced)
        }
        Err(e) if errno_of(&e) == Some(libc::ENODEV) => {
            Err(Error::NoSuchInterface(iface.to_owned()))
        }
        Err(source) => Err(Error::program(prog_name, source)),
    }
}

/// Replaces the program of sixlane's existing filter on `iface` at `hook` with `prog`, in place
/// (`RTM_NEWTFILTER` without `NLM_F_CREATE`: fails with ENOENT rather than create a filter).
fn replace(prog: &mut SchedClassifier, prog_name: &str, iface: &str, hook: Hook) -> Result<()> {
    let link = SchedClassifierLink::attached(
        iface,
        hook.attach_type(),
        PRIORITY,
        TcHandle::from(HANDLE),
        None,
    )
    .map_err(|_| Error::NoSuchInterface(iface.to_owned()))?;
    let id = prog
        .attach_to_link(link)
        .map_err(|source| Error::program(prog_name, source))?;
    keep(prog, id, prog_name)?;
    debug!(iface, prog_name, hook = hook.name(), "tc filter replaced");
    Ok(())
}

/// Attaches the program pinned at `progs/<prog_name>` (by a running agent) to `iface` as
/// sixlane's filter, adding the `clsact` qdisc if needed: what the CNI plugin does for a new pod
/// in tc mode. [`Error::NotPinned`] when the datapath is not loaded. Idempotent: an existing
/// filter at sixlane's priority and handle has its program replaced in place.
pub fn attach_pinned(
    layout: &PinLayout,
    prog_name: &str,
    iface: &str,
    hook: Hook,
) -> Result<Attached> {
    let mut prog = layout.open_classifier(prog_name)?;
    ensure_clsact(iface)?;
    attach_filter(&mut prog, prog_name, iface, hook)
}

/// [`attach_pinned`] for each of `progs` in order, reporting each to `each`: every pin is opened
/// first ([`Error::NotPinned`] before anything changes on the interface) and the clsact qdisc is
/// ensured once for all of them. On failure, the index of the program that failed.
pub fn attach_pinned_all(
    layout: &PinLayout,
    iface: &str,
    progs: &[(&str, Hook)],
    mut each: impl FnMut(&str, Attached),
) -> std::result::Result<(), (usize, Error)> {
    let mut loaded = Vec::with_capacity(progs.len());
    for (i, (prog, _)) in progs.iter().enumerate() {
        loaded.push(layout.open_classifier(prog).map_err(|e| (i, e))?);
    }
    ensure_clsact(iface).map_err(|e| (0, e))?;
    for (i, ((prog, hook), p)) in progs.iter().zip(&mut loaded).enumerate() {
        each(
            prog,
            attach_filter(p, prog, iface, *hook).map_err(|e| (i, e))?,
        );
    }
    Ok(())
}

/// Deletes sixlane's filter on `iface` at `hook` (other filters and the qdisc stay). Returns
/// whether there was one; a missing interface counts as none.
pub fn detach(iface: &str, hook: Hook) -> Result<bool> {
    let Some(ifindex) = iface::index(iface) else {
        return Ok(false);
    };
    let mut m = TcMessage::with_index(ifindex as i32);
    m.header.parent = parent(hook);
    m.header.handle = HANDLE.into();
    m.header.info = filter_info();
    match request(RouteNetlinkMessage::DelTrafficFilter(m), NLM_F_ACK) {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENODEV | libc::EINVAL)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(tc_err("deleting sixlane's filter", iface, e)),
    }
}

/// `tcm_info` of a filter: priority in the upper 16 bits, protocol (network order) below.
fn filter_info() -> u32 {
    (u32::from(PRIORITY) << 16) | u32::from(ETH_P_ALL.to_be())
}

/// sixlane's filter on the interface with index `ifindex` at `hook`, if any.
fn find_by_index(ifindex: u32, ifname: &str, hook: Hook) -> io::Result<Option<Filter>> {
    let parent = parent(hook);
    let mut m = TcMessage::with_index(ifindex as i32);
    m.header.parent = parent;
    // The kernel dumps only the filters of this priority (tcf_chain_dump).
    m.header.info = u32::from(PRIORITY) << 16;
    let replies = match request(RouteNetlinkMessage::GetTrafficFilter(m), NLM_F_DUMP) {
        Ok(r) => r,
        // No clsact (EINVAL), or the interface went away.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL | libc::ENODEV | libc::ENOENT)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    for r in replies {
        let RouteNetlinkMessage::NewTrafficFilter(f) = r else {
            continue;
        };
        if u32::from(f.header.handle) != HANDLE
            || (f.header.info >> 16) as u16 != PRIORITY
            || f.header.parent != parent
        {
            continue;
        }
        let mut kind_bpf = false;
        let mut prog_id = 0;
        for a in &f.attributes {
            match a {
                TcAttribute::Kind(k) => kind_bpf = k == "bpf",
                TcAttribute::Options(opts) => {
                    for o in opts {
                        if let TcOption::Bpf(TcFilterBpfOption::ProgId(id)) = o {
                            prog_id = *id;
                        }
                    }
                }
                _ => {}
            }
        }
        if kind_bpf && prog_id != 0 {
            // The filter's own name (TCA_BPF_NAME) is whatever its creator chose (`tc` writes
            // `<file>:[section]`): the program's kernel name is what identifies it.
            let (program, map_ids) = sys::prog_name_and_maps(prog_id).unwrap_or_default();
            return Ok(Some(Filter {
                ifindex,
                ifname: ifname.to_owned(),
                hook,
                prog_id,
                program,
                map_ids,
            }));
        }
    }
    Ok(None)
}

/// sixlane's filter on `iface` at `hook`, if any (whatever datapath it belongs to).
pub fn find(iface: &str, hook: Hook) -> Result<Option<Filter>> {
    let Some(idx) = iface::index(iface) else {
        return Ok(None);
    };
    find_by_index(idx, iface, hook).map_err(|e| tc_err("listing filters", iface, e))
}

/// Every sixlane filter (at [`PRIORITY`]/[`HANDLE`]) on every interface of the calling thread's
/// network namespace: one qdisc dump to find the interfaces with a `clsact` qdisc, then one filter
/// dump per hook of each.
fn list() -> Result<Vec<Filter>> {
    let replies = request(
        RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
        NLM_F_DUMP,
    )
    .map_err(|e| tc_err("listing qdiscs", "*", e))?;
    let mut ifindexes: Vec<u32> = replies
        .into_iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewQueueDiscipline(q)
                if q.attributes
                    .iter()
                    .any(|a| matches!(a, TcAttribute::Kind(k) if k == "clsact")) =>
            {
                u32::try_from(q.header.index).ok()
            }
            _ => None,
        })
        .collect();
    ifindexes.sort_unstable();
    ifindexes.dedup();
    let mut out = Vec::new();
    for idx in ifindexes {
        let Some(name) = iface::name(idx) else {
            continue;
        };
        for hook in [Hook::Ingress, Hook::Egress] {
            if let Some(f) =
                find_by_index(idx, &name, hook).map_err(|e| tc_err("listing filters", &name, e))?
            {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// Whether `f`'s program uses one of `maps` (see [`PinLayout::map_ids`]).
fn owned_by(f: &Filter, maps: &HashSet<u32>) -> bool {
    f.map_ids.iter().any(|id| maps.contains(id))
}

/// sixlane's filters in this network namespace that belong to the datapath pinned at `layout`.
pub fn list_owned(layout: &PinLayout) -> Result<Vec<Filter>> {
    let maps = layout.map_ids()?;
    Ok(list()?.into_iter().filter(|f| owned_by(f, &maps)).collect())
}

/// Re-points sixlane's filters ([`PRIORITY`]/[`HANDLE`]) on every interface of the calling
/// thread's network namespace at the program of the same name in `ebpf` (a new load), replacing
/// each in place. Filters have no pins: only the namespace knows them, so this must run where the
/// pod veths are. Filters whose program uses none of `layout`'s maps belong to another datapath
/// and are left alone; interfaces without a sixlane filter are skipped.
pub fn repoint(layout: &PinLayout, ebpf: &mut Ebpf) -> Result<Repointed> {
    let maps = layout.map_ids()?;
    let mut report = Repointed::default();
    for f in list()? {
        if !owned_by(&f, &maps) {
            report.foreign += 1;
            continue;
        }
        let Some((name, p)) = program::classifier_by_kernel_name(ebpf, &f.program) else {
            warn!(iface = %f.ifname, program = %f.program, "tc filter for a program this build does not have; left alone");
            report.unknown += 1;
            continue;
        };
        if program::id(p, &name)? == f.prog_id {
            report.current += 1;
            continue;
        }
        match replace(p, &name, &f.ifname, f.hook) {
            Ok(()) => report.replaced += 1,
            Err(Error::NoSuchInterface(_)) => report.gone += 1,
            Err(Error::Program { source, .. }) if is_gone(&source) => report.gone += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// A replace that found no filter (ENOENT) or no interface (ENODEV): it went away meanwhile.
fn is_gone(e: &ProgramError) -> bool {
    matches!(errno_of(e), Some(libc::ENOENT | libc::ENODEV))
}

/// One rtnetlink request on a fresh socket: it must be opened in the caller's (current)
/// namespace, and these run a handful of times per pod.
fn request(msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    Rtnl::open()?.request(msg, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_info_is_priority_and_eth_p_all_in_network_order() {
        assert_eq!(filter_info(), 0x0006_0300);
        assert_eq!(u32::from(parent(Hook::Ingress)), 0xffff_fff2);
        assert_eq!(u32::from(parent(Hook::Egress)), 0xffff_fff3);
    }
}
