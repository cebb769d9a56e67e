//! The service datapath's userspace half (kube-proxy replacement): programming the pinned
//! service maps from the typed model ([`crate::model::DesiredState`]), conntrack garbage
//! collection, and the `services` / `conntrack` CLI.
//!
//! ```no_run
//! # fn main() -> sixlane_agent::Result<()> {
//! use sixlane_agent::{PinLayout, model::DesiredState, services::Programmer};
//! let mut programmer = Programmer::open(&PinLayout::default())?;
//! let report = programmer.apply(&DesiredState::default())?;
//! println!("{} writes in {} us", report.writes, report.elapsed_us);
//! # Ok(()) }
//! ```
//!
//! Map types and semantics: `sixlane_common::services`; operator view: `docs/services.md`.

pub mod cli;
pub mod conntrack;
pub mod plan;
pub mod programmer;
pub mod store;
mod sys;

pub use conntrack::{GcReport, gc, gc_pinned};
pub use programmer::{ApplyReport, Programmer};
pub use store::{MapId, MapStore, MemoryMaps, PinnedMaps};

#[cfg(test)]
mod tests;
