//! Removing everything the demo made. Works from names and paths alone (namespaces `sld-*` and
//! every process in them, pins `/sys/fs/bpf/sld-*`, the demo directory with the router's and
//! each BIRD's files), so it serves a normal end, Ctrl-C, `--down` after `--keep`, and the
//! leftovers of a run that crashed.

use std::{fs, path::Path, process::Command};

use sixlane_testkit::process;

use crate::sh;

/// Prefix of the demo's namespaces and pin directories.
pub const PREFIX: &str = "sld-";

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// `name (pid N)`: which process it was (the router's zebra and bgpd, a node's bird, ...).
fn describe(pid: i32) -> String {
    let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    format!("{} (pid {pid})", name.trim())
}

/// Removes all of it; returns what was found (empty: nothing was left).
pub fn all(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let netns = sh::output(Command::new("ip").args(["netns", "list"])).unwrap_or_default();
    let names: Vec<&str> = netns
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    // Processes first, by PID (agents, BIRD, the router's FRR daemons, containerd and its
    // shims, resolvers, servers): a namespace with processes in it outlives `ip netns del`.
    // Their descendants too, before they are reparented: the pods' containers live in
    // namespaces of their own under the shims.
    for _ in 0..20 {
        let mut any = false;
        for ns in &names {
            let pids =
                sh::output(Command::new("ip").args(["netns", "pids", ns])).unwrap_or_default();
            let pids: Vec<i32> = pids
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            for pid in process::descendants(&pids) {
                found.push(format!("{} (under {ns})", describe(pid)));
                kill(pid);
            }
            for pid in pids {
                any = true;
                found.push(format!("{} (in {ns})", describe(pid)));
                kill(pid);
            }
        }
        if !any {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for ns in &names {
        found.push(format!("netns {ns}"));
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
    if let Ok(rd) = fs::read_dir("/sys/fs/bpf") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(PREFIX) {
                found.push(format!("pins {}", e.path().display()));
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    if dir.exists() {
        found.push(format!("directory {}", dir.display()));
        if let Err(e) = fs::remove_dir_all(dir) {
            eprintln!("demo: could not remove {}: {e}", dir.display());
        }
    }
    found
}
