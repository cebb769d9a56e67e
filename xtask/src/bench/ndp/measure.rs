//! One trial's measurements, the same for every mode, run on a thread inside the router's
//! namespace: multicast solicitations, unicast (NUD) ones, then TCP connects from a fresh
//! neighbour cache. Every advertisement timed is checked first.

use std::{
    net::{Ipv6Addr, SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use sixlane_testkit::{
    ndp::{Advertisement, FLAG_SOLICITED, Solicitation},
    rng::Rng,
};

use super::{
    CONNECT, MULTICAST, UNICAST, UNICAST_ANSWERED,
    capture::Stamped,
    put,
    topo::{Link, NODE_ADDR, POD, PORT, ROUTER},
};
use crate::bench::{Values, interrupt};

/// How long a multicast solicitation may wait for its answer: past the kernel's largest random
/// `proxy_delay` (0.8 s by default).
const MULTICAST_WINDOW: Duration = Duration::from_secs(2);
/// Warm-up solicitations before a responder counts as not answering at all.
const WARM_UP_TRIES: usize = 3;
/// How long a unicast solicitation may wait before it counts as unanswered (a thousand times
/// what an answering mode takes).
const UNICAST_WINDOW: Duration = Duration::from_millis(100);
/// Longest a first TCP connect may take (the router's three multicast probes are 3 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two solicitations a random pause in this range (µs), so no periodic timer on the node
/// meets them at one phase.
const PAUSE_US: (u64, u64) = (500, 3_000);

pub struct Counts {
    /// Solicitations of each kind.
    pub solicitations: usize,
    /// TCP connects.
    pub connects: usize,
}

/// The figures of one trial of `link`'s responder.
pub fn run(link: &Link, n: Counts) -> anyhow::Result<Values> {
    let rdev = link.rdev().to_owned();
    let node_lls = link.node_link_locals()?;
    let check = Check {
        node_mac: link.node_mac,
        router_mac: link.router_mac,
        node_lls,
    };
    link.router.enter(move || {
        let cap = Stamped::open(&rdev)?;
        let mut rng = Rng::new(0x6e64_7000);
        let multicast = Solicitation::multicast(check.router_mac, ROUTER, POD);
        let unicast = Solicitation::unicast(check.router_mac, ROUTER, POD, check.node_mac);
        // Untimed: the first answer (a cold cache, the responder's first packet), asked a few
        // times: a daemon just started (ndppd) may not listen yet.
        let mut warm = None;
        for _ in 0..WARM_UP_TRIES {
            warm = timed(&cap, &multicast, MULTICAST_WINDOW, &check, true)?;
            if warm.is_some() {
                break;
            }
        }
        warm.with_context(|| {
            format!("none of {WARM_UP_TRIES} warm-up multicast solicitations was answered")
        })?;
        let mut v = Values::new();
        let mut times = Vec::new();
        for _ in 0..n.solicitations {
            pause(&mut rng)?;
            let t = timed(&cap, &multicast, MULTICAST_WINDOW, &check, true)?
                .context("a multicast solicitation was not answered")?;
            times.push(t);
        }
        put(&mut v, MULTICAST, &times);
        times.clear();
        for _ in 0..n.solicitations {
            pause(&mut rng)?;
            times.extend(timed(&cap, &unicast, UNICAST_WINDOW, &check, false)?);
        }
        put(&mut v, UNICAST, &times);
        v.insert(
            UNICAST_ANSWERED,
            100.0 * times.len() as f64 / n.solicitations as f64,
        );
        let mut connects = Vec::new();
        for _ in 0..n.connects {
            pause(&mut rng)?;
            connects.push(first_connect(link)?);
        }
        put(&mut v, CONNECT, &connects);
        Ok(v)
    })
}

/// What an advertisement answering the router must be.
struct Check {
    node_mac: [u8; 6],
    router_mac: [u8; 6],
    /// The node's link-local addresses on the uplink (a proxy may answer from one).
    node_lls: Vec<Ipv6Addr>,
}

impl Check {
    /// Fails unless `a`, an answer to the router's solicitation (`multicast` or not), came from
    /// the node with the Solicited flag, from the pod's address or one of the node's on the
    /// link, and carries the node's MAC as its target's where it must (or may).
    fn verify(&self, a: &Advertisement, multicast: bool) -> anyhow::Result<()> {
        let from_node = a.src == POD || a.src == NODE_ADDR || self.node_lls.contains(&a.src);
        let tlla_ok = match a.tlla {
            Some(mac) => mac == self.node_mac,
            // A unicast solicitation's sender has the MAC already (RFC 4861 §7.2.4).
            None => !multicast,
        };
        if a.src_mac != self.node_mac
            || a.dst_mac != self.router_mac
            || a.flags & FLAG_SOLICITED == 0
            || !from_node
            || !tlla_ok
        {
            bail!("not the node's answer for {POD} to the router: {a:?}");
        }
        Ok(())
    }
}

/// Sends `ns` on `cap`'s interface; the answer's time in µs once checked, `None` if none came.
fn timed(
    cap: &Stamped,
    ns: &Solicitation,
    window: Duration,
    check: &Check,
    multicast: bool,
) -> anyhow::Result<Option<f64>> {
    // Unsolicited advertisements go to all-nodes: only answers to the router are timed.
    let answer = cap.answer(ns, window, |a| a.target == POD && a.dst == ROUTER)?;
    let Some((t, a)) = answer else {
        return Ok(None);
    };
    check.verify(&a, multicast)?;
    Ok(Some(t.as_secs_f64() * 1e6))
}

/// Between two steps: a random pause; fails once the bench is told to stop (nothing of this
/// trial runs in a child process whose end would fail it).
fn pause(rng: &mut Rng) -> anyhow::Result<()> {
    if interrupt::stopping() {
        bail!("interrupted");
    }
    let (lo, hi) = PAUSE_US;
    thread::sleep(Duration::from_micros(lo + rng.next_u64() % (hi - lo)));
    Ok(())
}

/// A TCP connect to the pod from the router with no neighbour entry for it (ms until
/// established), then a short pause so the pod's side settles.
fn first_connect(link: &Link) -> anyhow::Result<f64> {
    link.forget_pod()?;
    let to = SocketAddr::from((POD, PORT));
    let t0 = Instant::now();
    let s = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)
        .with_context(|| format!("connecting to {to} from the router"))?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    drop(s);
    thread::sleep(Duration::from_millis(20));
    Ok(ms)
}
