//! Child processes that are ended (by PID, with their process group) when the guard drops.

use std::{
    os::unix::process::CommandExt as _,
    process::{Child, Command, ExitStatus},
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use crate::{Error, Result};

/// Every process descending from `roots` (children, their children, ...), excluding the roots.
/// Used to end what a daemon started (containerd's shims and their containers) after the daemon
/// itself is gone: an orphan is reparented, but stays in this list if collected first.
pub fn descendants(roots: &[i32]) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces.
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            if let Some(ppid) = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok())
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found: Vec<i32> = Vec::new();
    let mut frontier: Vec<i32> = roots.to_vec();
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !found.contains(&child) && !roots.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// A spawned process in its own process group. Drop sends SIGTERM to the group, waits up to 2 s,
/// then SIGKILLs it, so helpers started through a shell go too.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    /// Spawns `cmd` in a new process group.
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let what = format!("{cmd:?}");
        let child = cmd
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                cmd: what.clone(),
                source,
            })?;
        Ok(Self {
            child: Some(child),
            what,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }

    /// Whether the process has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child_mut().try_wait().ok().flatten()
    }

    /// Sends `sig` to the process group.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        killpg(Pid::from_raw(self.pid() as i32), sig)?;
        Ok(())
    }

    /// Waits for the process to exit by itself, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                return Err(Error::Timeout {
                    what: format!("{} to exit", self.what),
                    secs: timeout.as_secs(),
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ends the process group: SIGTERM, then SIGKILL after 2 s. Returns the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            // Reap stragglers of the group (a shell's children) all the same.
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            return Some(status);
        }
        let pgid = Pid::from_raw(child.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                let _ = killpg(pgid, Signal::SIGKILL);
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        child.wait().ok()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate();
    }
}
