//! sixlane's userspace half of the datapath: loading and pinning the eBPF object, re-pointing
//! what is attached at a new load's programs, programming and reading its maps (services,
//! NAT64, counters), and the node agent.
//!
//! Attaching the pinned programs (tc filters, TCX links) is `sixlane_attach`'s, shared with the
//! CNI plugin; the agent binary and the tests use [`loader`] to load (or upgrade) the object.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod ipam;
pub mod lb;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod names;
pub mod nat64;
pub mod ndp;
pub mod node;
pub mod ops;
pub mod pace;
pub mod pinned;
pub mod pod_sources;
pub mod problem;
pub mod reconcile;
pub mod routing;
pub mod services;
pub mod sink;
pub mod source;

pub use error::{Error, Result};
/// The pin layout the agent's API takes.
pub use sixlane_attach::PinLayout;

/// The eBPF object built by `build.rs` (all of sixlane's programs and maps).
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sixlane"))
}
