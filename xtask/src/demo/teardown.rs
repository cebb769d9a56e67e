//! Removing everything the demo made. Works from names and paths alone (namespaces `sld-*`,
//! pins `/sys/fs/bpf/sld-*`, the demo directory), so it serves a normal end, Ctrl-C, `--down`
//! after `--keep`, and the leftovers of a run that crashed.

use std::{fs, path::Path, process::Command};

use crate::sh;

/// Prefix of the demo's namespaces and pin directories.
pub const PREFIX: &str = "sld-";

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Processes whose root directory is inside `dir`: the demo's containers (their root is a
/// snapshot under containerd's root, which lives in the demo directory).
fn containers(dir: &Path) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let root = fs::read_link(e.path().join("root")).ok()?;
            (root.starts_with(dir) && root != Path::new("/")).then_some(pid)
        })
        .collect()
}

/// Removes all of it; returns what was found (empty: nothing was left).
pub fn all(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for pid in containers(dir) {
        found.push(format!("container process {pid}"));
        kill(pid);
    }
    let netns = sh::output(Command::new("ip").args(["netns", "list"])).unwrap_or_default();
    let names: Vec<&str> = netns
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    // Processes first (agents, containerd and its shims, resolvers, servers): a namespace with
    // processes in it outlives `ip netns del`.
    for _ in 0..20 {
        let mut any = false;
        for ns in &names {
            let pids =
                sh::output(Command::new("ip").args(["netns", "pids", ns])).unwrap_or_default();
            for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                any = true;
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
