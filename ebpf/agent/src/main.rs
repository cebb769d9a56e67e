//! `sixlane-agent`: loads, pins and attaches sixlane's datapath and reads its state.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sixlane_agent::{
    PinLayout,
    loader::{Datapath, LoadOptions},
    metrics, services,
};
use sixlane_attach::{tc, tcx};
use sixlane_common::layout::{self, Hook};

#[derive(Debug, Parser)]
#[command(name = "sixlane-agent", version, about)]
struct Cli {
    /// bpffs directory holding sixlane's pinned maps, programs and links.
    #[arg(long, global = true, default_value = layout::DEFAULT_PIN_ROOT, env = "SIXLANE_PIN_ROOT")]
    pin_root: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Load the datapath: reuse compatible pinned maps, load and pin the programs, and switch
    /// every pinned link, and sixlane's tc filters in this network namespace (pods attached in tc
    /// mode), to the new programs atomically. Run it in the namespace holding the pod veths.
    Load {
        /// Replace pinned maps whose layout differs from this build (their state is lost).
        #[arg(long)]
        replace_incompatible_maps: bool,
    },
    /// Attach the packet counters to an interface (both directions) with pinned TCX links.
    Attach {
        #[arg(long)]
        iface: String,
    },
    /// Remove the counters' links from an interface.
    Detach {
        #[arg(long)]
        iface: String,
    },
    /// Datapath counters by direction and reason, summed over CPUs.
    Metrics,
    /// Remove every pin (maps, programs, links) and this datapath's tc filters in this network
    /// namespace: the datapath and its state go away.
    Unload,
    /// Run the node agent (DaemonSet): datapath, node setup, services, metrics.
    Run(Box<sixlane_agent::cli::RunArgs>),
    /// The agent's view of this node: address and why, pod CIDR, datapath, links, last reconcile.
    Status(sixlane_agent::cli::StatusArgs),
    /// Pod address reservations in the IPAM store.
    Ipam(sixlane_agent::cli::IpamArgs),
    /// Pod source validation: each pod veth's mode (validated, opted out, not validated) and
    /// addresses, from the pinned table and the IPAM store. Run in the node's namespace.
    Sources(sixlane_agent::pod_sources::cli::Args),
    /// NAT64: bindings, sessions and counters from the pinned maps; configuration and GC.
    Nat64(sixlane_agent::nat64::cli::Args),
    /// LoadBalancer IP assignment: pools and their use, assignments, pending Services and why.
    Lb(sixlane_agent::lb::cli::Args),
    /// BGP: BIRD, each peer's session and why it is down, prefixes announced and received.
    Bgp(sixlane_agent::routing::cli::Args),
    /// The DaemonSet's `bird` container: wait for the agent's BIRD configuration, then run
    /// BIRD in its place (with graceful restart recovery after an earlier BIRD on this node).
    BirdRun(sixlane_agent::routing::bird::container::Args),
    /// Neighbor Discovery: the addresses answered on the uplink, since when, the last
    /// unsolicited advertisement.
    Ndp(sixlane_agent::ndp::cli::Args),
    #[command(flatten)]
    Services(services::cli::Cmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` sets logging up from its configuration.
    if let Cmd::Run(args) = &cli.cmd {
        return match sixlane_agent::cli::run(
            args,
            &cli.pin_root,
            // The service maps are programmed from every desired state.
            Box::new(|dp, _, services| {
                Ok(Box::new(sixlane_agent::sink::ProgrammerSink::open(
                    dp.layout(),
                    services.pod_fast_path,
                )?))
            }),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sixlane-agent: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // No colour codes in a container's log (`bird-run`) or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIXLANE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sixlane-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const COUNTERS: [(&str, Hook); 2] = [
    (layout::PROG_COUNT_INGRESS, Hook::Ingress),
    (layout::PROG_COUNT_EGRESS, Hook::Egress),
];

fn run(cli: Cli) -> anyhow::Result<()> {
    let pins = PinLayout::new(&cli.pin_root);
    match cli.cmd {
        Cmd::Load {
            replace_incompatible_maps,
        } => {
            let opts = LoadOptions {
                replace_incompatible_maps,
                ..Default::default()
            };
            let mut dp = Datapath::load(&pins, &opts)?;
            let report = dp.repoint_attachments()?;
            if cli.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "loaded into {}: {} link(s) switched to the new programs, {} already current, {} stale removed; \
                     {} tc filter(s) in this network namespace switched, {} already current",
                    pins.root().display(),
                    report.tcx.replaced,
                    report.tcx.current,
                    report.tcx.gone,
                    report.tc.replaced,
                    report.tc.current
                );
            }
        }
        Cmd::Attach { iface } => {
            for (prog, hook) in COUNTERS {
                let what = tcx::attach_pinned(&pins, prog, &iface, hook)
                    .with_context(|| format!("attaching {prog} to {iface}"))?;
                println!("{iface}: {prog} {what:?}");
            }
        }
        Cmd::Detach { iface } => {
            for (prog, _) in COUNTERS {
                let existed = tcx::detach(&pins, &iface, prog)?;
                println!(
                    "{iface}: {prog} {}",
                    if existed {
                        "detached"
                    } else {
                        "was not attached"
                    }
                );
            }
        }
        Cmd::Metrics => {
            let rows =
                metrics::read(&pins).context("reading counters (is the datapath loaded?)")?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<9} {:<12} {:<9} {:>12} {:>14}",
                    "DIRECTION", "REASON", "VERDICT", "PACKETS", "BYTES"
                );
                for r in rows {
                    println!(
                        "{:<9} {:<12} {:<9} {:>12} {:>14}",
                        r.direction, r.reason, r.verdict, r.packets, r.bytes
                    );
                }
            }
        }
        Cmd::Services(c) => services::cli::run(c, &pins, cli.json)?,
        Cmd::Unload => {
            // Filters hold their programs; they have no pin to remove, so detach them here.
            let mut filters = 0;
            for f in tc::list_owned(&pins)? {
                if tc::detach(&f.ifname, f.hook)? {
                    filters += 1;
                }
            }
            if filters > 0 {
                println!("removed {filters} tc filter(s) from this network namespace");
            }
            pins.remove_all()?;
            println!("removed {}", pins.root().display());
        }
        Cmd::Run(_) => unreachable!("handled in main"),
        Cmd::Status(args) => {
            sixlane_agent::cli::print_status(
                &sixlane_agent::cli::status_view(&args, &cli.pin_root),
                cli.json,
            )?;
        }
        Cmd::Ipam(args) => sixlane_agent::cli::print_ipam(&args, cli.json)?,
        Cmd::Sources(args) => sixlane_agent::pod_sources::cli::run(&pins, &args, cli.json)?,
        Cmd::Nat64(args) => sixlane_agent::nat64::cli::run(&pins, cli.json, args)?,
        Cmd::Lb(args) => {
            let status =
                sixlane_agent::ops::status::read_file(&args.state_dir).with_context(|| {
                    format!(
                        "reading the agent's status in {} (has the agent run here?)",
                        args.state_dir.display()
                    )
                })?;
            sixlane_agent::lb::cli::print(status.load_balancer.as_ref(), cli.json)?;
        }
        Cmd::Bgp(args) => sixlane_agent::routing::cli::run(&args, cli.json)?,
        Cmd::BirdRun(args) => sixlane_agent::routing::bird::container::run(&args)?,
        Cmd::Ndp(args) => sixlane_agent::ndp::cli::run(&pins, &args, cli.json)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
