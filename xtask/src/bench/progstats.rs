//! Where the datapath's time goes, per program: the kernel's BPF run-time statistics
//! (`kernel.bpf_stats_enabled`), read from a trial's pinned program with bpftool. Opt-in
//! (`--bpf-stats`): while on, every BPF program run also reads the clock twice, which the peers'
//! modes (no BPF) do not pay, so such a run's ratios against them are not comparable with
//! others'.

use std::path::Path;

use anyhow::Context as _;
use sixlane_common::layout::PROGS_DIR;

use crate::sh;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Statistics on for as long as it lives; the previous setting back on drop.
pub struct Enabled {
    before: String,
}

impl Enabled {
    pub fn on() -> anyhow::Result<Self> {
        let before =
            std::fs::read_to_string(SYSCTL).with_context(|| format!("reading {SYSCTL}"))?;
        std::fs::write(SYSCTL, "1").with_context(|| format!("writing {SYSCTL}"))?;
        Ok(Self { before })
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, self.before.trim());
    }
}

/// Mean run time (ns) of program `prog` pinned under `pin_root` since it was loaded (tail calls
/// count in their caller's time); `None` before its first run with statistics on, or when the
/// trial loaded no datapath.
pub fn ns_per_run(pin_root: &Path, prog: &str) -> anyhow::Result<Option<f64>> {
    let pin = pin_root.join(PROGS_DIR).join(prog);
    if !pin.exists() {
        return Ok(None); // a mode without sixlane
    }
    let out = sh::output(
        std::process::Command::new("bpftool")
            .args(["--json", "prog", "show", "pinned"])
            .arg(&pin),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .with_context(|| format!("bpftool's JSON for {}", pin.display()))?;
    // bpftool leaves both out while the program has not run with statistics on.
    Ok(match (v["run_time_ns"].as_f64(), v["run_cnt"].as_f64()) {
        (Some(ns), Some(runs)) if runs > 0.0 => Some(ns / runs),
        _ => None,
    })
}
