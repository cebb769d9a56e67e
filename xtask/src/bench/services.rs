//! Service benchmarks (results in docs/benchmarks.md):
//!
//! - `svc-1`, `svc-1k`, `svc-10k`: a ClusterIP in front of the server with N services
//!   installed. TCP connect rate (CRR), request/response rate and latency (RR), iperf3
//!   throughput, through the service, for sixlane (pod programs on both node veths, maps
//!   programmed by `sixlane-agent services apply`), kube-proxy-shaped nftables and iptables
//!   (nf_tables and legacy backends) rulesets, and the direct path to the server (the limit).
//!   `sixlane-direct` is the direct path with sixlane's programs attached: the cost of being on
//!   the path for traffic that is not to a service.
//! - `svc-prog`: time to program 10,000 services into empty state, to add one more, and to
//!   change one service's endpoints, for sixlane (in-process API and end-to-end CLI) and the
//!   peers (`nft -f`, `ip6tables-restore`); the limit is sixlane's own map syscalls alone.
//! - `svc-plan`: where the time of a 10,000-service apply goes without map syscalls (the whole
//!   apply, the same state again, each planning step alone), from the agent's `svc_plan`
//!   example run in-process. Only sixlane's numbers: it shows what to optimise, no ratio.
//!
//! Fresh namespaces (and pin directory) per trial; peers' rulesets are generated like
//! kube-proxy's (see `kubeproxy.rs`); the measured service is the last one (worst case for
//! iptables' linear walk).

use std::{
    fs,
    net::{Ipv6Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde_json::json;
use sixlane_testkit::{NetNs, PinDir, names};

use super::{
    Ctx, Metric, Mode, Role, Scenario, Values,
    kubeproxy::{Rules, dead_endpoint, vip},
    measure::{self, IPERF_PORT, KB_PORT, KbServer},
    sources,
    topo::{self, Path3},
};
use crate::sh;

const PORTS: [u16; 2] = [KB_PORT, IPERF_PORT];
/// Services in the programming-time benchmark.
const PROG_N: usize = 10_000;

pub fn scenarios() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(ClusterIp {
            n: 1,
            name: "svc-1",
        }),
        Box::new(ClusterIp {
            n: 1_000,
            name: "svc-1k",
        }),
        Box::new(ClusterIp {
            n: 10_000,
            name: "svc-10k",
        }),
        Box::new(Programming),
        Box::new(Planning),
    ]
}

