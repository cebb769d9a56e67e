//! BGP convergence, measured where it matters: at the upstream router. FRR runs in
//! a namespace; its kernel FIB is watched through rtnetlink (testkit's `rtmon`: each
//! `RTM_NEWROUTE`/`RTM_DELROUTE` timestamped as it is read, no polling interval in the figure).
//! A trial announces /128s one at a time, then withdraws each; then 1,000 at once, then
//! withdraws them all; each change is timed from the moment it is handed to the speaker until
//! the router's kernel has it (the last of the 1,000). Then, with one route announced, the
//! speaker's BIRD is killed (SIGKILL) and brought back as the mode does: `crash_gap` is how long
//! the route was missing from the router's FIB meanwhile (0: never). The phases are in
//! [`run`].
//!
//! ```text
//!  netns router: FRR (AS 65000), fd00:f::1/64 on its LAN  <- netns node fd00:f::2/64: the speaker
//! ```
//!
//! Modes (the same FRR configuration for all):
//! - `bird-static` (the floor, [`floor`]): a plain BIRD is handed the routes directly as static
//!   routes in its configuration and reconfigured over its control socket (`birdc configure`
//!   without birdc): BIRD's and FRR's own work and delays, nothing else. After the crash it is
//!   started again plainly, as a service manager would (without graceful-restart recovery,
//!   `bird -R`, FRR drops the stale route when the new session opens: about a second's gap).
//! - `sixlane` ([`agent`]): the real `sixlane-agent` in static mode on the node, running BIRD
//!   itself, handed Services as manifests. One route is an `externalTrafficPolicy: Local`
//!   LoadBalancer Service created with a ready endpoint on the node (its /128 announced), then
//!   withdrawn by removing that endpoint from its EndpointSlice; a batch is 1,000 LoadBalancer
//!   Services in one manifest written at once, then deleted. Each Service requests its address
//!   from the pool, so every mode announces the very same prefixes. The agent starts a crashed
//!   BIRD again with `-R`. After the crash, two restarts the other modes do not have:
//!   `birdc graceful restart` (`graceful_removals`: the routes the router's FIB removed
//!   meanwhile; the agent starts BIRD again with `-R`) and an agent restart (SIGTERM, started
//!   again with the same configuration; `restart_changes`: every change of a BGP route in the
//!   router's FIB meanwhile).
//!
//! Each trial checks what it timed: the first route is read back from the router's FIB (`ip
//! -j`: protocol bgp, via the node) and after each batch the FIB holds exactly the 1,000 routes,
//! then none.

mod agent;
mod floor;
mod manifests;
mod run;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::{Context as _, bail};
use ipnet::Ipv6Net;
use sixlane_testkit::{
    frr::{Frr, FrrConfig, Neighbor, RemoteAs},
    lan::Lan,
    rtmon::RouteMonitor,
};

use super::{Ctx, Goal, Metric, Mode, Role, Scenario, Values, stats::quantile};
use agent::Sixlane;
use floor::Floor;
use run::Run;

/// The router's LAN, and the node on it (the host that speaks BGP).
const LAN: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0xfd00, 0xf, 0, 0, 0, 0, 0, 0), 64);
const NODE: u16 = 1;
const ROUTER_ASN: u32 = 65000;
const NODE_ASN: u32 = 64601;
/// Routes in a batch.
const BATCH: u16 = 1_000;
/// Longest a change may take before the trial fails (the figures are milliseconds).
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Bgp;

