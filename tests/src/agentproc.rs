//! For tests that run the real `sixlane-agent` as a process: waiting on it with its log at hand,
//! and asking its HTTP endpoints from a namespace.

use std::{
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use sixlane_testkit::NetNs;

/// How long an agent gets to act on a change (generous: the CI machine has two shared cores).
const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `f` until it gives a value; on timeout, panics with `what` and the agent's log.
pub fn wait_for<T>(what: &str, log: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if let Some(v) = f() {
            return v;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "timed out waiting for {what}; agent log:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// [`wait_for`] a condition.
pub fn wait_until(what: &str, log: &Path, mut f: impl FnMut() -> bool) {
    wait_for(what, log, || f().then_some(()));
}

/// GET `url` from inside `ns`: the HTTP status (0 when there was no answer) and the body.
pub fn http_get(ns: &NetNs, url: &str) -> (u16, String) {
    let out = ns
        .exec_output("curl", &["-s", "-m", "5", "-w", "\n%{http_code}", url])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
