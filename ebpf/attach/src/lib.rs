//! What sixlane's two userspace binaries share, without the agent's build script (which compiles
//! the eBPF object): the bpffs pin layout ([`pins`]), attaching the pinned programs to an
//! interface as tc filters ([`tc`]) or pinned TCX links ([`tcx`]), chosen by an [`AttachMode`],
//! a blocking rtnetlink client ([`rtnl`]), the pod source table ([`sources`]), the RFC 3339 timestamps both binaries print
//! ([`rfc3339`]) and how they print an error: with its causes ([`chain`]).
//!
//! The CNI plugin attaches a pod's programs with it; the agent loads the object, pins the
//! programs and re-points what is attached at a new load's programs ([`repoint_all`]).

mod error;
mod hook;
pub mod iface;
mod mode;
mod outcome;
pub mod pins;
mod program;
pub mod rfc3339;
pub mod rtnl;
pub mod sources;
mod sys;
pub mod tc;
pub mod tcx;

pub use error::{Chain, Error, Result, chain};
pub use hook::HookExt;
pub use mode::{AttachMode, RepointReport, repoint_all};
pub use outcome::{Attached, Repointed};
pub use pins::PinLayout;
