//! The BIRD each node's agent starts beside itself (static mode, `bgp.bird.supervise`). It
//! outlives the agent on purpose (an agent restart drops no BGP session), so the demo stops it
//! itself once the agent is gone: by the pid in its pid file.

use std::{
    fs,
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// How long BIRD may take to say goodbye to its peers after SIGTERM.
const STOP: Duration = Duration::from_secs(3);

/// Stops the BIRD whose pid file is `pid_file` when dropped.
pub struct Bird {
    pub pid_file: PathBuf,
}

impl Bird {
    /// The pid in the pid file, if that process is a live (not zombie) BIRD: never a stranger
    /// that reused a stale pid.
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // `pid (comm) state ...`
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, tail) = stat.rsplit_once(')')?;
        let live = head.ends_with("(bird") && !tail.trim_start().starts_with('Z');
        live.then_some(pid)
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else { return };
        let pid = Pid::from_raw(pid);
        // SIGTERM: BIRD closes its sessions (the router withdraws at once), then exits.
        let _ = kill(pid, Signal::SIGTERM);
        let start = Instant::now();
        while self.pid().is_some() {
            if start.elapsed() > STOP {
                let _ = kill(pid, Signal::SIGKILL);
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}
