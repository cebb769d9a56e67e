//! sixlane's userspace half of the datapath: loading and pinning the eBPF object, attaching its
//! programs with TCX links that outlive the process, and reading its maps.
//!
//! The CNI plugin uses [`tcx`] to attach the pinned programs to a pod's host veth; the agent
//! binary and the tests use [`loader`] to load (or upgrade) the object.

#[cfg(feature = "daemon")]
pub mod cli;
#[cfg(feature = "daemon")]
pub mod config;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod error;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod nat64;
#[cfg(feature = "daemon")]
pub mod node;
#[cfg(feature = "daemon")]
pub mod ops;
pub mod pins;
#[cfg(feature = "daemon")]
pub mod reconcile;
pub mod rfc3339;
pub mod rtnl;
pub mod services;
#[cfg(feature = "daemon")]
pub mod sink;
#[cfg(feature = "daemon")]
pub mod source;
pub mod tc;
pub mod tcx;

pub use error::{Error, Result};
pub use pins::PinLayout;

/// The eBPF object built by `build.rs` (all of sixlane's programs and maps).
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sixlane"))
}
