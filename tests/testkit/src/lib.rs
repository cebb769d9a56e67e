//! sixlane's test harness.
//!
//! - [`names`]: unique, short names (interface names are ≤ 15 bytes) so tests run in parallel.
//! - [`netns`], [`veth`], [`pins`], [`bpffs`], [`process`]: RAII guards. Dropping one removes
//!   what it made, also when the test panics; `cargo xtask test` sweeps anything named with
//!   [`names::PREFIX`] afterwards and fails the run if it finds leftovers.
//! - [`containerd`]: a private containerd (driven with `ctr` or through its CRI) and locally
//!   built busybox OCI images.
//! - [`dns64`]: real resolvers (unbound, with its dns64 module) in namespaces.
//! - [`frr`], [`bird`]: an upstream router (FRR) and a plain BGP speaker (BIRD 2) in
//!   namespaces, each with private sockets and files, on a router's [`lan`]; [`fib`] reads a
//!   namespace's kernel FIB and [`rtmon`] watches it change (rtnetlink notifications,
//!   timestamped).
//! - [`packet`]: packet builders (via etherparse) and an independent checksum verifier; [`ndp`]:
//!   Neighbor Discovery messages built and parsed from the RFC.
//! - [`fixture`] (feature `bpf`): table-driven `BPF_PROG_TEST_RUN` fixtures.
//!
//! Privileged helpers refuse to run without root instead of silently skipping.

pub mod bird;
pub mod bpffs;
pub mod cmd;
pub mod containerd;
pub mod daemon;
pub mod dns64;
pub mod error;
pub mod fib;
#[cfg(feature = "bpf")]
pub mod fixture;
pub mod frr;
pub mod lan;
pub mod names;
pub mod ndp;
pub mod netns;
pub mod packet;
pub mod pins;
pub mod process;
pub mod rng;
pub mod rtmon;
pub mod tempdir;
pub mod veth;
pub mod wait;

pub use error::{Error, Result};
pub use netns::NetNs;
pub use pins::PinDir;
pub use process::ChildGuard;
pub use tempdir::TempDir;
pub use veth::Veth;

/// Panics with a clear message unless running as root. Privileged tests call this first: a test
/// that cannot run must fail, not pass vacuously.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces, BPF); run it through `cargo xtask test`"
    );
}
