//! `cargo xtask bench`: side-by-side scenarios.
//!
//! Every scenario has modes in three roles: the **limit** (no translation at all), one or more
//! **peers** (what operators run today) and **ours** (sixlane). Each round runs every mode once,
//! on fresh namespaces, in an order that alternates between rounds so drift (thermal, the other
//! tenant of the VM) does not favour one mode. The table shows medians and the ratios
//! sixlane/limit and sixlane/peer, with a bootstrap 95% interval for sixlane/limit; raw trials go
//! to `target/bench/*.jsonl`. A trial during which the hypervisor stole more than 2% of the CPU
//! time is repeated (up to 3 times; the stolen attempts stay in the log, marked `discarded`);
//! the table counts the trials kept stolen after that, per mode.
//! Nothing here asserts a timing: claims are read off the table. Ctrl-C (or SIGTERM) stops the
//! run and removes everything it made (`interrupt`).

mod baseline;
mod bgp;
mod cni;
mod interrupt;
mod kubeproxy;
mod measure;
mod nat64;
mod ndp;
mod progstats;
mod services;
mod sources;
mod stamp;
pub mod stats;
pub mod topo;

use std::{
    collections::BTreeMap,
    fs::{self, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};

use crate::{setup, sh};

/// A trial during which the hypervisor stole more than this share of the CPU time is repeated
/// (a noisy neighbour on the hypervisor, not the datapath).
pub const MAX_STEAL: f64 = 0.02;
/// Repeats of a stolen trial before its last attempt is kept anyway (and logged as stolen).
pub const STEAL_RETRIES: usize = 3;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Scenarios to run (default: all). `--list` shows them.
    #[arg(long = "scenario", short)]
    pub scenarios: Vec<String>,
    /// Rounds (trials per mode).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Smoke run: 1 round, 1 s per measurement (numbers are indicative only).
    #[arg(long)]
    pub quick: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Skip `setup`.
    #[arg(long)]
    pub no_setup: bool,
    /// Run only these modes of each scenario (default: all), e.g. to profile one datapath
    /// with `perf`; ratios need the limit mode in the set.
    #[arg(long = "mode")]
    pub modes: Vec<String>,
    /// Also report the run time per packet of sixlane's programs (`kernel.bpf_stats_enabled`
    /// for the run): where the datapath's time goes. Adds clock reads to every BPF run, so
    /// compare such runs only with each other.
    #[arg(long)]
    pub bpf_stats: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Limit,
    Peer,
    Ours,
}

#[derive(Clone, Debug)]
pub struct Mode {
    pub name: &'static str,
    pub role: Role,
    pub about: &'static str,
}

#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
}

impl Metric {
    pub const fn new(name: &'static str, unit: &'static str, higher_is_better: bool) -> Self {
        Self {
            name,
            unit,
            higher_is_better,
        }
    }
}

/// A figure promised for `mode`: its `metric` at most `limit` (in the metric's unit), or at
/// least `limit` for a metric where higher is better. Printed under the table with the median
/// and the worst trial; met when the worst trial meets it.
#[derive(Clone, Copy, Debug)]
pub struct Goal {
    pub mode: &'static str,
    pub metric: &'static str,
    pub limit: f64,
}

/// Shared by the trials of one run.
pub struct Ctx {
    pub secs: f64,
    /// The xtask binary (runs `kbench` inside namespaces).
    pub xtask: PathBuf,
    /// The release `sixlane-agent` binary.
    pub agent: PathBuf,
    /// The agent's `svc_plan` example (release): a 10,000-service apply, step by step.
    pub svc_plan: PathBuf,
    /// `--bpf-stats`: scenarios add their programs' run time per packet.
    pub bpf_stats: bool,
}

pub type Values = BTreeMap<&'static str, f64>;

/// The metric `--bpf-stats` adds: `sl_from_pod`'s mean run time (with the NAT64 stage it
/// tail-calls), the pod side of every scenario that has one.
pub const FROM_POD_NS: Metric = Metric::new("from_pod_ns", "ns/packet", false);

