//! After the tests: find (and remove) anything a test left behind. Every test resource is named
//! `slt<tag>_<pid>_<n>` by the harness, so leftovers are unambiguous: resources of a test
//! process still running (another `cargo xtask test` in parallel) are left alone, and names
//! that do not follow the harness format are not ours and never touched. Finding one fails the
//! run: a guard that did not clean up is a bug even if the sweep mops up after it. Leftovers
//! that were already there before this run started (an earlier run that was killed) are
//! removed but do not fail this run: it did not make them. [`own`] removes what the running
//! process made, for a command told to stop (the bench on a signal).

use std::{collections::BTreeSet, fs, process::Command};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use sixlane_testkit::{
    containerd,
    names::{PREFIX, made_here, owner_pid},
    process,
};

use crate::sh;

/// Made by the harness, and its maker is gone.
fn orphan(name: &str) -> bool {
    name.starts_with(PREFIX)
        && owner_pid(name)
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// What exists now: netns, link, pin and top-level cgroup names (`kind name`).
fn inventory() -> BTreeSet<(&'static str, String)> {
    let mut all = BTreeSet::new();
    if let Ok(list) = sh::output(Command::new("ip").args(["netns", "list"])) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            all.insert(("netns", ns.to_string()));
        }
    }
    if let Ok(list) = sh::output(Command::new("ip").args(["-o", "link", "show"])) {
        for line in list.lines() {
            // "12: sltva1234-0@sltvb1234-1: <...>"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            all.insert(("link", name.split('@').next().unwrap_or(name).to_string()));
        }
    }
    if let Ok(entries) = fs::read_dir("/sys/fs/bpf") {
        for e in entries.flatten() {
            all.insert(("pin", e.file_name().to_string_lossy().into_owned()));
        }
    }
    // CRI pods' cgroups (the private containerd's cgroup parent).
    if let Ok(entries) = fs::read_dir(containerd::CGROUP_ROOT) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                all.insert(("cgroup", e.file_name().to_string_lossy().into_owned()));
            }
        }
    }
    all
}

/// Orphans present before a run; [`sweep`] does not blame the run for them.
#[derive(Debug, Default)]
pub struct Before(BTreeSet<(&'static str, String)>);

impl Before {
    pub fn take() -> Self {
        Self(
            inventory()
                .into_iter()
                .filter(|(_, name)| orphan(name))
                .collect(),
        )
    }
}

fn remove(kind: &str, name: &str, report: &mut Vec<String>) {
    match kind {
        "netns" => {
            for pid in sh::output(Command::new("ip").args(["netns", "pids", name]))
                .unwrap_or_default()
                .split_whitespace()
            {
                let _ = Command::new("kill").args(["-9", pid]).status();
                report.push(format!("process {pid} in netns {name}"));
            }
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        "link" => {
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
        "cgroup" => {
            containerd::remove_cgroup(&std::path::Path::new(containerd::CGROUP_ROOT).join(name));
        }
        "temp" => {
            let p = std::env::temp_dir().join(name);
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
        _ => {
            let p = std::path::Path::new("/sys/fs/bpf").join(name);
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
    }
}

/// Removes every orphan; returns the ones this run made (not in `before`), then the ones an
/// earlier run left.
pub fn sweep(before: &Before) -> (Vec<String>, Vec<String>) {
    let (mut ours, mut earlier) = (Vec::new(), Vec::new());
    for (kind, name) in inventory() {
        if !orphan(&name) {
            continue;
        }
        let report = if before.0.contains(&(kind, name.clone())) {
            &mut earlier
        } else {
            &mut ours
        };
        report.push(format!("{kind} {name}"));
        remove(kind, &name, report);
    }
    (ours, earlier)
}

/// Harness-named files and directories in the temporary directory (`TempDir`, the benches'
/// configuration files).
fn temp_entries() -> BTreeSet<(&'static str, String)> {
    fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| ("temp", e.file_name().to_string_lossy().into_owned()))
                .filter(|(_, name)| name.starts_with(PREFIX))
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs every process this one started, and theirs; returns their pids.
pub fn end_children() -> Vec<i32> {
    let me = i32::try_from(std::process::id()).expect("pids fit in i32");
    process::descendants(&[me])
        .into_iter()
        .filter(|pid| kill(Pid::from_raw(*pid), Signal::SIGKILL).is_ok())
        .collect()
}

/// Ends this process's children and removes every resource named after it (namespaces with the
/// processes in them, links, pins, cgroups, temporary files): what a guard of an interrupted
/// command could not remove, or not in time. Returns what it found.
pub fn own() -> Vec<String> {
    let mut report: Vec<String> = end_children()
        .into_iter()
        .map(|pid| format!("process {pid}"))
        .collect();
    for (kind, name) in inventory().into_iter().chain(temp_entries()) {
        if made_here(&name) {
            report.push(format!("{kind} {name}"));
            remove(kind, &name, &mut report);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harness_names_of_dead_processes_are_orphans() {
        // Not in the harness format: someone else's, never touched.
        assert!(!orphan("sltscratch1"));
        assert!(!orphan("sltother"));
        assert!(!orphan("eth0"));
        // Ours and alive.
        let me = format!("sltn_{:x}_1", std::process::id());
        assert!(!orphan(&me));
        // Ours, maker gone (pid_max is at most 2^22; 0x3fffff is never a live pid here).
        assert!(orphan("sltp_3fffff_7"));
    }
}
