//! After the tests: find (and remove) anything a test left behind. Every test resource is named
//! with the harness prefix and the pid of the process that made it, so leftovers are
//! unambiguous, and resources of a test process still running (another `cargo xtask test` in
//! parallel) are left alone. Finding one fails the run: a guard that did not clean up is a bug
//! even if the sweep mops up after it.

use std::{fs, process::Command};

use sixlane_testkit::names::{PREFIX, owner_pid};

use crate::sh;

/// Made by the harness, and its maker is gone.
fn orphan(name: &str) -> bool {
    name.starts_with(PREFIX)
        && owner_pid(name).is_none_or(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Names of leaked namespaces, interfaces and pin directories (after removing them).
pub fn sweep() -> Vec<String> {
    let mut leaked = Vec::new();
    if let Ok(list) = sh::output(Command::new("ip").args(["netns", "list"])) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if orphan(ns) {
                leaked.push(format!("netns {ns}"));
                for pid in sh::output(Command::new("ip").args(["netns", "pids", ns]))
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                    leaked.push(format!("process {pid} in netns {ns}"));
                }
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
    if let Ok(list) = sh::output(Command::new("ip").args(["-o", "link", "show"])) {
        for line in list.lines() {
            // "12: sltva1234-0@sltvb1234-1: <...>"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if orphan(name) {
                leaked.push(format!("link {name}"));
                let _ = Command::new("ip").args(["link", "del", name]).status();
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/sys/fs/bpf") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if orphan(&name) {
                leaked.push(format!("pin {}", e.path().display()));
                let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
            }
        }
    }
    leaked
}
