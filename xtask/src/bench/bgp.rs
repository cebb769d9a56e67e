//! BGP convergence, measured where it matters: at the upstream router. FRR runs in
//! a namespace; its kernel FIB is watched through rtnetlink (testkit's `rtmon`: each
//! `RTM_NEWROUTE`/`RTM_DELROUTE` timestamped as it is read, no polling interval in the figure).
//! A trial announces /128s one at a time, then withdraws each; then 1,000 at once, then
//! withdraws them all; each change is timed from the moment it is handed to the speaker until
//! the router's kernel has it (the last of the 1,000). Last, with one route announced, the
//! speaker's BIRD is killed (SIGKILL) and brought back as the mode does: `crash_gap` is how long
//! the route was missing from the router's FIB meanwhile (0: never).
//!
//! ```text
//!  netns router: FRR (AS 65000), fd00:f::1/64 on its LAN  <- netns node fd00:f::2/64: the speaker
//! ```
//!
//! Modes:
//! - `bird-static` (the floor): a plain BIRD is handed the routes directly as static routes in
//!   its configuration and reconfigured over its control socket (`birdc configure` without
//!   birdc): BIRD's and FRR's own work and delays, nothing else. After the crash it is started
//!   again plainly, as a service manager would (without graceful-restart recovery, `bird -R`,
//!   FRR drops the stale route when the new session opens: about a second's gap).
//!
//! Each trial checks what it timed: the first route is read back from the router's FIB (`ip
//! -j`: protocol bgp, via the node) and after each batch the FIB holds exactly the 1,000 routes,
//! then none.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ipnet::Ipv6Net;
use sixlane_testkit::{
    bird::{Bird, BirdConfig, Peer},
    fib,
    frr::{Frr, FrrConfig, Neighbor, RemoteAs},
    lan::Lan,
    rng::Rng,
    rtmon::{Change, MAIN, RouteMonitor},
    wait,
};

use super::{Ctx, Metric, Mode, Role, Scenario, Values, stats::quantile};

/// The router's LAN, and the node on it (the host that speaks BGP).
const LAN: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0xfd00, 0xf, 0, 0, 0, 0, 0, 0), 64);
const NODE: u16 = 1;
const ROUTER_ASN: u32 = 65000;
const NODE_ASN: u32 = 64601;
/// Routes in a batch.
const BATCH: u16 = 1_000;
/// Longest a change may take before the trial fails (the figures are milliseconds).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Between two changes a random pause in this range (ms): a periodic timer in FRR or BIRD
/// meets changes at every phase instead of one.
const PAUSE_MS: (u64, u64) = (20, 120);

pub struct Bgp;

impl Scenario for Bgp {
    fn name(&self) -> &'static str {
        "bgp"
    }

    fn about(&self) -> &'static str {
        "BGP convergence at an FRR router: a /128 handed to the speaker -> in (or out of) the router's kernel FIB; 1 route, and 1,000 at once"
    }

    fn modes(&self) -> Vec<Mode> {
        vec![Mode {
            name: "bird-static",
            role: Role::Limit,
            about: "plain BIRD handed the routes as static routes and reconfigured over its socket",
        }]
    }

    fn metrics(&self) -> Vec<Metric> {
        [ADD_1, DEL_1, ADD_1K, DEL_1K]
            .into_iter()
            .flatten()
            .chain([CRASH_GAP])
            .map(|name| Metric::new(name, "ms", false))
            .collect()
    }

    fn trial(&self, mode: &Mode, ctx: &Ctx) -> anyhow::Result<Values> {
        let lab = Lan::new(LAN, NODE)?;
        let node = lab.host(NODE).addr();
        let mon = RouteMonitor::start(lab.router())?;
        let mut router = Frr::start(
            lab.router(),
            FrrConfig::new(ROUTER_ASN, Ipv4Addr::new(10, 255, 0, 1))
                .neighbor(Neighbor::new(node, RemoteAs::Asn(NODE_ASN))),
        )?;
        let mut speaker: Box<dyn Speaker> = match mode.name {
            "bird-static" => Box::new(Floor::start(&lab)?),
            other => bail!("unknown mode {other}"),
        };
        router
            .wait_established(node, TIMEOUT)
            .context("the router's session with the node")?;
        let mut run = Run {
            lab: &lab,
            mon: &mon,
            speaker: speaker.as_mut(),
            rng: Rng::new(0x6270_6700),
        };
        run.warm_up()?;
        let singles = ((ctx.secs * 10.0) as usize).max(10);
        let batches = (ctx.secs as usize).max(3);
        let mut v = Values::new();
        let (add, del) = run.singles(singles)?;
        put(&mut v, ADD_1, &add);
        put(&mut v, DEL_1, &del);
        let (add, del) = run.batches(batches)?;
        put(&mut v, ADD_1K, &add);
        put(&mut v, DEL_1K, &del);
        v.insert(CRASH_GAP, run.crash(&mut router)?);
        router.check_alive()?;
        Ok(v)
    }
}

