//! A tiny TCP request/response load generator (netperf's TCP_RR and TCP_CRR shapes), run inside
//! namespaces by the benchmarks. It reports rates and latency percentiles directly and works on
//! IPv6, which the Debian alternatives do not all do.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use anyhow::Context as _;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum Mode {
    /// Echo one byte per request, one connection at a time.
    Server {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Ping-pong one byte on one persistent connection.
    Rr {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// Connect, one request/response, close; repeated.
    Crr {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Stop after this many connections (avoids reusing ports still in TIME_WAIT).
        #[arg(long, default_value_t = 25_000)]
        max: usize,
    },
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.mode {
        Mode::Server { listen } => server(*listen),
        Mode::Rr { to, secs } => {
            let r = rr(*to, Duration::from_secs_f64(*secs))?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Mode::Crr { to, secs, max } => {
            let r = crr(*to, Duration::from_secs_f64(*secs), *max)?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Result {
    pub ops: usize,
    pub secs: f64,
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

fn server(listen: SocketAddr) -> anyhow::Result<()> {
    let l = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    // One connection at a time, served inline: no thread spawn per connection in the measured
    // path.
    for conn in l.incoming() {
        let Ok(mut s) = conn else { continue };
        let _ = s.set_nodelay(true);
        let mut b = [0u8; 1];
        loop {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if s.write_all(&b).is_err() {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

fn summarize(mut lat_ns: Vec<u64>, elapsed: Duration) -> Result {
    lat_ns.sort_unstable();
    let pct = |p: f64| {
        if lat_ns.is_empty() {
            return 0.0;
        }
        let i = ((lat_ns.len() as f64 - 1.0) * p).round() as usize;
        lat_ns[i] as f64 / 1000.0
    };
    Result {
        ops: lat_ns.len(),
        secs: elapsed.as_secs_f64(),
        rate: lat_ns.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

fn rr(to: SocketAddr, dur: Duration) -> anyhow::Result<Result> {
    let mut s = TcpStream::connect(to).with_context(|| format!("connect {to}"))?;
    s.set_nodelay(true)?;
    let mut lat = Vec::with_capacity(200_000);
    let mut b = [0u8; 1];
    let start = Instant::now();
    while start.elapsed() < dur {
        let t = Instant::now();
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    Ok(summarize(lat, start.elapsed()))
}

fn crr(to: SocketAddr, dur: Duration, max: usize) -> anyhow::Result<Result> {
    let mut lat = Vec::with_capacity(max);
    let mut b = [1u8; 1];
    let start = Instant::now();
    while start.elapsed() < dur && lat.len() < max {
        let t = Instant::now();
        let mut s = TcpStream::connect(to).with_context(|| format!("connect {to}"))?;
        s.set_nodelay(true)?;
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
        drop(s);
        lat.push(t.elapsed().as_nanos() as u64);
    }
    Ok(summarize(lat, start.elapsed()))
}
