//! The workspace's binaries (`sixlane`, `sixlane-agent`) for tests that exec them.
//!
//! They live in another package, so cargo's `CARGO_BIN_EXE_*` does not reach here: `cargo xtask
//! test` builds them (`cargo build --bins`) right before the privileged tests, into the same
//! target directory as the test executables.

use std::path::{Path, PathBuf};

/// Path of binary `name` next to the running test's profile directory. Panics with the command
/// to run when it has not been built.
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins -p sixlane-cni -p sixlane-agent` (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// Runs the operator CLI, `sixlane-agent --pin-root <pin_root> --json <args>`, and returns its
/// JSON output. Panics with the CLI's stderr when it fails.
pub fn agent_json(pin_root: &Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(path("sixlane-agent"))
        .arg("--pin-root")
        .arg(pin_root)
        .arg("--json")
        .args(args)
        .output()
        .expect("running sixlane-agent");
    assert!(
        out.status.success(),
        "sixlane-agent --json {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sixlane-agent --json {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
