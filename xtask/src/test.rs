//! `cargo xtask test`: the one test command. Runs every step even after a failure (so one run
//! shows everything that is wrong), prints a summary, and exits non-zero if any step failed.

use std::process::Command;

use anyhow::bail;

use crate::{setup, sh, sweep};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Skip `setup` (when you know the machine is ready).
    #[arg(long)]
    pub no_setup: bool,
    /// Only the unprivileged steps (fmt, clippy, unit tests).
    #[arg(long)]
    pub unit_only: bool,
    /// Extra arguments for the privileged test run, e.g. a test name filter.
    #[arg(last = true)]
    pub filter: Vec<String>,
}

struct Step {
    name: &'static str,
    ok: bool,
    secs: f64,
    note: String,
}

/// Runs a `cargo` invocation for the eBPF crate on nightly. `RUSTC`/wrappers set by the outer
/// (stable) cargo would otherwise leak into it.
fn nightly_cargo() -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo"])
        .current_dir(crate::workspace_root())
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN");
    c
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    // Before anything runs: leftovers of an earlier (killed) run are not this run's leaks.
    let before = sweep::Before::take();
    let mut steps: Vec<Step> = Vec::new();
    if !args.no_setup && !step(&mut steps, "setup", setup_machine) {
        return summary(&steps);
    }
    step(&mut steps, "fmt", || cargo(&["fmt", "--all", "--check"]));
    step(&mut steps, "clippy (host crates)", || {
        cargo(&[
            "clippy",
            "--workspace",
            "--exclude",
            "sixlane-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
    });
    step(&mut steps, "clippy (eBPF crate)", clippy_ebpf);
    step(&mut steps, "unit tests", || {
        cargo(&[
            "test",
            "--workspace",
            "--exclude",
            "sixlane-ebpf",
            "--exclude",
            "sixlane-tests",
        ])
    });
    step(&mut steps, "kind e2e (dry run)", kind_dry_run);
    if !args.unit_only {
        // The DaemonSet test runs this image (and rebuilds it for its rolling update).
        step(&mut steps, "image", || {
            let out = crate::image::run(&crate::image::Args::default())?;
            Ok(out.display().to_string())
        });
        step(&mut steps, "privileged integration tests", || {
            privileged(&args.filter)
        });
        step(&mut steps, "demo (end to end)", demo);
        step(&mut steps, "leak check", || leak_check(&before));
    }
    summary(&steps)
}

/// Runs one step, reports a failure at once and records the outcome; whether it passed.
fn step(
    steps: &mut Vec<Step>,
    name: &'static str,
    f: impl FnOnce() -> anyhow::Result<String>,
) -> bool {
    eprintln!("\n==> {name}");
    let (res, secs) = sh::timed(f);
    let (ok, note) = match res {
        Ok(note) => (true, note),
        Err(e) => {
            eprintln!("xtask: {name} failed: {e:#}");
            (false, format!("{e:#}"))
        }
    };
    steps.push(Step {
        name,
        ok,
        secs,
        note,
    });
    ok
}

/// A cargo command that must succeed; no note.
fn cargo(args: &[&str]) -> anyhow::Result<String> {
    sh::run(sh::cargo().args(args))?;
    Ok(String::new())
}

/// `cargo xtask setup`: what it installed, if anything.
fn setup_machine() -> anyhow::Result<String> {
    let r = setup::run(&setup::Args {
        bench: false,
        check: false,
    })?;
    Ok(if r.installed.is_empty() {
        String::new()
    } else {
        format!("installed {}", r.installed.join(", "))
    })
}

/// As aya-template does: the eBPF crate is checked for the host with panic=abort (its
/// binaries are #![no_std]); nightly because of -Z.
fn clippy_ebpf() -> anyhow::Result<String> {
    sh::run(nightly_cargo().args([
        "clippy",
        "--package",
        "sixlane-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
        "-C",
        "panic=abort",
        "-Zpanic_abort_tests",
    ]))?;
    Ok(String::new())
}

/// kind cannot run here: CI checks the e2e script (shellcheck), the manifests (Kubernetes
/// schemas, strict) and the shipped agent configuration, and prints the real run's plan.
fn kind_dry_run() -> anyhow::Result<String> {
    sh::run(sh::cargo().args(["build", "--bins", "--package", "sixlane-agent"]))?;
    let root = crate::workspace_root();
    sh::run(
        Command::new("bash")
            .arg(root.join("tests/kind/e2e.sh"))
            .arg("--dry-run")
            .current_dir(&root),
    )?;
    Ok("manifests validated; the cluster run itself is not executed here".into())
}

/// The privileged tests, `filter` passed on to the test harness.
fn privileged(filter: &[String]) -> anyhow::Result<String> {
    if !nix::unistd::geteuid().is_root() {
        bail!("needs root (network namespaces, BPF)");
    }
    // The tests exec the real binaries (see tests/src/bins.rs): build them first.
    sh::run(sh::cargo().args([
        "build",
        "--bins",
        "--package",
        "sixlane-cni",
        "--package",
        "sixlane-agent",
    ]))?;
    let mut c = sh::cargo();
    c.args(["test", "--package", "sixlane-tests", "--"]);
    c.args(filter);
    sh::run(&mut c)?;
    Ok(String::new())
}

/// The main job, end to end (debug binaries: the tests just built them).
fn demo() -> anyhow::Result<String> {
    crate::demo::run(&crate::demo::Args {
        keep: false,
        down: false,
        no_setup: true,
        debug: true,
    })?;
    let left = crate::demo::teardown::all(&crate::workspace_root().join("target/demo"));
    if !left.is_empty() {
        bail!("the demo left behind: {}", left.join(", "));
    }
    Ok(
        "two-node cluster: BGP with an FRR router, ClusterIP, NodePort, LoadBalancer from outside, \
         DNS64 + NAT64, CLI, metrics"
            .into(),
    )
}

/// Whatever the run left behind (namespaces, links, pins, cgroups, processes) is a failure.
fn leak_check(before: &sweep::Before) -> anyhow::Result<String> {
    let (leaked, earlier) = sweep::sweep(before);
    if !earlier.is_empty() {
        eprintln!(
            "xtask: removed leftovers of an earlier run (not counted): {}",
            earlier.join(", ")
        );
    }
    if !leaked.is_empty() {
        bail!("tests left behind (now removed): {}", leaked.join(", "));
    }
    Ok("no namespace, link, pin, cgroup or process left".into())
}

fn summary(steps: &[Step]) -> anyhow::Result<()> {
    eprintln!("\n==> summary");
    for s in steps {
        let mark = if s.ok { "ok  " } else { "FAIL" };
        let note = s.note.lines().next().unwrap_or("");
        eprintln!("  {mark} {:<30} {:>7.1}s  {note}", s.name, s.secs);
    }
    let failed: Vec<&str> = steps.iter().filter(|s| !s.ok).map(|s| s.name).collect();
    if failed.is_empty() {
        eprintln!("all {} steps passed", steps.len());
        Ok(())
    } else {
        bail!("{} step(s) failed: {}", failed.len(), failed.join(", "))
    }
}
