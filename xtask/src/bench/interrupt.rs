//! Ctrl-C and SIGTERM during a bench: stop, and leave nothing behind.
//!
//! The first signal ends the bench's child processes (and raises [`stopping`] for a trial that
//! measures in this process), so the trial under way fails at once and its guards (testkit's
//! namespaces, veths, pin directories and servers, the scenarios' files) remove what it made as
//! it unwinds; no trial starts after it. Then whatever is still named
//! after this process (a guard's own command may have been the child that was ended) is removed
//! by name ([`sweep::own`]) and the bench exits with 130. If the unwinding takes longer than
//! [`GRACE`], or a second signal comes, that removal happens at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};
use signal_hook::{
    consts::{SIGINT, SIGTERM},
    iterator::Signals,
};

use crate::sweep;

/// How long the trial under way gets to unwind before everything is removed by name.
const GRACE: Duration = Duration::from_secs(15);

/// The signal that stopped the bench (0: none yet).
pub struct Interrupt(Arc<AtomicI32>);

/// Set with the first signal, for a trial whose measurements run in this process (no child
/// whose end would fail it): it checks [`stopping`] between steps.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether a signal has come: a trial stops at its next step.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

impl Interrupt {
    /// From now on SIGINT and SIGTERM stop the bench as described above.
    pub fn install() -> anyhow::Result<Self> {
        let seen = Arc::new(AtomicI32::new(0));
        let mut signals =
            Signals::new([SIGINT, SIGTERM]).context("installing the Ctrl-C handler")?;
        let flag = seen.clone();
        thread::spawn(move || {
            for sig in signals.forever() {
                if flag.swap(sig, Ordering::SeqCst) != 0 {
                    eprintln!("\nbench: signal {sig} again: removing everything now");
                    clean_up_and_exit();
                }
                eprintln!("\nbench: signal {sig}: stopping and removing what this run made");
                STOPPING.store(true, Ordering::SeqCst);
                // The trial under way fails now instead of after its measurements.
                sweep::end_children();
                thread::spawn(|| {
                    thread::sleep(GRACE);
                    eprintln!("bench: the trial did not stop within {GRACE:?}: removing by name");
                    clean_up_and_exit();
                });
            }
        });
        Ok(Self(seen))
    }

    /// Fails once a signal came: nothing new starts after it.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.0.load(Ordering::SeqCst) {
            0 => Ok(()),
            sig => bail!("interrupted by signal {sig}"),
        }
    }

    /// After a signal, once the guards are gone: removes what is left and exits.
    pub fn exit_if_signalled(&self) {
        if self.check().is_err() {
            clean_up_and_exit();
        }
    }
}

fn clean_up_and_exit() -> ! {
    let removed = sweep::own();
    if !removed.is_empty() {
        eprintln!("bench: removed {}", removed.join(", "));
    }
    let left = sweep::own();
    if left.is_empty() {
        eprintln!("bench: stopped; nothing of this run is left");
    } else {
        eprintln!("bench: stopped; could not remove {}", left.join(", "));
    }
    std::process::exit(130);
}
