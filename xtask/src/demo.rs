//! `cargo xtask demo`: sixlane's main job on one machine.

use anyhow::bail;

use crate::{setup, sh};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Leave the simulated cluster running for exploration (tear down with `cargo xtask demo --down`).
    #[arg(long)]
    pub keep: bool,
    /// Skip `setup`.
    #[arg(long)]
    pub no_setup: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if !args.no_setup {
        setup::run(&setup::Args {
            bench: false,
            check: false,
        })?;
    }
    sh::run(sh::cargo().args([
        "build",
        "--release",
        "--package",
        "sixlane-agent",
        "--package",
        "sixlane-cni",
    ]))?;
    eprintln!(
        "\nThe demo will build a two-node IPv6-only cluster in network namespaces (agents in\n\
         static-manifest mode, pods attached by the sixlane CNI plugin), an IPv4-only \"internet\"\n\
         with a DNS64 resolver, then show ClusterIP, NodePort and NAT64 traffic, the agent's\n\
         tables and metrics, and tear everything down."
    );
    let _ = args.keep;
    bail!(
        "the cluster simulation is not implemented yet: only the build and environment checks ran"
    )
}
