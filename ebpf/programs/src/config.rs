//! The agent's datapath configuration (one `sixlane_common::services::Config`, all-zero until the
//! agent writes it): conntrack lifetimes and SNAT for the service stage, the pod fast-path
//! switch for forwarding.

use aya_ebpf::{macros::map, maps::Array};
use sixlane_common::services::Config;

// Named for its first user, the service stage: the name is part of the pinned layout.
#[map(name = "SL_SVC_CONFIG")]
static SL_SVC_CONFIG: Array<Config> = Array::pinned(1, 0);

/// The configuration, if the map holds one (it always does: an array has its entries).
#[inline(always)]
pub fn get() -> Option<&'static Config> {
    SL_SVC_CONFIG.get(0)
}
