//! The workspace's binaries (`sixlane`, `sixlane-agent`) for tests that exec them.
//!
//! They live in another package, so cargo's `CARGO_BIN_EXE_*` does not reach here: `cargo xtask
//! test` builds them (`cargo build --bins`) right before the privileged tests, into the same
//! target directory as the test executables.

use std::path::PathBuf;

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