/// The (p50, p99) metrics of each timed change.
const ADD_1: [&str; 2] = ["add_1_p50", "add_1_p99"];
const DEL_1: [&str; 2] = ["del_1_p50", "del_1_p99"];
const ADD_1K: [&str; 2] = ["add_1k_p50", "add_1k_p99"];
const DEL_1K: [&str; 2] = ["del_1k_p50", "del_1k_p99"];

/// How long a route was missing from the router's FIB when the speaker's BIRD was killed
/// (SIGKILL) and brought back (0: never).
const CRASH_GAP: &str = "crash_gap";

/// The samples' median and 99th percentile as the metrics `names`.
fn put(v: &mut Values, [p50, p99]: [&'static str; 2], samples: &[f64]) {
    if let Some(x) = quantile(samples, 0.5) {
        v.insert(p50, x);
    }
    if let Some(x) = quantile(samples, 0.99) {
        v.insert(p99, x);
    }
}

/// What announces routes to the router: makes `routes` exactly the announced set, returning
/// once it has been handed over (the clock started before).
trait Speaker {
    fn announce(&mut self, routes: &[Ipv6Net]) -> anyhow::Result<()>;
    /// Kills the BIRD announcing (SIGKILL: a crash) and brings it back as the mode does.
    fn crash(&mut self, lab: &Lan) -> anyhow::Result<()>;
}

/// The floor: BIRD's static protocol, reconfigured.
struct Floor {
    bird: Bird,
    node: Ipv6Addr,
    router: Ipv6Addr,
}

impl Floor {
    fn start(lab: &Lan) -> anyhow::Result<Self> {
        let node = lab.host(NODE);
        let config = bird_config(node.addr(), lab.router_addr(), &[]);
        Ok(Self {
            bird: Bird::start(node.ns(), config)?,
            node: node.addr(),
            router: lab.router_addr(),
        })
    }
}

fn bird_config(node: Ipv6Addr, router: Ipv6Addr, routes: &[Ipv6Net]) -> BirdConfig {
    BirdConfig::new(Ipv4Addr::new(10, 0, 0, 2), NODE_ASN, node)
        .peer(Peer::new(router, ROUTER_ASN))
        .routes(routes.iter().copied())
}

impl Speaker for Floor {
    fn announce(&mut self, routes: &[Ipv6Net]) -> anyhow::Result<()> {
        let config = bird_config(self.node, self.router, routes);
        self.bird.configure(config)?;
        Ok(())
    }

    /// Restarted plainly, as a service manager would: no graceful-restart recovery (`bird -R`),
    /// so the router drops the stale routes when the new BIRD's session opens.
    fn crash(&mut self, lab: &Lan) -> anyhow::Result<()> {
        self.bird.crash_and_restart(lab.host(NODE).ns(), false)?;
        Ok(())
    }
}

/// The block of the route a crash is measured with.
const CRASH_BLOCK: u16 = 0xffff;

/// /128 number `i` of `block` (a /112 per use, so no two measurements share a route).
fn host(block: u16, i: u16) -> Ipv6Net {
    Ipv6Net::from(Ipv6Addr::new(0x2001, 0xdb8, 0xb6, block, 0, 0, 0, i + 1))
}

struct Run<'a> {
    lab: &'a Lan,
    mon: &'a RouteMonitor,
    speaker: &'a mut dyn Speaker,
    rng: Rng,
}

