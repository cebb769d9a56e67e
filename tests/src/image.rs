//! sixlane's container image as users build it: `cargo xtask image` (buildah, from
//! `manifests/Containerfile`), run from the test so the image always holds the current sources
//! (cargo and buildah's layer cache make an up-to-date rebuild quick).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Builds the image as `tag` into the archive `out` (docker-archive, what `ctr images import`
/// reads). Panics with the build's output when it fails.
pub fn build(tag: &str, out: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let res = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["xtask", "image", "--tag", tag, "--out"])
        .arg(out)
        .output()
        .expect("running cargo xtask image");
    assert!(
        res.status.success(),
        "cargo xtask image --tag {tag} failed:\n{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    out.to_owned()
}

/// A release binary the image packages (to compare with what the init container installed).
pub fn packaged(name: &str) -> PathBuf {
    workspace_root().join("target/release").join(name)
}