impl Scenario for Bgp {
    fn name(&self) -> &'static str {
        "bgp"
    }

    fn about(&self) -> &'static str {
        "BGP convergence at an FRR router: a /128 handed to the speaker -> in (or out of) the router's kernel FIB; 1 route, and 1,000 at once"
    }

    fn modes(&self) -> Vec<Mode> {
        vec![
            Mode {
                name: "bird-static",
                role: Role::Limit,
                about: "plain BIRD handed the routes as static routes and reconfigured over its socket",
            },
            Mode {
                name: "sixlane",
                role: Role::Ours,
                about: "sixlane-agent (static manifests) running BIRD: Services created, endpoints removed, deleted",
            },
        ]
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut m: Vec<Metric> = [ADD_1, DEL_1, ADD_1K, DEL_1K]
            .into_iter()
            .flatten()
            .chain([CRASH_GAP])
            .map(|name| Metric::new(name, "ms", false))
            .collect();
        m.extend([GRACEFUL_REMOVALS, RESTART_CHANGES].map(|n| Metric::new(n, "routes", false)));
        m
    }

    fn goals(&self) -> Vec<Goal> {
        vec![
            Goal {
                mode: "sixlane",
                metric: ADD_1[1],
                limit: 150.0,
            },
            Goal {
                mode: "sixlane",
                metric: ADD_1K[1],
                limit: 500.0,
            },
            Goal {
                mode: "sixlane",
                metric: GRACEFUL_REMOVALS,
                limit: 0.0,
            },
            Goal {
                mode: "sixlane",
                metric: RESTART_CHANGES,
                limit: 0.0,
            },
        ]
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
        let v = match mode.name {
            "bird-static" => {
                let mut floor = Floor::start(&lab)?;
                Run::new(&lab, &mon, &mut router, &mut floor).common(ctx)?
            }
            "sixlane" => {
                let mut agent = Sixlane::start(&lab, ctx)?;
                let mut run = Run::new(&lab, &mon, &mut router, &mut agent);
                let mut v = run.common(ctx).with_context(|| agent_log(run.speaker()))?;
                let restarts = run.restarts().with_context(|| agent_log(run.speaker()))?;
                v.extend(restarts);
                v
            }
            other => bail!("unknown mode {other}"),
        };
        router.check_alive()?;
        Ok(v)
    }
}

/// The end of the agent's log, to read beside an error.
fn agent_log(agent: &Sixlane) -> String {
    format!("the agent's log ends:\n{}", agent.log_tail())
}

/// The (p50, p99) metrics of each timed change.
const ADD_1: [&str; 2] = ["add_1_p50", "add_1_p99"];
const DEL_1: [&str; 2] = ["del_1_p50", "del_1_p99"];
const ADD_1K: [&str; 2] = ["add_1k_p50", "add_1k_p99"];
const DEL_1K: [&str; 2] = ["del_1k_p50", "del_1k_p99"];

/// How long a route was missing from the router's FIB when the speaker's BIRD was killed
/// (SIGKILL) and brought back (0: never).
const CRASH_GAP: &str = "crash_gap";
/// Routes the router's FIB removed while BIRD restarted gracefully (sixlane only).
const GRACEFUL_REMOVALS: &str = "graceful_removals";
/// Changes of BGP routes in the router's FIB while the agent restarted (sixlane only).
const RESTART_CHANGES: &str = "restart_changes";

/// The samples' median and 99th percentile as the metrics `names`.
fn put(v: &mut Values, [p50, p99]: [&'static str; 2], samples: &[f64]) {
    if let Some(x) = quantile(samples, 0.5) {
        v.insert(p50, x);
    }
    if let Some(x) = quantile(samples, 0.99) {
        v.insert(p99, x);
    }
}

/// What announces routes to the router. Each call returns once the change has been handed over
/// (the clock started before).
trait Speaker {
    /// Announces `route` (`up`) or withdraws it.
    fn one(&mut self, route: Ipv6Net, up: bool) -> anyhow::Result<()>;
    /// Announces all of `routes` at once (`up`), or withdraws them all.
    fn batch(&mut self, routes: &[Ipv6Net], up: bool) -> anyhow::Result<()>;
    /// Kills the BIRD announcing (SIGKILL: a crash) and brings it back as the mode does.
    fn crash(&mut self, lab: &Lan) -> anyhow::Result<()>;
    /// Fails if the speaker's own process has exited (a wait need not run out first).
    fn check_alive(&mut self) -> anyhow::Result<()>;
}

/// /128 number `i` of `block` (a /112 per use, so no two measurements share a route).
fn host(block: u16, i: u16) -> Ipv6Net {
    Ipv6Net::from(Ipv6Addr::new(0x2001, 0xdb8, 0xb6, block, 0, 0, 0, i + 1))
}

/// Where [`host`] takes every route from: the agent's pool and its allow-list.
const ROUTES: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0xb6, 0, 0, 0, 0, 0), 48);
