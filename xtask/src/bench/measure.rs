//! The measurements every datapath scenario takes, with the same tools and CPU pinning so
//! scenarios compare like with like:
//!
//! - iperf3 throughput (client on CPU 0, server on CPU 1);
//! - kbench CRR, connect rate and latency (client CPU 0, server CPU 1), one connection at a time
//!   and, where a scenario asks, several at once (the path's sustained connection rate);
//! - kbench RR, request/response rate and latency (both ends on CPU 1: cross-CPU wake-ups would
//!   swamp a microsecond-sized effect).

use std::{
    net::{IpAddr, SocketAddr},
    process::Stdio,
};

use anyhow::Context as _;
use sixlane_testkit::{ChildGuard, NetNs};

use super::{Ctx, topo};
use crate::kbench;

pub const IPERF_PORT: u16 = 5201;
pub const KB_PORT: u16 = 7000;

fn secs(ctx: &Ctx) -> String {
    format!("{}", ctx.secs.max(1.0).round() as u64)
}

/// iperf3 from `cli` to `dst` (an address; the server runs in `srv`) with `streams` parallel
/// streams: received Gbit/s.
pub fn iperf3(cli: &NetNs, srv: &NetNs, ctx: &Ctx, dst: &str, streams: u32) -> anyhow::Result<f64> {
    let port = IPERF_PORT.to_string();
    let _server = ChildGuard::spawn(
        srv.command("taskset")
            .args(["-c", "1", "iperf3", "-s", "-1", "-p", &port])
            .stdout(Stdio::null()),
    )?;
    topo::wait_listen(srv, IPERF_PORT)?;
    let out = cli.exec(
        "taskset",
        &[
            "-c",
            "0",
            "iperf3",
            "-J",
            "-c",
            dst,
            "-p",
            &port,
            "-t",
            &secs(ctx),
            "-P",
            &streams.to_string(),
        ],
    )?;
    let j: serde_json::Value = serde_json::from_str(&out).context("iperf3 JSON")?;
    let bps = j["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 result without end.sum_received.bits_per_second")?;
    Ok(bps / 1e9)
}

/// A kbench server in `srv` listening on `listen` (port [`KB_PORT`]), ended on drop.
pub struct KbServer {
    _server: ChildGuard,
}

impl KbServer {
    pub fn start(srv: &NetNs, ctx: &Ctx, listen: SocketAddr) -> anyhow::Result<Self> {
        let xtask = ctx.xtask.to_string_lossy().into_owned();
        let server = ChildGuard::spawn(srv.command("taskset").args([
            "-c",
            "1",
            &xtask,
            "kbench",
            "server",
            "--listen",
            &listen.to_string(),
        ]))?;
        topo::wait_listen(srv, listen.port())?;
        Ok(Self { _server: server })
    }
}

fn kbench(cli: &NetNs, ctx: &Ctx, cpu: &str, args: &[&str]) -> anyhow::Result<kbench::Result> {
    let xtask = ctx.xtask.to_string_lossy().into_owned();
    let mut all = vec!["-c", cpu, xtask.as_str(), "kbench"];
    all.extend_from_slice(args);
    let out = cli.exec("taskset", &all)?;
    serde_json::from_str(&out).context("kbench JSON")
}

/// Connect, one request/response, close, repeated from `cli` to `to`.
pub fn crr(cli: &NetNs, ctx: &Ctx, to: SocketAddr) -> anyhow::Result<kbench::Result> {
    crr_with(cli, ctx, to, &[])
}

/// [`crr`] with `conns` connections open at once from one thread (wrk `-t1 -cN`), from source
/// address `from`. A source of its own keeps an earlier run's connections out of the way: their
/// thousands of TIME_WAIT entries would otherwise make the client's every port search long.
pub fn crr_many(
    cli: &NetNs,
    ctx: &Ctx,
    to: SocketAddr,
    conns: usize,
    from: IpAddr,
) -> anyhow::Result<kbench::Result> {
    let c = conns.to_string();
    let f = from.to_string();
    crr_with(cli, ctx, to, &["--conns", &c, "--bind", &f])
}

/// `kbench crr` on CPU 0 towards `to` for the run's seconds, with `extra` arguments.
fn crr_with(
    cli: &NetNs,
    ctx: &Ctx,
    to: SocketAddr,
    extra: &[&str],
) -> anyhow::Result<kbench::Result> {
    let s = ctx.secs.to_string();
    let t = to.to_string();
    let mut args = vec!["crr", "--to", &t, "--secs", &s];
    args.extend_from_slice(extra);
    kbench(cli, ctx, "0", &args)
}

/// One-byte ping-pong on one connection from `cli` to `to`.
pub fn rr(cli: &NetNs, ctx: &Ctx, to: SocketAddr) -> anyhow::Result<kbench::Result> {
    let s = ctx.secs.to_string();
    kbench(
        cli,
        ctx,
        "1",
        &["rr", "--to", &to.to_string(), "--secs", &s],
    )
}