/// Adds [`FROM_POD_NS`] to `values` from the trial's pins, when the run asked for it.
pub fn from_pod_ns(ctx: &Ctx, pin_root: &Path, values: &mut Values) -> anyhow::Result<()> {
    if ctx.bpf_stats
        && let Some(ns) = progstats::ns_per_run(pin_root, sixlane_common::layout::PROG_FROM_POD)?
    {
        values.insert(FROM_POD_NS.name, ns);
    }
    Ok(())
}

pub trait Scenario {
    fn name(&self) -> &'static str;
    fn about(&self) -> &'static str;
    fn modes(&self) -> Vec<Mode>;
    fn metrics(&self) -> Vec<Metric>;
    /// One trial of `mode`, on state it creates and tears down itself.
    fn trial(&self, mode: &Mode, ctx: &Ctx) -> anyhow::Result<Values>;
    /// The goals checked under the table (none by default).
    fn goals(&self) -> Vec<Goal> {
        Vec::new()
    }
}

fn scenarios() -> Vec<Box<dyn Scenario>> {
    let mut all: Vec<Box<dyn Scenario>> = vec![
        Box::new(baseline::Baseline),
        Box::new(cni::Cni),
        Box::new(nat64::Nat64),
        Box::new(bgp::Bgp),
        Box::new(ndp::Ndp),
    ];
    all.extend(services::scenarios());
    all
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let all = scenarios();
    if args.list {
        for s in &all {
            println!("{:<12} {}", s.name(), s.about());
            for m in s.modes() {
                println!(
                    "    {:<16} {:<5} {}",
                    m.name,
                    format!("{:?}", m.role).to_lowercase(),
                    m.about
                );
            }
        }
        return Ok(());
    }
    let chosen: Vec<&Box<dyn Scenario>> = if args.scenarios.is_empty() {
        all.iter().collect()
    } else {
        let mut v = Vec::new();
        for want in &args.scenarios {
            match all.iter().find(|s| s.name() == want) {
                Some(s) => v.push(s),
                None => bail!("no scenario {want:?} (see --list)"),
            }
        }
        v
    };
    if !args.no_setup {
        setup::run(&setup::Args {
            bench: true,
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
        "--bins",
        "--example",
        "svc_plan",
    ]))?;
    let root = crate::workspace_root();
    let ctx = Ctx {
        secs: if args.quick { 1.0 } else { args.secs },
        xtask: std::env::current_exe().context("locating the xtask binary")?,
        agent: root.join("target/release/sixlane-agent"),
        svc_plan: root.join("target/release/examples/svc_plan"),
        bpf_stats: args.bpf_stats,
    };
    let _stats = args.bpf_stats.then(progstats::Enabled::on).transpose()?;
    let interrupt = interrupt::Interrupt::install()?;
    let rounds = if args.quick { 1 } else { args.rounds.max(1) };
    let out_dir = root.join("target/bench");
    fs::create_dir_all(&out_dir)?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut tables = Vec::new();
    let mut failed = Vec::new();
    for s in chosen {
        let path = out_dir.join(format!("{}-{stamp}.jsonl", s.name()));
        let modes: Vec<Mode> = s
            .modes()
            .into_iter()
            .filter(|m| args.modes.is_empty() || args.modes.iter().any(|n| n == m.name))
            .collect();
        if modes.is_empty() {
            bail!(
                "scenario {} has none of the modes {:?}",
                s.name(),
                args.modes
            );
        }
        let run = run_scenario(s.as_ref(), &modes, &ctx, rounds, &path, &interrupt);
        // Interrupted: the trial's guards are gone by now; remove what is left, and exit.
        interrupt.exit_if_signalled();
        let run = run?;
        failed.extend(run.failures);
        let table = stats::table(
            s.name(),
            s.about(),
            &modes,
            &s.metrics(),
            &run.results,
            &run.stolen,
            rounds,
        );
        let goals = stats::goals(&s.goals(), &s.metrics(), &run.results);
        // Under the table, so a figure copied from it carries where it was measured.
        let table = format!("{table}{goals}{}\n", stamp::line());
        println!("{table}");
        eprintln!("raw trials: {}", path.display());
        tables.push(table);
    }
    let summary = out_dir.join(format!("summary-{stamp}.txt"));
    fs::write(&summary, tables.join("\n"))?;
    eprintln!("tables: {}", summary.display());
    // The tables show what did run; a failed trial is still a failure of the run.
    if !failed.is_empty() {
        bail!("{} trial(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// mode name → one `Values` per successful trial.
pub type Results = BTreeMap<&'static str, Vec<Values>>;

/// mode name → how many of its kept trials had more than [`MAX_STEAL`] of the CPU stolen (the
/// repeats ran out): their numbers are the VM's as much as the datapath's.
pub type Stolen = BTreeMap<&'static str, usize>;

struct Run {
    results: Results,
    stolen: Stolen,
    /// "scenario mode round N" of each failed trial.
    failures: Vec<String>,
}

fn run_scenario(
    s: &dyn Scenario,
    modes: &[Mode],
    ctx: &Ctx,
    rounds: usize,
    jsonl: &std::path::Path,
    interrupt: &interrupt::Interrupt,
) -> anyhow::Result<Run> {
    let mut log = OpenOptions::new().create(true).append(true).open(jsonl)?;
    let mut results: Results = BTreeMap::new();
    let mut stolen: Stolen = BTreeMap::new();
    let mut failures = Vec::new();
    for round in 0..rounds {
        // Rotate by the round and reverse every other round: each mode runs early and late.
        let mut order: Vec<&Mode> = modes.iter().collect();
        order.rotate_left(round % modes.len());
        if round % 2 == 1 {
            order.reverse();
        }
        for mode in order {
            eprintln!(
                "bench {} round {}/{rounds}: {}",
                s.name(),
                round + 1,
                mode.name
            );
            let mut attempt = 0;
            loop {
                interrupt.check()?;
                let steal0 = stats::cpu_steal();
                match s.trial(mode, ctx) {
                    Ok(values) => {
                        let (steal, share) = match (steal0, stats::cpu_steal()) {
                            (Some(a), Some(b)) => {
                                let (ticks, share) = b.since(a);
                                (Some(ticks), share)
                            }
                            _ => (None, 0.0),
                        };
                        let repeat = share > MAX_STEAL && attempt < STEAL_RETRIES;
                        let line = serde_json::json!({
                            "bench": s.name(),
                            "mode": mode.name,
                            "role": mode.role,
                            "round": round,
                            "values": values,
                            "steal_ticks": steal,
                            "steal_share": share,
                            "discarded": repeat,
                        });
                        writeln!(log, "{line}")?;
                        if repeat {
                            attempt += 1;
                            eprintln!(
                                "bench {}: {:.1}% of the CPU time was stolen during {}: repeated",
                                s.name(),
                                share * 100.0,
                                mode.name
                            );
                            continue;
                        }
                        if share > MAX_STEAL {
                            *stolen.entry(mode.name).or_default() += 1;
                        }
                        results.entry(mode.name).or_default().push(values);
                    }
                    Err(e) => {
                        // Failed because it was stopped: not a result.
                        interrupt.check()?;
                        failures.push(format!("{} {} round {}", s.name(), mode.name, round + 1));
                        eprintln!(
                            "bench {}: trial {} of {} failed: {e:#}",
                            s.name(),
                            round + 1,
                            mode.name
                        );
                        writeln!(
                            log,
                            "{}",
                            serde_json::json!({"bench": s.name(), "mode": mode.name, "round": round, "error": format!("{e:#}")})
                        )?;
                    }
                }
                break;
            }
        }
    }
    if results.is_empty() {
        bail!("every trial of {} failed", s.name());
    }
    Ok(Run {
        results,
        stolen,
        failures,
    })
}
