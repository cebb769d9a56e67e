//! `sixlane-agent nat64`: the translator's state from the pinned maps (bindings, sessions,
//! counters; table or `--json`), and the operations a node without the daemon needs (program
//! the maps from a configuration file, collect garbage, attach the programs).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use sixlane_attach::tcx;
use sixlane_common::{
    layout::{POD_PROGRAMS, UPLINK_PROGRAMS},
    nat64::addr::Prefix,
};

use super::{Nat64Config, gc, held, state, statics};
use crate::{PinLayout, metrics};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Cmd {
    /// Counters, bindings and sessions (the default).
    Show,
    /// Bindings: pod transport address ↔ pool address and port, static and dynamic.
    Bindings,
    /// Sessions: pod ↔ IPv4 peer through a binding, with TCP state and idle time.
    Sessions,
    /// NAT64 counters (per reason, summed over CPUs).
    Counters,
    /// IPv4 SYNs held for a simultaneous open (`unsolicitedTcp: hold`), answered after 6 s.
    Held,
    /// Program the NAT64 maps from a YAML file (the `nat64:` section, alone or in a whole agent
    /// configuration). The daemon does this from its own configuration.
    Apply {
        #[arg(long)]
        config: PathBuf,
    },
    /// Expire idle sessions and unused bindings (once, or every `--every` seconds).
    Gc {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        every: Option<u64>,
    },
    /// Attach the pinned programs without the CNI plugin or daemon: the pod programs to host-side
    /// pod interfaces, the uplink programs to the IPv4 uplink (benchmarks, standalone nodes).
    Attach {
        #[arg(long)]
        pod: Vec<String>,
        #[arg(long)]
        uplink: Option<String>,
    },
}

/// Configuration file given to `show` for timeouts, else none (expiry column then shows 0).
fn load(path: &Path) -> anyhow::Result<Nat64Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = Nat64Config::from_yaml(&text)?;
    cfg.validate()?;
    Ok(cfg)
}

#[derive(serde::Serialize)]
struct Everything {
    counters: Vec<metrics::CounterRow>,
    bindings: Vec<state::BindingRow>,
    sessions: Vec<state::SessionRow>,
    held: Vec<held::HeldRow>,
}

fn counters(layout: &PinLayout) -> anyhow::Result<Vec<metrics::CounterRow>> {
    let rows = metrics::read(layout).context("reading counters (is the datapath loaded?)")?;
    Ok(rows
        .into_iter()
        .filter(|r| r.reason.starts_with("nat64_"))
        .collect())
}

fn print_counters(rows: &[metrics::CounterRow]) {
    println!(
        "{:<24} {:<9} {:>12} {:>14}",
        "REASON", "VERDICT", "PACKETS", "BYTES"
    );
    for r in rows.iter().filter(|r| r.packets > 0) {
        println!(
            "{:<24} {:<9} {:>12} {:>14}",
            r.reason, r.verdict, r.packets, r.bytes
        );
    }
}

fn print_bindings(rows: &[state::BindingRow]) {
    println!(
        "{:<8} {:<5} {:<40} {:>6}   {:<15} {:>6} {:>8}",
        "KIND", "PROTO", "POD", "PORT", "POOL", "PORT", "AGE"
    );
    for r in rows {
        let age = if r.kind == "static" {
            "-".to_owned()
        } else {
            format!("{}s", r.age_secs)
        };
        println!(
            "{:<8} {:<5} {:<40} {:>6}   {:<15} {:>6} {:>8}",
            r.kind, r.proto, r.pod, r.pod_port, r.pool, r.pool_port, age
        );
    }
}

fn print_sessions(rows: &[state::SessionRow]) {
    println!(
        "{:<5} {:<30} {:>6}   {:<21} {:<15} {:>6} {:<14} {:>7}",
        "PROTO", "POD", "PORT", "POOL", "PEER", "PORT", "STATE", "IDLE"
    );
    for r in rows {
        println!(
            "{:<5} {:<30} {:>6}   {:<21} {:<15} {:>6} {:<14} {:>6}s",
            r.proto,
            r.pod,
            r.pod_port,
            format!("{}:{}", r.pool, r.pool_port),
            r.peer,
            r.peer_port,
            r.state,
            r.idle_secs
        );
    }
}

fn print_held(rows: &[held::HeldRow]) {
    println!("held SYNs: {}", rows.len());
    if rows.is_empty() {
        return;
    }
    println!("{:<21} {:<21} {:>8}", "POOL", "PEER", "AGE");
    for r in rows {
        println!(
            "{:<21} {:<21} {:>7}ms",
            format!("{}:{}", r.pool, r.pool_port),
            format!("{}:{}", r.peer, r.peer_port),
            r.age_ms
        );
    }
}

