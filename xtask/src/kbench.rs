//! A tiny TCP request/response load generator (netperf's TCP_RR and TCP_CRR shapes, and wrk's
//! `-t1 -cN` connection-per-request shape), run inside namespaces by the benchmarks. It reports
//! rates and latency percentiles directly and works on IPv6, which the Debian alternatives do
//! not all do.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::sys::{
    epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags},
    socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt},
};

/// Server threads: each serves one connection at a time, so up to this many connections are
/// served at once (the concurrent CRR opens fewer).
const SERVER_WORKERS: usize = 16;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum Mode {
    /// Echo one byte per request; up to 16 connections at a time.
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
        /// Connections open at once (one thread, epoll: wrk's `-t1 -cN`); 1 = one after
        /// the other, blocking (netperf's TCP_CRR).
        #[arg(long, default_value_t = 1)]
        conns: usize,
        /// Source address (the port is still picked at connect time, per 4-tuple).
        #[arg(long)]
        bind: Option<IpAddr>,
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
        Mode::Crr {
            to,
            secs,
            max,
            conns,
            bind,
        } => {
            let dur = Duration::from_secs_f64(*secs);
            let r = if *conns > 1 || bind.is_some() {
                crr_many(*to, dur, *max, *conns, *bind)?
            } else {
                crr(*to, dur, *max)?
            };
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
    serve_workers(&l)
}

/// Serves `l` with [`SERVER_WORKERS`] threads; returns only if they all end.
fn serve_workers(l: &TcpListener) -> anyhow::Result<()> {
    // Workers started up front, each blocking in accept and serving its connection inline: no
    // thread spawn per connection in the measured path, and a lone connection is served with
    // the same system calls as by a single-threaded server (the kernel wakes one acceptor).
    let workers: Vec<_> = (0..SERVER_WORKERS)
        .map(|_| {
            let l = l.try_clone()?;
            Ok(std::thread::spawn(move || serve(&l)))
        })
        .collect::<std::io::Result<_>>()
        .context("server threads")?;
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

fn serve(l: &TcpListener) {
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

/// One connection of [`crr_many`]: opened at `t`, request sent or not yet.
struct Pending {
    s: TcpStream,
    t: Instant,
    sent: bool,
}

/// A non-blocking connect to `to` (from `bind`), registered with `ep` under `token`
/// (edge-triggered for both directions: one registration per connection, no re-arming).
fn open(ep: &Epoll, to: SocketAddr, bind: Option<IpAddr>, token: usize) -> anyhow::Result<Pending> {
    let family = if to.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd: OwnedFd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket")?;
    let t = Instant::now();
    if let Some(ip) = bind {
        // The port is left to connect, which only needs the 4-tuple to be unique: a bind-time
        // port would have to be free of every earlier connection still in TIME_WAIT.
        socket::setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)
            .context("IP_BIND_ADDRESS_NO_PORT")?;
        socket::bind(
            fd.as_raw_fd(),
            &SockaddrStorage::from(SocketAddr::new(ip, 0)),
        )
        .with_context(|| format!("bind {ip}"))?;
    }
    let addr = SockaddrStorage::from(to);
    match socket::connect(fd.as_raw_fd(), &addr) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => bail!("connect {to}: {e}"),
    }
    let s = TcpStream::from(fd);
    s.set_nodelay(true)?;
    let ev = EpollEvent::new(
        EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET,
        token as u64,
    );
    ep.add(&s, ev).context("epoll add")?;
    Ok(Pending { s, t, sent: false })
}

/// CRR with `conns` connections in flight from one thread: each connects, sends one byte, reads
/// the echo and closes, and a new one takes its place until `dur` or `max` connections. The
/// rate is what the path sustains under load (wrk `-t1 -cN` against a server, the shape of
/// published connect-rate figures); latencies include waiting behind the others.
fn crr_many(
    to: SocketAddr,
    dur: Duration,
    max: usize,
    conns: usize,
    bind: Option<IpAddr>,
) -> anyhow::Result<Result> {
    let conns = conns.max(1);
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll")?;
    let mut slots: Vec<Option<Pending>> = (0..conns).map(|_| None).collect();
    let mut lat = Vec::with_capacity(max);
    let start = Instant::now();
    let mut opened = 0;
    let mut live = 0;
    for (i, slot) in slots.iter_mut().enumerate() {
        if opened < max {
            *slot = Some(open(&ep, to, bind, i)?);
            opened += 1;
            live += 1;
        }
    }
    let mut events = vec![EpollEvent::empty(); conns];
    let mut b = [1u8; 1];
    while live > 0 {
        // A connection that makes no progress for this long is lost (a dropped SYN is
        // retransmitted after 1 s, so this is several retries).
        let n = ep.wait(&mut events, 10_000u16).context("epoll wait")?;
        if n == 0 {
            bail!("{live} connections to {to} made no progress for 10 s");
        }
        for ev in &events[..n] {
            let i = ev.data() as usize;
            let Some(p) = slots.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if !p.sent {
                // Connected (or failed): the first edge after connect.
                if let Some(e) = p.s.take_error()? {
                    bail!("connect {to}: {e}");
                }
                if !ev.events().contains(EpollFlags::EPOLLOUT) {
                    continue;
                }
                p.s.write_all(&b).context("request")?;
                p.sent = true;
                continue;
            }
            match p.s.read(&mut b) {
                Ok(1) => {}
                Ok(_) => bail!("{to} closed a connection before answering"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e).context("response"),
            }
            lat.push(p.t.elapsed().as_nanos() as u64);
            // Closing the socket also takes it out of the epoll set.
            slots[i] = None;
            live -= 1;
            if opened < max && start.elapsed() < dur {
                slots[i] = Some(open(&ep, to, bind, i)?);
                opened += 1;
                live += 1;
            }
        }
    }
    Ok(summarize(lat, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("address");
        (l, a)
    }

    #[test]
    fn many_connections_in_flight_all_complete() {
        let (l, to) = listener();
        std::thread::spawn(move || serve_workers(&l));
        let r = crr_many(to, Duration::from_secs(30), 300, 4, None).expect("crr");
        assert_eq!(r.ops, 300);
        assert!(r.rate > 0.0 && r.p50_us > 0.0 && r.p99_us >= r.p50_us);
    }

    #[test]
    fn a_refused_connection_is_an_error() {
        // A port nobody listens on: bound, then closed.
        let (l, to) = listener();
        drop(l);
        let e = crr_many(to, Duration::from_secs(5), 10, 2, None).expect_err("refused");
        assert!(format!("{e:#}").contains("connect"), "{e:#}");
    }

    #[test]
    fn a_connection_closed_unanswered_is_an_error() {
        let (l, to) = listener();
        std::thread::spawn(move || {
            for c in l.incoming() {
                drop(c);
            }
        });
        let e = crr_many(to, Duration::from_secs(5), 10, 2, None).expect_err("unanswered");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("before answering") || msg.contains("response"),
            "{msg}"
        );
    }

    #[test]
    fn connections_leave_from_the_bound_address() {
        let (l, to) = listener();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let _ = tx.send(c.peer_addr().map(|a| a.ip()));
                let mut b = [0u8; 1];
                if c.read_exact(&mut b).is_ok() {
                    let _ = c.write_all(&b);
                }
            }
        });
        let from: IpAddr = "127.0.0.2".parse().expect("address");
        let r = crr_many(to, Duration::from_secs(30), 20, 1, Some(from)).expect("crr");
        assert_eq!(r.ops, 20);
        let peers: Vec<IpAddr> = rx.try_iter().map(|p| p.expect("peer")).collect();
        assert_eq!(peers, vec![from; 20]);
    }
}
