//! The two ways of attaching the pod programs, and the dispatch between them: callers name a
//! mode, never a module.

use std::fmt;

use aya::Ebpf;
use sixlane_common::layout::Hook;

use crate::{Attached, Error, PinLayout, Repointed, Result, tc, tcx};

/// How the pod programs are attached to a pod's host veth (the CNI plugin's `attach` key, the
/// agent's `cni.attach`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// clsact + direct-action cls_bpf filters ([`crate::tc`]): no grace period per attach.
    #[default]
    Tc,
    /// Pinned TCX links ([`crate::tcx`]): link-based ownership, one RCU grace period per attach.
    Tcx,
}

impl AttachMode {
    pub const ALL: [Self; 2] = [Self::Tc, Self::Tcx];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tc => "tc",
            Self::Tcx => "tcx",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// What this mode puts on an interface, for messages.
    pub const fn attachment(self) -> &'static str {
        match self {
            Self::Tc => "tc filter",
            Self::Tcx => "TCX link",
        }
    }

    /// Attaches the programs `progs` pinned under `layout` (by a running agent) to `iface`, in
    /// order, reporting each to `each`: what the CNI plugin does for a new pod. In tc mode every
    /// pin is opened first ([`Error::NotPinned`] before anything changes on the interface) and
    /// the clsact qdisc is ensured once for all of them. Stops at the first failure and returns
    /// the index of the program that failed with the error; what was attached before stays (the
    /// caller decides whether to roll back).
    pub fn attach_pinned_all(
        self,
        layout: &PinLayout,
        iface: &str,
        progs: &[(&str, Hook)],
        mut each: impl FnMut(&str, Attached),
    ) -> std::result::Result<(), (usize, Error)> {
        match self {
            Self::Tc => tc::attach_pinned_all(layout, iface, progs, each),
            Self::Tcx => {
                for (i, (prog, hook)) in progs.iter().enumerate() {
                    let a = tcx::attach_pinned(layout, prog, iface, *hook);
                    each(prog, a.map_err(|e| (i, e))?);
                }
                Ok(())
            }
        }
    }

    /// Removes what this mode attached for `prog` at `hook` on `iface` (in tc mode: sixlane's
    /// filter on the hook; in TCX mode: the link pinned for `prog`, detached synchronously).
    /// Returns whether there was something.
    pub fn detach(self, layout: &PinLayout, iface: &str, prog: &str, hook: Hook) -> Result<bool> {
        match self {
            Self::Tc => tc::detach(iface, hook),
            Self::Tcx => tcx::detach(layout, iface, prog),
        }
    }

    /// The id of the program this mode runs for `prog` at `hook` on `iface`, if any: sixlane's
    /// filter on the hook (whatever program it runs), or the live link pinned for `prog`.
    pub fn find(
        self,
        layout: &PinLayout,
        iface: &str,
        prog: &str,
        hook: Hook,
    ) -> Result<Option<u32>> {
        match self {
            Self::Tc => Ok(tc::find(iface, hook)?.map(|f| f.prog_id)),
            Self::Tcx => tcx::find(layout, iface, prog, hook),
        }
    }

    /// Re-points what this mode attached at the programs of `ebpf` (a new load): [`tcx::repoint`]
    /// or [`tc::repoint`].
    pub fn repoint(self, layout: &PinLayout, ebpf: &mut Ebpf) -> Result<Repointed> {
        match self {
            Self::Tc => tc::repoint(layout, ebpf),
            Self::Tcx => tcx::repoint(layout, ebpf),
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What re-pointing everything attached after a load did, by mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepointReport {
    /// Pinned links: the uplink, pods attached in TCX mode.
    pub tcx: Repointed,
    /// sixlane's filters in the caller's network namespace: pods attached in tc mode.
    pub tc: Repointed,
}

/// Points everything attached under `layout` at the programs of `ebpf` (a new load): every pinned
/// link, then sixlane's tc filters on the interfaces of the calling thread's network namespace.
/// Run it in the namespace holding the pod veths (the node's): traffic switches program
/// atomically (`bpf_link_update`, or an in-place filter replace), without a moment where an
/// interface has none.
pub fn repoint_all(layout: &PinLayout, ebpf: &mut Ebpf) -> Result<RepointReport> {
    Ok(RepointReport {
        tcx: AttachMode::Tcx.repoint(layout, ebpf)?,
        tc: AttachMode::Tc.repoint(layout, ebpf)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_modes_round_trip_and_default_to_tc() {
        assert_eq!(AttachMode::default(), AttachMode::Tc);
        for m in AttachMode::ALL {
            assert_eq!(AttachMode::parse(m.as_str()), Some(m));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
        }
        assert_eq!(AttachMode::parse("netlink"), None);
    }
}
