//! Network namespaces that are deleted, with every process inside them, when the guard drops.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
};

use nix::{
    sched::{CloneFlags, setns},
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{ChildGuard, Result, cmd, names};

/// A named network namespace (`ip netns add`), with loopback up.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace with a unique name.
    pub fn new() -> Result<Self> {
        Self::named(names::unique('n'))
    }

    /// Creates a namespace called `name` (which should start with [`names::PREFIX`]).
    pub fn named(name: String) -> Result<Self> {
        cmd::ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, what CNI calls `CNI_NETNS`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A `Command` that runs `program` inside the namespace. `nsenter --net` rather than
    /// `ip netns exec`: the latter remounts /sys, which hides the bpffs at /sys/fs/bpf from the
    /// program (and with it every pinned map and program).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs `program args...` inside the namespace, returning stdout; non-zero exit is an error.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = cmd::output(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `program args...` inside the namespace and returns its output whatever the exit code.
    pub fn exec_output(&self, program: &str, args: &[&str]) -> Result<Output> {
        let mut c = self.command(program);
        c.args(args);
        c.output().map_err(|source| crate::Error::Spawn {
            cmd: format!("{c:?}"),
            source,
        })
    }

    /// Runs a shell command line inside the namespace.
    pub fn sh(&self, script: &str) -> Result<String> {
        self.exec("sh", &["-c", script])
    }

    /// `ip -n <ns> args...`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        cmd::ip(&full)
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Starts a long-running process inside the namespace; it is ended when the guard (or, at
    /// the latest, this namespace) drops.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<ChildGuard> {
        ChildGuard::spawn(self.command(program).args(args))
    }

    /// Runs `f` on a thread that has joined this namespace (for netlink sockets, aya attach by
    /// interface name, or `BPF_PROG_TEST_RUN` that must see this namespace's routes).
    pub fn enter<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        enter_path(&self.path(), f)
    }

    /// PIDs of processes whose network namespace is this one.
    pub fn pids(&self) -> Vec<i32> {
        cmd::ip(&["netns", "pids", &self.name])
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs `f` on a thread in the network namespace at `path` (`/run/netns/<name>`, or a process's
/// `/proc/<pid>/ns/net`, e.g. a CRI pod's).
pub fn enter_path<F, R>(path: &Path, f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    thread::scope(|s| {
        s.spawn(move || {
            let file =
                File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
            setns(&file, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Processes keep a namespace alive after `ip netns del`; end them first, by PID.
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            thread::sleep(std::time::Duration::from_millis(20));
        }
        if let Err(e) = cmd::ip(&["netns", "del", &self.name]) {
            eprintln!("warning: deleting netns {}: {e}", self.name);
        }
    }
}