impl Run<'_> {
    /// Hands `routes` to the speaker and waits until each of `changed` had `change` in the
    /// router's FIB; milliseconds from handing over to the last notification.
    fn timed(
        &mut self,
        routes: &[Ipv6Net],
        changed: &[Ipv6Net],
        change: Change,
    ) -> anyhow::Result<f64> {
        let from = self.mon.cursor();
        let t0 = Instant::now();
        self.speaker.announce(routes)?;
        let t1 = self.mon.wait_all(from, change, changed, TIMEOUT)?;
        Ok(t1.saturating_duration_since(t0).as_secs_f64() * 1e3)
    }

    fn pause(&mut self) {
        let (lo, hi) = PAUSE_MS;
        let ms = lo + self.rng.next_u64() % (hi - lo);
        thread::sleep(Duration::from_millis(ms));
    }

    /// One untimed announce and withdrawal (the session's first UPDATE, zebra's first next
    /// hop), checking the route the router installs: protocol bgp, via the node.
    fn warm_up(&mut self) -> anyhow::Result<()> {
        let r = host(0, 0);
        self.timed(&[r], &[r], Change::Added)?;
        let route = fib::route(self.lab.router(), r)?
            .with_context(|| format!("{r} announced, notified, but not in the router's FIB"))?;
        let via_node = route.nexthops.len() == 1
            && route.protocol == "bgp"
            && route.nexthops[0]
                .gateway
                .is_some_and(|g| self.lab.host_of(g) == Some(NODE));
        if !via_node {
            bail!("{r} in the router's FIB is not one BGP path via the node: {route:?}");
        }
        self.timed(&[], &[r], Change::Removed)?;
        Ok(())
    }

    /// `n` routes announced and withdrawn one at a time: (add, del) latencies in ms.
    fn singles(&mut self, n: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let (mut add, mut del) = (Vec::new(), Vec::new());
        for i in 0..n {
            let r = host(1, i as u16);
            self.pause();
            add.push(self.timed(&[r], &[r], Change::Added)?);
            self.pause();
            del.push(self.timed(&[], &[r], Change::Removed)?);
        }
        Ok((add, del))
    }

    /// `n` times: [`BATCH`] routes announced at once, then withdrawn at once: (add, del)
    /// latencies of the whole batch in ms.
    fn batches(&mut self, n: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let (mut add, mut del) = (Vec::new(), Vec::new());
        for b in 0..n {
            let routes: Vec<Ipv6Net> = (0..BATCH).map(|i| host(2 + b as u16, i)).collect();
            self.pause();
            add.push(self.timed(&routes, &routes, Change::Added)?);
            self.check_batch(&routes, true)?;
            self.pause();
            del.push(self.timed(&[], &routes, Change::Removed)?);
            self.check_batch(&routes, false)?;
        }
        Ok((add, del))
    }

    /// One route announced, then the speaker's BIRD crashed and brought back: how long (ms)
    /// the route was missing from the router's FIB (0: never), once the session is up again
    /// and the route back in the FIB.
    fn crash(&mut self, router: &mut Frr) -> anyhow::Result<f64> {
        let r = host(CRASH_BLOCK, 0);
        self.timed(&[r], &[r], Change::Added)?;
        let node = self.lab.host(NODE).addr();
        let before = router.wait_established(node, TIMEOUT)?;
        let from = self.mon.cursor();
        self.speaker.crash(self.lab)?;
        router.wait_neighbor(node, "established again", TIMEOUT, |n| {
            n.established() && n.connections_established > before.connections_established
        })?;
        let key = r.to_string();
        wait::until(
            || format!("{r} fresh in the router's BGP table and in its FIB"),
            TIMEOUT,
            || {
                let fresh = router
                    .bgp_ipv6()?
                    .paths(&key)
                    .iter()
                    .any(|p| p.valid && !p.stale);
                Ok((fresh && fib::route(self.lab.router(), r)?.is_some()).then_some(()))
            },
        )?;
        let events = self.mon.events_since(from);
        let mut changes = events.iter().filter(|e| e.dst == r && e.table == MAIN);
        let gap = match changes.find(|e| e.change == Change::Removed) {
            None => Duration::ZERO,
            Some(removed) => changes
                .find(|e| e.change == Change::Added)
                .context("the route is in the FIB again, but no notification said so")?
                .at
                .saturating_duration_since(removed.at),
        };
        self.timed(&[], &[r], Change::Removed)?;
        Ok(gap.as_secs_f64() * 1e3)
    }

    /// The router's FIB holds all of `routes` (or, `present` false, none of them).
    fn check_batch(&self, routes: &[Ipv6Net], present: bool) -> anyhow::Result<()> {
        let batch: BTreeSet<Ipv6Net> = routes.iter().copied().collect();
        let found = fib::routes(self.lab.router())?
            .iter()
            .filter(|r| r.protocol == "bgp" && batch.contains(&r.dst))
            .count();
        let want = if present { routes.len() } else { 0 };
        if found != want {
            bail!("the router's FIB holds {found} of the batch's routes, not {want}");
        }
        Ok(())
    }
}
