//! Shared helpers for the integration tests in `tests/tests/`.

pub mod agentproc;
pub mod bins;
pub mod cni;
pub mod cni_node;
pub use sixlane_testkit::dns64;
pub mod cluster;
pub mod cri;
pub mod echo;
pub mod image;
pub mod kubeapi;
pub mod kubelet;
pub mod manifests;
pub mod nat64;
pub mod neigh;
pub mod podattach;
pub mod sim;
pub mod spoof;
pub mod svc;

use sixlane_agent::{
    PinLayout,
    loader::{Datapath, LoadOptions},
};
use sixlane_testkit::PinDir;

/// Loads the datapath with a fresh per-test pin root. Keep the `PinDir` alive as long as the
/// datapath is used; dropping it removes every pin.
pub fn load_datapath() -> (PinDir, PinLayout, Datapath) {
    sixlane_testkit::require_root();
    let dir = PinDir::new().expect("pin dir");
    let layout = PinLayout::new(dir.path());
    let dp = Datapath::load(&layout, &LoadOptions::default()).expect("load datapath");
    (dir, layout, dp)
}
