//! One trial's measurements: the changes every speaker is timed on, then the restarts only
//! the agent has.

use std::{
    collections::BTreeSet,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ipnet::Ipv6Net;
use sixlane_testkit::{
    fib,
    frr::{Frr, NeighborState},
    lan::Lan,
    rng::Rng,
    rtmon::{Change, Event, MAIN, RouteMonitor},
    wait,
};

use super::{
    ADD_1, ADD_1K, BATCH, CRASH_GAP, DEL_1, DEL_1K, GRACEFUL_REMOVALS, NODE, RESTART_CHANGES,
    Speaker, TIMEOUT, agent::Sixlane, host, put,
};
use crate::bench::{Ctx, Values};

/// Between two changes a random pause in this range (ms): a periodic timer in FRR, BIRD or the
/// agent meets changes at every phase instead of one.
const PAUSE_MS: (u64, u64) = (20, 120);
/// The blocks of the routes the crash and the restarts are measured with.
const CRASH_BLOCK: u16 = 0xffff;
const GRACEFUL_BLOCK: u16 = 0xfffe;
const RESTART_BLOCK: u16 = 0xfffd;
/// After an agent restart, how long the router's FIB is watched for a late change.
const SETTLE: Duration = Duration::from_secs(1);
/// How often a wait for the router's FIB checks that the speaker is alive.
const ALIVE_CHECK: Duration = Duration::from_millis(500);
/// `RTPROT_BGP`: what zebra installs BGP routes as.
const PROTO_BGP: u8 = 186;

pub struct Run<'a, S> {
    lab: &'a Lan,
    mon: &'a RouteMonitor,
    router: &'a mut Frr,
    speaker: &'a mut S,
    rng: Rng,
}

impl<'a, S: Speaker> Run<'a, S> {
    pub fn new(
        lab: &'a Lan,
        mon: &'a RouteMonitor,
        router: &'a mut Frr,
        speaker: &'a mut S,
    ) -> Self {
        Self {
            lab,
            mon,
            router,
            speaker,
            rng: Rng::new(0x6270_6700),
        }
    }

    pub fn speaker(&self) -> &S {
        self.speaker
    }

    /// What every mode is measured on: one route at a time, batches, a crash.
    pub fn common(&mut self, ctx: &Ctx) -> anyhow::Result<Values> {
        let node = self.lab.host(NODE).addr();
        self.router
            .wait_established(node, TIMEOUT)
            .context("the router's session with the node")?;
        self.warm_up()?;
        let singles = ((ctx.secs * 10.0) as usize).max(10);
        let batches = (ctx.secs as usize).max(3);
        let mut v = Values::new();
        let (add, del) = self.singles(singles)?;
        put(&mut v, ADD_1, &add);
        put(&mut v, DEL_1, &del);
        let (add, del) = self.batches(batches)?;
        put(&mut v, ADD_1K, &add);
        put(&mut v, DEL_1K, &del);
        v.insert(CRASH_GAP, self.crash()?);
        Ok(v)
    }

    /// Has the speaker make a change (`act`) and waits until each of `changed` had `change`
    /// in the router's FIB; milliseconds from handing over to the last notification.
    fn timed(
        &mut self,
        act: impl FnOnce(&mut S) -> anyhow::Result<()>,
        changed: &[Ipv6Net],
        change: Change,
    ) -> anyhow::Result<f64> {
        let from = self.mon.cursor();
        let t0 = Instant::now();
        act(self.speaker)?;
        let t1 = self.wait_fib(from, change, changed)?;
        Ok(t1.saturating_duration_since(t0).as_secs_f64() * 1e3)
    }

    /// [`RouteMonitor::wait_all`], up to [`TIMEOUT`], failing early if the speaker dies.
    fn wait_fib(
        &mut self,
        from: usize,
        change: Change,
        changed: &[Ipv6Net],
    ) -> anyhow::Result<Instant> {
        let t0 = Instant::now();
        loop {
            match self.mon.wait_all(from, change, changed, ALIVE_CHECK) {
                Ok(t) => return Ok(t),
                Err(sixlane_testkit::Error::Timeout { .. }) if t0.elapsed() < TIMEOUT => {
                    self.speaker.check_alive()?;
                }
                Err(e) => return Err(e.into()),
            }
        }
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
        self.timed(|s| s.one(r, true), &[r], Change::Added)?;
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
        self.timed(|s| s.one(r, false), &[r], Change::Removed)?;
        Ok(())
    }

