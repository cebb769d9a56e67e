//! Frontends: the service stage's hooks and the frontend table it looks packets up in. The
//! tables of frontend records and names the agent keeps for itself live here too.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap},
};
use sixlane_common::{
    metrics::Direction,
    services::{RevNat, Service, SvcKey, SvcPortInfo, ct_flags, scope, sizes},
};

#[map(name = "SL_SVC")]
static SL_SVC: HashMap<SvcKey, Service> = HashMap::pinned(sizes::SERVICES, 0);

// Written and read by the agent only (frontend records and service names for the CLI and for a
// restarted agent); part of the object so they are created and pinned with the others.
#[map(name = "SL_REVNAT")]
static SL_REVNAT: Array<RevNat> = Array::pinned(sizes::REVNAT, 0);

#[map(name = "SL_SVC_INFO")]
static SL_SVC_INFO: HashMap<u32, SvcPortInfo> = HashMap::pinned(sizes::SVC_INFO, BPF_F_NO_PREALLOC);

/// The four hooks, as conntrack entries name them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    FromPod,
    ToPod,
    FromUplink,
    ToUplink,
}

impl Hook {
    #[inline(always)]
    pub const fn bit(self) -> u16 {
        match self {
            Hook::FromPod => ct_flags::AT_FROM_POD,
            Hook::ToPod => ct_flags::AT_TO_POD,
            Hook::FromUplink => ct_flags::AT_FROM_UPLINK,
            Hook::ToUplink => ct_flags::AT_TO_UPLINK,
        }
    }

    #[inline(always)]
    pub const fn dir(self) -> Direction {
        match self {
            Hook::FromPod | Hook::FromUplink => Direction::Ingress,
            Hook::ToPod | Hook::ToUplink => Direction::Egress,
        }
    }

    /// Hooks where new flows start (and frontends are looked up), with their scope. On the
    /// uplink's egress, a packet still addressed to a frontend comes from a process of the
    /// node itself (pods' flows were translated on their veth): an in-cluster client.
    #[inline(always)]
    pub const fn scope(self) -> Option<u8> {
        match self {
            Hook::FromPod | Hook::ToUplink => Some(scope::INTERNAL),
            Hook::FromUplink => Some(scope::EXTERNAL),
            Hook::ToPod => None,
        }
    }
}

/// A frontend entry.
#[inline(always)]
pub fn service(addr: &[u8; 16], port_be: u16, l4: u8, scope: u8) -> Option<&'static Service> {
    let key = SvcKey {
        addr: *addr,
        port: port_be,
        proto: l4,
        scope,
    };
    // SAFETY: map values stay valid for the program run; userspace replaces them whole.
    unsafe { SL_SVC.get(key) }
}