pub fn run(layout: &PinLayout, json: bool, args: Args) -> anyhow::Result<()> {
    match args.cmd.unwrap_or(Cmd::Show) {
        Cmd::Apply { config } => apply(layout, json, &config),
        Cmd::Gc { config, every } => collect(layout, json, &config, every),
        Cmd::Attach { pod, uplink } => attach(layout, &pod, uplink.as_deref()),
        cmd @ (Cmd::Show | Cmd::Bindings | Cmd::Sessions | Cmd::Counters | Cmd::Held) => {
            show(layout, json, &cmd)
        }
    }
}

/// `show`, `bindings`, `sessions`, `counters`: state read from the pinned maps, as tables or
/// JSON.
fn show(layout: &PinLayout, json: bool, cmd: &Cmd) -> anyhow::Result<()> {
    let now = state::monotonic_ns();
    let dp = state::read_config(layout).context("reading the NAT64 configuration map")?;
    let prefix = Prefix::new(dp.prefix, dp.prefix_len).unwrap_or(Prefix {
        addr: dp.prefix,
        len: 96,
    });
    let bindings = || -> anyhow::Result<_> {
        Ok(state::binding_rows(
            &state::bindings(layout)?,
            &statics::read(layout)?,
            now,
        ))
    };
    let sessions = || -> anyhow::Result<_> {
        Ok(state::session_rows(
            None,
            &prefix,
            &state::sessions(layout)?,
            now,
        ))
    };
    let held = || -> anyhow::Result<_> { Ok(held::rows(&held::read(layout)?, now)) };
    match cmd {
        Cmd::Held => print(json, &held()?, |h| print_held(h)),
        Cmd::Bindings => print(json, &bindings()?, |b| print_bindings(b)),
        Cmd::Sessions => print(json, &sessions()?, |s| print_sessions(s)),
        Cmd::Counters => print(json, &counters(layout)?, |c| print_counters(c)),
        _ => {
            let all = Everything {
                counters: counters(layout)?,
                bindings: bindings()?,
                sessions: sessions()?,
                held: held()?,
            };
            print(json, &all, |all| {
                println!(
                    "prefix {}/{}",
                    std::net::Ipv6Addr::from(prefix.addr),
                    prefix.len
                );
                print_counters(&all.counters);
                println!();
                print_bindings(&all.bindings);
                println!();
                print_sessions(&all.sessions);
                println!();
                print_held(&all.held);
            })
        }
    }
}

/// Prints `v` as pretty JSON or with `table`.
fn print<T: serde::Serialize>(json: bool, v: &T, table: impl FnOnce(&T)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        table(v);
    }
    Ok(())
}

/// `apply`: programs the NAT64 maps from a configuration file.
fn apply(layout: &PinLayout, json: bool, config: &Path) -> anyhow::Result<()> {
    let cfg = load(config)?;
    let r = state::apply(layout, &cfg)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "nat64 {:?}, prefix {}: {} source CIDR(s) added, {} removed; static bindings: {} \
             added, {} removed ({} sessions), {} kept",
            cfg.mode,
            cfg.prefix,
            r.sources_added,
            r.sources_removed,
            r.static_added,
            r.static_removed,
            r.static_sessions_removed,
            r.static_kept
        );
    }
    Ok(())
}

/// `gc`: one collection, or one every `every` seconds until killed.
fn collect(
    layout: &PinLayout,
    json: bool,
    config: &Path,
    every: Option<u64>,
) -> anyhow::Result<()> {
    let cfg = load(config)?;
    loop {
        let r = gc::collect(layout, &cfg)?;
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "sessions: {} kept, {} expired, {} orphans; bindings: {} kept, {} removed",
                r.sessions, r.sessions_expired, r.orphans, r.bindings, r.bindings_removed
            );
        }
        match every {
            Some(s) => std::thread::sleep(Duration::from_secs(s.max(1))),
            None => return Ok(()),
        }
    }
}

/// `attach`: the pod programs to each of `pod`, the uplink programs to `uplink`.
fn attach(layout: &PinLayout, pod: &[String], uplink: Option<&str>) -> anyhow::Result<()> {
    let pods = pod.iter().map(|iface| (iface.as_str(), &POD_PROGRAMS[..]));
    let up = uplink.map(|iface| (iface, &UPLINK_PROGRAMS[..]));
    for (iface, programs) in pods.chain(up) {
        for &(prog, h) in programs {
            let what = tcx::attach_pinned(layout, prog, iface, h)
                .with_context(|| format!("attaching {prog} to {iface}"))?;
            println!("{iface}: {prog} {what:?}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_config_file_is_reported_once() {
        // `sixlane-agent nat64 apply --config /missing` as `main` prints it (`{:#}`).
        let dir = std::env::temp_dir().join(format!("sixlane-nat64-cli-{}", std::process::id()));
        let config = dir.join("missing.yaml");
        let args = Args {
            cmd: Some(Cmd::Apply {
                config: config.clone(),
            }),
        };
        let e = run(&PinLayout::new(&dir), false, args).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            format!(
                "reading {}: No such file or directory (os error 2)",
                config.display()
            )
        );
    }
}
