//! What a table was measured on: when, which commit, which machine. Printed under every table so
//! a figure copied into docs/benchmarks.md carries its provenance.

use std::process::Command;

/// `2026-12-07 14:05 UTC · commit 1a2b3c4 · Linux 6.18.0 · AMD EPYC 7B13, 2 CPUs · 24 GiB`;
/// the commit is marked `+changes` when the tree differs from it.
pub fn line() -> String {
    format!(
        "measured {} · commit {} · Linux {} · {} · {}",
        output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".into()),
        commit(),
        output("uname", &["-r"]).unwrap_or_else(|| "?".into()),
        cpu(),
        memory(),
    )
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(crate::workspace_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn commit() -> String {
    let Some(rev) = output("git", &["rev-parse", "--short=7", "HEAD"]) else {
        return "unknown (not a git checkout)".into();
    };
    // Untracked files do not change what is built; modified tracked ones may.
    let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"]).is_some();
    if dirty { format!("{rev}+changes") } else { rev }
}

fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let n = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{model}, {n} CPUs")
}

fn memory() -> String {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    parse_mem_total(&info).map_or_else(
        || "? GiB".into(),
        |kib| format!("{} GiB", kib.div_ceil(1 << 20)),
    )
}

/// `MemTotal` in KiB from /proc/meminfo's text.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_kib() {
        let text = "MemTotal:       24607340 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(text), Some(24_607_340));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn the_line_names_date_commit_kernel_cpu_and_memory() {
        let l = line();
        for part in ["measured ", " · commit ", " · Linux ", " CPUs · ", " GiB"] {
            assert!(l.contains(part), "{part:?} missing from {l:?}");
        }
    }
}