    /// `n` routes announced and withdrawn one at a time: (add, del) latencies in ms.
    fn singles(&mut self, n: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let (mut add, mut del) = (Vec::new(), Vec::new());
        for i in 0..n {
            let r = host(1, i as u16);
            self.pause();
            add.push(self.timed(|s| s.one(r, true), &[r], Change::Added)?);
            self.pause();
            del.push(self.timed(|s| s.one(r, false), &[r], Change::Removed)?);
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
            add.push(self.timed(|s| s.batch(&routes, true), &routes, Change::Added)?);
            self.check_batch(&routes, true)?;
            self.pause();
            del.push(self.timed(|s| s.batch(&routes, false), &routes, Change::Removed)?);
            self.check_batch(&routes, false)?;
        }
        Ok((add, del))
    }

    /// One route announced, then the speaker's BIRD crashed and brought back: how long (ms)
    /// the route was missing from the router's FIB (0: never), once the session is up again
    /// and the route back in the FIB.
    fn crash(&mut self) -> anyhow::Result<f64> {
        let r = host(CRASH_BLOCK, 0);
        self.timed(|s| s.one(r, true), &[r], Change::Added)?;
        let before = self.session()?;
        let from = self.mon.cursor();
        self.speaker.crash(self.lab)?;
        self.back_fresh(r, &before)?;
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
        self.timed(|s| s.one(r, false), &[r], Change::Removed)?;
        Ok(gap.as_secs_f64() * 1e3)
    }

    /// The router's session with the node, established.
    fn session(&mut self) -> anyhow::Result<NeighborState> {
        let node = self.lab.host(NODE).addr();
        Ok(self.router.wait_established(node, TIMEOUT)?)
    }

    /// Waits until the session that was `before` has been established anew and `r` is in
    /// the router's BGP table from it (not a stale path kept over the restart) and in its FIB.
    fn back_fresh(&mut self, r: Ipv6Net, before: &NeighborState) -> anyhow::Result<()> {
        let node = self.lab.host(NODE).addr();
        self.router
            .wait_neighbor(node, "established again", TIMEOUT, |n| {
                n.established() && n.connections_established > before.connections_established
            })?;
        let key = r.to_string();
        let router = &*self.router;
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
        Ok(())
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

    /// The router's FIB notifications about BGP routes from `from` on.
    fn bgp_events(&self, from: usize) -> Vec<Event> {
        self.mon
            .events_since(from)
            .into_iter()
            .filter(|e| e.table == MAIN && e.protocol == PROTO_BGP)
            .collect()
    }
}

impl Run<'_, Sixlane> {
    /// What only the agent has: BIRD restarted gracefully, and the agent restarted.
    pub fn restarts(&mut self) -> anyhow::Result<Values> {
        let mut v = Values::new();
        v.insert(GRACEFUL_REMOVALS, self.graceful()?);
        v.insert(RESTART_CHANGES, self.agent_restart()?);
        Ok(v)
    }

    /// One route announced, then `birdc graceful restart` (the agent starts BIRD again with
    /// `-R`): how many BGP routes the router's FIB removed until the session is back and the
    /// route fresh.
    fn graceful(&mut self) -> anyhow::Result<f64> {
        let r = host(GRACEFUL_BLOCK, 0);
        self.timed(|s| s.one(r, true), &[r], Change::Added)?;
        let before = self.session()?;
        let from = self.mon.cursor();
        self.speaker.graceful_restart(self.lab)?;
        self.back_fresh(r, &before)?;
        let removed = self
            .bgp_events(from)
            .iter()
            .filter(|e| e.change == Change::Removed)
            .count();
        self.timed(|s| s.one(r, false), &[r], Change::Removed)?;
        Ok(removed as f64)
    }

    /// One route announced, then the agent restarted: how many BGP routes changed in the
    /// router's FIB until the new agent runs BIRD's configuration, and [`SETTLE`] after. Then
    /// the route is withdrawn: the new agent is at work.
    fn agent_restart(&mut self) -> anyhow::Result<f64> {
        let r = host(RESTART_BLOCK, 0);
        self.timed(|s| s.one(r, true), &[r], Change::Added)?;
        let before = self.session()?;
        let from = self.mon.cursor();
        self.speaker.restart(self.lab)?;
        thread::sleep(SETTLE);
        let changes = self.bgp_events(from).len();
        let after = self.session()?;
        if after.connections_established != before.connections_established {
            bail!("the agent restart reset the BGP session: {before:?} -> {after:?}");
        }
        self.speaker.one(r, false)?;
        wait::until(
            || format!("{r} withdrawn by the restarted agent"),
            TIMEOUT,
            || Ok(fib::route(self.lab.router(), r)?.is_none().then_some(())),
        )?;
        Ok(changes as f64)
    }
}
