//! When the agent reconciles after its sources change: at once for a change after a quiet spell
//! (an isolated change waits for nothing), and at most once per `source.debounceMs` under churn,
//! so a rollout's burst of EndpointSlice updates is coalesced into few states (kube-proxy's
//! `minSyncPeriod` works the same way).

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Pace {
    min_interval: Duration,
    last_run: Option<Instant>,
    deadline: Option<Instant>,
}

impl Pace {
    /// At most one reconcile per `min_interval` (0: every change at once).
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_run: None,
            deadline: None,
        }
    }

    /// When the next reconcile is due, if one is.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The sources changed at `now`: due at once, or when `min_interval` since the last run is
    /// over; an earlier deadline already set stays.
    pub fn changed(&mut self, now: Instant) {
        let earliest = self
            .last_run
            .map_or(now, |t| (t + self.min_interval).max(now));
        self.deadline = Some(self.deadline.map_or(earliest, |d| d.min(earliest)));
    }

    /// A reconcile ran at `now`; `next` is when it asked to run again.
    pub fn reconciled(&mut self, now: Instant, next: Option<Instant>) {
        self.last_run = Some(now);
        self.deadline = next;
    }

    /// Run at once, unless a run is already due.
    pub fn soon(&mut self, now: Instant) {
        self.deadline = self.deadline.or(Some(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_isolated_change_runs_at_once_and_churn_once_per_interval() {
        let t0 = Instant::now();
        let mut p = Pace::new(100 * MS);
        assert_eq!(p.deadline(), None);
        p.changed(t0);
        assert_eq!(p.deadline(), Some(t0), "first change: at once");
        p.reconciled(t0, None);
        // A burst right after the run waits out the interval, and is not pushed further.
        p.changed(t0 + 5 * MS);
        assert_eq!(p.deadline(), Some(t0 + 100 * MS));
        p.changed(t0 + 90 * MS);
        assert_eq!(p.deadline(), Some(t0 + 100 * MS), "coalesced, not extended");
        p.reconciled(t0 + 100 * MS, None);
        // Quiet for longer than the interval: at once again.
        p.changed(t0 + 500 * MS);
        assert_eq!(p.deadline(), Some(t0 + 500 * MS));
    }

    #[test]
    fn a_requested_recheck_and_soon_keep_the_earliest() {
        let t0 = Instant::now();
        let mut p = Pace::new(100 * MS);
        p.reconciled(t0, Some(t0 + 2000 * MS));
        p.changed(t0 + 300 * MS);
        assert_eq!(
            p.deadline(),
            Some(t0 + 300 * MS),
            "a change beats a later recheck"
        );
        p.reconciled(t0 + 300 * MS, Some(t0 + 350 * MS));
        p.changed(t0 + 310 * MS);
        assert_eq!(
            p.deadline(),
            Some(t0 + 350 * MS),
            "an earlier recheck stays"
        );
        p.soon(t0 + 320 * MS);
        assert_eq!(p.deadline(), Some(t0 + 350 * MS), "already due");
        p.reconciled(t0 + 350 * MS, None);
        p.soon(t0 + 360 * MS);
        assert_eq!(p.deadline(), Some(t0 + 360 * MS));
    }

    #[test]
    fn no_interval_means_every_change_at_once() {
        let t0 = Instant::now();
        let mut p = Pace::new(Duration::ZERO);
        p.reconciled(t0, None);
        p.changed(t0 + MS);
        assert_eq!(p.deadline(), Some(t0 + MS));
    }
}
