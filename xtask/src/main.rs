//! `cargo xtask`: sixlane's developer commands.
//!
//! - `setup`: install what a fresh Debian 12 machine lacks and check the kernel (idempotent).
//! - `test`: the one test command (fmt, clippy, unit tests, privileged integration tests).
//! - `demo`: sixlane's main job, locally.
//! - `bench`: side-by-side benchmarks against peers, printed as ratios.
//! - `image`: the container image the DaemonSet runs (buildah, from Debian packages).

mod bench;
mod demo;
mod image;
mod kbench;
mod setup;
mod sh;
mod sweep;
mod test;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "sixlane developer commands")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install missing apt packages, the nightly rust-src, bpf-linker; check and prepare the
    /// kernel (bpffs, BTF, TCX). Fast when everything is in place.
    Setup(setup::Args),
    /// fmt, clippy (host and eBPF), unit tests, privileged integration tests, leak check.
    Test(test::Args),
    /// A simulated IPv6-only cluster in network namespaces, with the real binaries.
    Demo(demo::Args),
    /// Side-by-side benchmark scenarios: sixlane vs peers vs the limit, as ratios.
    Bench(bench::Args),
    /// The DaemonSet's container image from manifests/Containerfile (buildah, no registry),
    /// written as an image archive (target/image/sixlane.tar).
    Image(image::Args),
    /// The request/response load generator the benchmarks run inside namespaces.
    #[command(hide = true)]
    Kbench(kbench::Args),
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Setup(a) => setup::run(&a).map(|_| ()),
        Cmd::Test(a) => test::run(&a),
        Cmd::Demo(a) => demo::run(&a),
        Cmd::Bench(a) => bench::run(&a),
        Cmd::Image(a) => image::run(&a).map(|_| ()),
        Cmd::Kbench(a) => kbench::run(&a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
