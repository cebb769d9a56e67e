//! `cargo xtask image`: sixlane's container image, the one the DaemonSet runs, built from
//! `manifests/Containerfile` with buildah (no daemon, no registry) and written as an image
//! archive that `ctr images import`, `docker load` and `kind load image-archive` all read.
//!
//! No registry is needed at any step: the Containerfile starts `FROM scratch` and adds a Debian
//! bookworm root filesystem that `mmdebstrap` builds from Debian's packages into
//! `target/image/` (reproducibly: `SOURCE_DATE_EPOCH` fixed, cached until its recipe changes),
//! then the release binaries. buildah's own storage lives under `target/image/` too, so nothing
//! of the host's container storage is read or changed. `--timestamp 0` makes the same base and
//! binaries give the same image ID, on empty storage as from buildah's layer cache.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::sh;

/// The image name the manifests use.
pub const TAG: &str = "sixlane/sixlane:dev";
/// Where the base root filesystem goes (the Containerfile's `ADD`).
const BASE: &str = "target/image/debian-bookworm.tar";
/// The base's file times and dpkg logs: fixed, so the same packages give the same tarball.
const SOURCE_DATE_EPOCH: &str = "1700000000";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The image name.
    #[arg(long, default_value = TAG)]
    pub tag: String,
    /// The image archive (docker-archive format) to write. Default: target/image/sixlane.tar.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Package the debug binaries instead of the release ones (faster to build, much larger).
    #[arg(long)]
    pub debug: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            tag: TAG.into(),
            out: None,
            debug: false,
        }
    }
}

/// Builds the binaries, the base (if needed) and the image; returns the archive's path.
pub fn run(args: &Args) -> anyhow::Result<PathBuf> {
    let root = crate::workspace_root();
    let profile = if args.debug { "debug" } else { "release" };
    let mut build = sh::cargo();
    build.args([
        "build",
        "--bins",
        "-p",
        "sixlane-agent",
        "-p",
        "sixlane-cni",
    ]);
    if !args.debug {
        build.arg("--release");
    }
    sh::run(&mut build)?;
    base()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target/image/sixlane.tar"));
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    sh::run(buildah().args([
        "build",
        "--layers",
        "--timestamp",
        "0",
        "--build-arg",
        &format!("PROFILE={profile}"),
        "-f",
        "manifests/Containerfile",
        "-t",
        &args.tag,
        ".",
    ]))?;
    // Replace, never append: docker-archive refuses to add to an existing file.
    let _ = fs::remove_file(&out);
    sh::run(buildah().args([
        "push",
        "--quiet",
        &args.tag,
        &format!("docker-archive:{}:{}", out.display(), args.tag),
    ]))?;
    // Earlier builds of the same tag: unnamed now, not needed as a layer cache.
    sh::run(buildah().args(["rmi", "--prune"]))?;
    let id = sh::output(buildah().args(["images", "--quiet", "--no-trunc", &args.tag]))?;
    eprintln!(
        "image: {} ({}) written to {}",
        args.tag,
        id.trim(),
        out.display()
    );
    Ok(out)
}

/// buildah on storage under `target/image/` (vfs: works on any filesystem, no overlay mount).
fn buildah() -> Command {
    let dir = crate::workspace_root().join("target/image");
    let mut c = Command::new("buildah");
    c.current_dir(crate::workspace_root())
        .arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"]);
    c
}

/// The Debian root filesystem the image starts from, built once per recipe.
fn base() -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let tar = root.join(BASE);
    let recipe_file = tar.with_extension("tar.recipe");
    let recipe = MMDEBSTRAP.join(" ");
    if tar.exists() && fs::read_to_string(&recipe_file).is_ok_and(|r| r == recipe) {
        eprintln!("image: base {} is current", tar.display());
        return Ok(());
    }
    if !sh::succeeds("mmdebstrap", &["--version"]) {
        bail!("mmdebstrap is missing (cargo xtask setup installs it)");
    }
    fs::create_dir_all(tar.parent().expect("target/image"))?;
    let _ = fs::remove_file(&recipe_file);
    sh::run(
        Command::new("mmdebstrap")
            .args(MMDEBSTRAP)
            .arg(&tar)
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH),
    )?;
    fs::write(&recipe_file, recipe).with_context(|| format!("writing {}", recipe_file.display()))
}

/// mmdebstrap's arguments before the tarball: bookworm's `minbase` (what debian:bookworm-slim
/// holds: dash, coreutils, glibc) plus `ip` and `ss` for debugging a node from the agent's
/// container, CA certificates, and BIRD 2 (`bird`, `birdc`: the DaemonSet's `bird` container
/// runs it, the agent checks each configuration with `bird -p`), without documentation, man
/// pages and locales. The recipe is this list: changing it rebuilds the base.
const MMDEBSTRAP: &[&str] = &[
    "--variant=minbase",
    "--include=iproute2,ca-certificates,bird2",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "bookworm",
];
