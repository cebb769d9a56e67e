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
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> anyhow::Result<String>| {
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
    };

    if !args.no_setup {
        let ready = step("setup", &mut || {
            let r = setup::run(&setup::Args {
                bench: false,
                check: false,
            })?;
            Ok(if r.installed.is_empty() {
                String::new()
            } else {
                format!("installed {}", r.installed.join(", "))
            })
        });
        if !ready {
            return summary(&steps);
        }
    }

    step("fmt", &mut || {
        sh::run(sh::cargo().args(["fmt", "--all", "--check"]))?;
        Ok(String::new())
    });
    step("clippy (host crates)", &mut || {
        sh::run(sh::cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            "sixlane-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        Ok(String::new())
    });
    // As aya-template does: the eBPF crate is checked for the host with panic=abort (its
    // binaries are #![no_std]); nightly because of -Z.
    step("clippy (eBPF crate)", &mut || {
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
    });
    step("unit tests", &mut || {
        sh::run(sh::cargo().args([
            "test",
            "--workspace",
            "--exclude",
            "sixlane-ebpf",
            "--exclude",
            "sixlane-tests",
        ]))?;
        Ok(String::new())
    });
    // kind cannot run here: CI checks the e2e script (shellcheck), the manifests (Kubernetes
    // schemas, strict) and the shipped agent configuration, and prints the real run's plan.
    step("kind e2e (dry run)", &mut || {
        sh::run(sh::cargo().args(["build", "--bins", "--package", "sixlane-agent"]))?;
        let root = crate::workspace_root();
        sh::run(
            Command::new("bash")
                .arg(root.join("tests/kind/e2e.sh"))
                .arg("--dry-run")
                .current_dir(&root),
        )?;
        Ok("manifests validated; the cluster run itself is not executed here".into())
    });
    if !args.unit_only {
        // The DaemonSet test runs this image (and rebuilds it for its rolling update).
        step("image", &mut || {
            let out = crate::image::run(&crate::image::Args::default())?;
            Ok(out.display().to_string())
        });
        step("privileged integration tests", &mut || {
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
            c.args(&args.filter);
            sh::run(&mut c)?;
            Ok(String::new())
        });
        // The main job, end to end (debug binaries: the tests just built them).
        step("demo (end to end)", &mut || {
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
            Ok("two-node cluster: ClusterIP, NodePort, DNS64 + NAT64, CLI, metrics".into())
        });
        step("leak check", &mut || {
            let (leaked, earlier) = sweep::sweep(&before);
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
        });
    }
    summary(&steps)
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
