//! The two ways of attaching the pod programs, and the dispatch between them: callers name a
//! mode, never a module.

use std::fmt;

use sixlane_common::layout::Hook;

use crate::{Attached, Error, PinLayout, tc, tcx};

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
    ) -> Result<(), (usize, Error)> {
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
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