fn mode(name: &'static str, role: Role, about: &'static str) -> Mode {
    Mode { name, role, about }
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &str) -> anyhow::Result<Self> {
        let p = std::env::temp_dir().join(format!("{}-{tag}", names::unique('f')));
        fs::write(&p, contents).with_context(|| format!("writing {}", p.display()))?;
        Ok(Self(p))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The desired state (the agent's JSON form) of `n` services: service i is `fd00:96::<i>`
/// port 7000 to a non-existent endpoint, the last one serves 7000 and 5201 on `server`.
/// `extra` adds services after the n-th; `moved` moves service 1 to another endpoint.
fn state_json(n: usize, server: Ipv6Addr, extra: usize, moved: bool) -> String {
    let svc = |i: usize, ports: &[u16], ep: Ipv6Addr| {
        json!({
            "id": { "namespace": "bench", "name": format!("svc{i}") },
            "cluster_ips": [vip(i).to_string()],
            "external_ips": [],
            "load_balancer_ips": [],
            "ports": ports.iter().map(|p| json!({
                "name": format!("p{p}"),
                "protocol": "TCP",
                "port": p,
                "node_port": null,
                "backends": [{
                    "addr": ep.to_string(), "port": p,
                    "ready": true, "serving": true, "terminating": false, "local": false,
                }],
            })).collect::<Vec<_>>(),
            "external_traffic_policy": "Cluster",
            "internal_traffic_policy": "Cluster",
            "session_affinity": null,
            "health_check_node_port": null,
        })
    };
    let mut services = Vec::with_capacity(n + extra);
    for i in 1..=n {
        if i == n {
            services.push(svc(i, &PORTS, server));
        } else if i == 1 && moved {
            services.push(svc(i, &PORTS[..1], dead_endpoint(n + 100_000)));
        } else {
            services.push(svc(i, &PORTS[..1], dead_endpoint(i)));
        }
    }
    for i in n + 1..=n + extra {
        services.push(svc(i, &PORTS[..1], dead_endpoint(i)));
    }
    json!({
        "node": { "name": "bench", "addresses": [topo::NODE_CLI.to_string()] },
        "services": services,
    })
    .to_string()
}

/// Runs `cmd` with `input` on stdin; wall time in ms.
fn timed_stdin(mut cmd: Command, input: &str) -> anyhow::Result<f64> {
    let (r, secs) = sh::timed(|| sh::input(&mut cmd, input));
    r?;
    Ok(secs * 1e3)
}

fn agent(ctx: &Ctx, ns: Option<&NetNs>, pins: &PinDir) -> Command {
    let agent = ctx.agent.to_string_lossy().into_owned();
    let mut c = match ns {
        Some(ns) => ns.command(&agent),
        None => Command::new(&agent),
    };
    c.args(["--pin-root", &pins.path().to_string_lossy()]);
    c
}

/// Loads sixlane's datapath into a fresh pin dir and attaches the pod programs to `ifaces`
/// (in the node namespace).
fn sixlane_datapath(ctx: &Ctx, node: &NetNs, pins: &PinDir, ifaces: &[&str]) -> anyhow::Result<()> {
    sh::output(agent(ctx, None, pins).arg("load"))?;
    for iface in ifaces {
        sh::output(
            agent(ctx, Some(node), pins)
                .args(["services", "attach", "--iface", iface, "--role", "pod"]),
        )?;
    }
    Ok(())
}

/// `services apply` reports, one per document.
fn sixlane_apply(
    ctx: &Ctx,
    pins: &PinDir,
    docs: &[String],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let file = TempFile::new("state.json", &docs.join("\n"))?;
    let out = sh::output(agent(ctx, None, pins).args([
        "--json",
        "services",
        "apply",
        "--file",
        file.path(),
    ]))?;
    out.lines()
        .map(|l| serde_json::from_str(l).context("apply report"))
        .collect()
}

fn counter(ctx: &Ctx, pins: &PinDir, reason: &str) -> anyhow::Result<u64> {
    let out = sh::output(agent(ctx, None, pins).args(["--json", "metrics"]))?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    Ok(rows
        .iter()
        .filter(|r| r["reason"] == reason)
        .filter_map(|r| r["packets"].as_u64())
        .sum())
}

/// One ClusterIP scenario with `n` services installed.
pub struct ClusterIp {
    n: usize,
    name: &'static str,
}

impl Scenario for ClusterIp {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        match self.n {
            1 => "client -> ClusterIP -> server, 1 service installed",
            1_000 => "client -> ClusterIP -> server, 1,000 services installed",
            _ => "client -> ClusterIP -> server, 10,000 services installed",
        }
    }

    fn modes(&self) -> Vec<Mode> {
        vec![
            mode(
                "direct",
                Role::Limit,
                "client -> server address, nothing attached",
            ),
            mode(
                "nft",
                Role::Peer,
                "kube-proxy nftables-mode ruleset (vmap, numgen, dnat)",
            ),
            mode(
                "iptables-nft",
                Role::Peer,
                "kube-proxy iptables-mode ruleset, ip6tables-restore (nf_tables backend)",
            ),
            mode(
                "iptables-legacy",
                Role::Peer,
                "kube-proxy iptables-mode ruleset, ip6tables-legacy-restore",
            ),
            mode(
                "sixlane",
                Role::Ours,
                "sixlane pod programs on both node veths, ClusterIP via conntrack + DNAT",
            ),
            mode(
                "sixlane-direct",
                Role::Ours,
                "sixlane pod programs attached, client -> server address (not a service)",
            ),
        ]
    }

    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::new("crr_rate", "conn/s", true),
            Metric::new("crr_p50", "us", false),
            Metric::new("rr_rate", "req/s", true),
            Metric::new("rr_p50", "us", false),
            Metric::new("rr_p99", "us", false),
            Metric::new("throughput", "Gbit/s", true),
            super::FROM_POD_NS,
        ]
    }

    fn trial(&self, mode: &Mode, ctx: &Ctx) -> anyhow::Result<Values> {
        let t = Path3::new()?;
        let pins = PinDir::new()?;
        t.cli.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
        let rules = Rules {
            n: self.n,
            ports: &PORTS,
            server: topo::SRV,
        };
        let service = vip(self.n);
        let target = match mode.name {
            "direct" => topo::SRV,
            "nft" => {
                let f = TempFile::new("rules.nft", &rules.nft())?;
                sh::output(t.node.command("nft").args(["-f", f.path()]))?;
                service
            }
            "iptables-nft" | "iptables-legacy" => {
                let tool = if mode.name == "iptables-nft" {
                    "ip6tables-restore"
                } else {
                    "ip6tables-legacy-restore"
                };
                timed_stdin(
                    {
                        let mut c = t.node.command(tool);
                        c.arg("-w");
                        c
                    },
                    &rules.iptables(),
                )?;
                service
            }
            "sixlane" | "sixlane-direct" => {
                sixlane_datapath(ctx, &t.node, &pins, &[t.ncli(), &t.to_srv.a.name])?;
                sources::record(&t.node, &pins, t.ncli(), &[topo::CLI])?;
                sources::record(&t.node, &pins, &t.to_srv.a.name, &[topo::SRV])?;
                if mode.name == "sixlane" {
                    let r = sixlane_apply(ctx, &pins, &[state_json(self.n, topo::SRV, 0, false)])?;
                    if r[0]["skipped"].as_array().is_some_and(|s| !s.is_empty()) {
                        bail!("services left out: {}", r[0]["skipped"]);
                    }
                    service
                } else {
                    topo::SRV
                }
            }
            other => bail!("unknown mode {other}"),
        };
        let mut values = measure(&t, ctx, target)?;
        super::from_pod_ns(ctx, pins.path(), &mut values)?;
        match mode.name {
            "sixlane" if counter(ctx, &pins, "svc_new")? == 0 => {
                bail!("sixlane translated no flow: the programs were not on the path")
            }
            // Client and server are pods of the node: their packets must take the fast path.
            "sixlane" if counter(ctx, &pins, "svc_peer")? == 0 => {
                bail!(
                    "sixlane delivered no packet straight into a pod: svc_new {}, svc_forward {}, \
                     svc_reverse {}",
                    counter(ctx, &pins, "svc_new")?,
                    counter(ctx, &pins, "svc_forward")?,
                    counter(ctx, &pins, "svc_reverse")?
                )
            }
            "sixlane-direct" if counter(ctx, &pins, "pass")? == 0 => {
                bail!("sixlane counted no packet: the programs were not on the path")
            }
            _ => {}
        }
        Ok(values)
    }
}

