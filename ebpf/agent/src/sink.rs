//! Where desired states go: the daemon calls a [`ServiceSink`] with every new [`DesiredState`]
//! (and again on the periodic resync). The service datapath's map programmer implements it; the
//! daemon only depends on this trait.
//!
//! Contract: `apply` receives the complete desired state, never a delta, so an implementation
//! converges from whatever the maps hold (after a restart, after an earlier failed apply). It
//! must be idempotent: the same state may come again. It must not leave the maps in a state with
//! fewer backends than both the old and the new state have (update in place, remove last). An
//! error is logged and counted, and the same (or a newer) state is retried with backoff.

use std::sync::{Arc, Mutex};

use crate::model::DesiredState;

/// Error returned by a sink; the daemon only logs and counts it.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub trait ServiceSink: Send {
    /// A short name for logs and `status` ("service-programmer", "recording").
    fn name(&self) -> &str;
    /// Makes the datapath implement `desired`.
    fn apply(&mut self, desired: &DesiredState) -> Result<(), SinkError>;
}

/// Records every state it is given (tests, and `--dry-run`-style inspection).
#[derive(Clone, Debug, Default)]
pub struct RecordingSink {
    pub applied: Arc<Mutex<Vec<DesiredState>>>,
}

impl RecordingSink {
    pub fn states(&self) -> Vec<DesiredState> {
        self.applied.lock().expect("poisoned").clone()
    }
}

impl ServiceSink for RecordingSink {
    fn name(&self) -> &str {
        "recording"
    }

    fn apply(&mut self, desired: &DesiredState) -> Result<(), SinkError> {
        self.applied.lock().expect("poisoned").push(desired.clone());
        Ok(())
    }
}

/// The service datapath's map programmer as the daemon's sink: every desired state becomes the
/// minimal ordered map writes (`services::Programmer::apply`).
pub struct ProgrammerSink {
    programmer: crate::services::Programmer<crate::services::PinnedMaps>,
}

impl ProgrammerSink {
    /// Opens the pinned service maps of the loaded datapath. `pod_fast_path`: see
    /// `ServicesConfig::pod_fast_path`.
    pub fn open(layout: &crate::PinLayout, pod_fast_path: bool) -> crate::Result<Self> {
        let mut programmer = crate::services::Programmer::open(layout)?;
        programmer.set_pod_fast_path(pod_fast_path);
        Ok(Self { programmer })
    }
}

impl ServiceSink for ProgrammerSink {
    fn name(&self) -> &str {
        "service-programmer"
    }

    fn apply(&mut self, desired: &DesiredState) -> Result<(), SinkError> {
        let r = self.programmer.apply(desired)?;
        for s in &r.skipped {
            tracing::warn!(reason = %s, "service entry not programmed");
        }
        tracing::debug!(
            services = r.services,
            changed = r.changed,
            writes = r.writes,
            deletes = r.deletes,
            elapsed_us = r.elapsed_us,
            ct_flushed = r.ct_flushed,
            "services programmed"
        );
        Ok(())
    }
}