/// kbench CRR and RR, then iperf3 (see `measure`), towards `target`.
fn measure(t: &Path3, ctx: &Ctx, target: Ipv6Addr) -> anyhow::Result<Values> {
    let mut v = Values::new();
    let to = SocketAddr::from((target, KB_PORT));
    {
        let _server = KbServer::start(
            &t.srv,
            ctx,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, KB_PORT)),
        )?;
        let crr = measure::crr(&t.cli, ctx, to)?;
        v.insert("crr_rate", crr.rate);
        v.insert("crr_p50", crr.p50_us);
        let rr = measure::rr(&t.cli, ctx, to)?;
        v.insert("rr_rate", rr.rate);
        v.insert("rr_p50", rr.p50_us);
        v.insert("rr_p99", rr.p99_us);
    }
    v.insert(
        "throughput",
        measure::iperf3(&t.cli, &t.srv, ctx, &target.to_string(), 1)?,
    );
    Ok(v)
}

/// Time to program 10,000 services, add one, change one.
pub struct Programming;

impl Scenario for Programming {
    fn name(&self) -> &'static str {
        "svc-prog"
    }

    fn about(&self) -> &'static str {
        "program 10,000 services into empty state, then add one, then change one's endpoints"
    }

    fn modes(&self) -> Vec<Mode> {
        vec![
            mode(
                "bpf-syscalls",
                Role::Limit,
                "sixlane's batched map syscalls alone (no diffing), measured in-process",
            ),
            mode(
                "nft",
                Role::Peer,
                "nft -f: whole table, then kube-proxy's partial sync (new chains + element)",
            ),
            mode(
                "iptables-nft",
                Role::Peer,
                "ip6tables-restore: whole table, then --noflush KUBE-SERVICES + new chains",
            ),
            mode(
                "iptables-legacy",
                Role::Peer,
                "ip6tables-legacy-restore, same inputs",
            ),
            mode(
                "sixlane",
                Role::Ours,
                "Programmer::apply in-process (diff + batched map writes)",
            ),
            mode(
                "sixlane-cli",
                Role::Ours,
                "sixlane-agent services apply per step: process start, JSON, map read-back, apply",
            ),
        ]
    }

    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::new("full_ms", "ms", false),
            Metric::new("add1_ms", "ms", false),
            Metric::new("change1_ms", "ms", false),
        ]
    }

    fn trial(&self, mode: &Mode, ctx: &Ctx) -> anyhow::Result<Values> {
        let node = NetNs::new()?;
        let pins = PinDir::new()?;
        let mut v = Values::new();
        let rules = Rules {
            n: PROG_N,
            ports: &PORTS,
            server: topo::SRV,
        };
        let full = state_json(PROG_N, topo::SRV, 0, false);
        let plus1 = state_json(PROG_N, topo::SRV, 1, false);
        let changed = state_json(PROG_N, topo::SRV, 1, true);
        match mode.name {
            "nft" => {
                v.insert("full_ms", {
                    let f = TempFile::new("full.nft", &rules.nft())?;
                    timed(node.command("nft").args(["-f", f.path()]))?
                });
                v.insert("add1_ms", {
                    let f = TempFile::new("add1.nft", &rules.nft_add_one())?;
                    timed(node.command("nft").args(["-f", f.path()]))?
                });
            }
            "iptables-nft" | "iptables-legacy" => {
                let tool = if mode.name == "iptables-nft" {
                    "ip6tables-restore"
                } else {
                    "ip6tables-legacy-restore"
                };
                let mut c = node.command(tool);
                c.arg("-w");
                v.insert("full_ms", timed_stdin(c, &rules.iptables())?);
                let mut c = node.command(tool);
                c.args(["-w", "--noflush"]);
                v.insert("add1_ms", timed_stdin(c, &rules.iptables_add_one())?);
            }
            "sixlane" | "bpf-syscalls" => {
                sh::output(agent(ctx, None, &pins).arg("load"))?;
                let reports = sixlane_apply(ctx, &pins, &[full, plus1, changed])?;
                let field = if mode.name == "sixlane" {
                    "elapsed_us"
                } else {
                    "map_us"
                };
                for (name, r) in ["full_ms", "add1_ms", "change1_ms"]
                    .into_iter()
                    .zip(&reports)
                {
                    let us = r[field].as_f64().context("apply report")?;
                    v.insert(name, us / 1e3);
                }
                check_reports(&reports)?;
            }
            "sixlane-cli" => {
                sh::output(agent(ctx, None, &pins).arg("load"))?;
                for (name, doc) in [
                    ("full_ms", full),
                    ("add1_ms", plus1),
                    ("change1_ms", changed),
                ] {
                    let f = TempFile::new("state.json", &doc)?;
                    let ms = timed(agent(ctx, None, &pins).args([
                        "--json",
                        "services",
                        "apply",
                        "--file",
                        f.path(),
                    ]))?;
                    v.insert(name, ms);
                }
            }
            other => bail!("unknown mode {other}"),
        }
        Ok(v)
    }
}

/// The three applies did what they claim: 10k services, then one more, then one changed.
fn check_reports(r: &[serde_json::Value]) -> anyhow::Result<()> {
    let changed: Vec<u64> = r.iter().filter_map(|x| x["changed"].as_u64()).collect();
    if changed != [PROG_N as u64, 1, 1] {
        bail!("unexpected apply reports: {r:?}");
    }
    Ok(())
}

/// Wall time of `cmd` in ms (it must succeed).
fn timed(cmd: &mut Command) -> anyhow::Result<f64> {
    let start = Instant::now();
    sh::output(cmd)?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// What the agent's `svc_plan` example measures, in the order it runs them.
const PLAN_METRICS: [&str; 7] = [
    "apply_ms",
    "noop_ms",
    "contribute_ms",
    "diff_ms",
    "pack_ms",
    "clone_ms",
    "owners_ms",
];

/// Where a 10,000-service apply's time goes: the agent's `svc_plan` example, once per trial.
pub struct Planning;

impl Scenario for Planning {
    fn name(&self) -> &'static str {
        "svc-plan"
    }

    fn about(&self) -> &'static str {
        "a 10,000-service apply without map syscalls: whole, repeated unchanged, step by step"
    }

    fn modes(&self) -> Vec<Mode> {
        vec![mode(
            "sixlane",
            Role::Ours,
            "Programmer::apply over a store that discards writes, then contribute, diff, pack, \
             clone and owners alone",
        )]
    }

    fn metrics(&self) -> Vec<Metric> {
        PLAN_METRICS
            .iter()
            .map(|&m| Metric::new(m, "ms", false))
            .collect()
    }

    fn trial(&self, _mode: &Mode, ctx: &Ctx) -> anyhow::Result<Values> {
        plan_values(&sh::output(&mut Command::new(&ctx.svc_plan))?)
    }
}

/// The example's one JSON object as the scenario's values.
fn plan_values(out: &str) -> anyhow::Result<Values> {
    let v: serde_json::Value = serde_json::from_str(out.trim()).context("svc_plan's output")?;
    PLAN_METRICS
        .iter()
        .map(|&m| {
            let ms = v[m]
                .as_f64()
                .with_context(|| format!("svc_plan printed no {m}: {out}"))?;
            Ok((m, ms))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_values_take_every_metric_and_nothing_else() {
        let out = r#"{"apply_ms":210.5,"noop_ms":9.0,"contribute_ms":120.25,"diff_ms":40.0,
            "pack_ms":1.5,"clone_ms":12.0,"owners_ms":3.0,"other":1}"#;
        let v = plan_values(out).unwrap();
        assert_eq!(v.len(), PLAN_METRICS.len());
        assert_eq!(v["apply_ms"], 210.5);
        assert_eq!(v["contribute_ms"], 120.25);
        let e = plan_values(r#"{"apply_ms": 1}"#).unwrap_err().to_string();
        assert!(e.contains("no noop_ms"), "{e}");
    }
}
