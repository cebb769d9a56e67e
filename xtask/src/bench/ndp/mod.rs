//! Neighbor Discovery for a pod on the provider's link, timed at the router: how long after a
//! multicast solicitation, and after a unicast (NUD) one, the node's answer arrives, and how long
//! the router's first TCP connect to the pod takes from an empty neighbour cache. The router's
//! capture socket stamps both the solicitation leaving and the advertisement arriving in the
//! kernel ([`capture`]); every advertisement timed is checked: the pod's address as target, to
//! the router, from the node, Solicited set ([`measure`]).
//!
//! ```text
//!  netns router (fd00:77:1:2::ff/64) <-veth-> netns node (uplink fd00:77:1:2::1/64) -> netns pod
//! ```
//! ([`topo`]). Modes, each answering for the same pod address on the uplink:
//! - `sixlane` ([`sixlane`]): the real agent, `ndp` on; the uplink's ingress program answers
//!   from its pinned table.
//! - `ndppd` ([`ndppd`]): the Debian daemon, a `static` rule for the address.
//! - `kernel-proxy-default`, `kernel-proxy-0` ([`kernel`]): the kernel's proxy entry, with the
//!   default `proxy_delay`, and with `proxy_delay` 0 and `all.proxy_ndp` (the limit: answered
//!   in the kernel's receive path, nothing between).
//!
//! A mode that leaves unicast solicitations unanswered shows 0 % answered and no time for them.

mod capture;
mod kernel;
mod measure;
mod ndppd;
mod sixlane;
mod topo;

use anyhow::{Context as _, bail};

use super::{Ctx, Goal, Metric, Mode, Role, Scenario, Values, stats::quantile};
use kernel::Proxy;
use measure::Counts;
use ndppd::Ndppd;
use sixlane::Sixlane;
use topo::Link;

pub struct Ndp;

/// The (p50, p99) metrics of each timing.
const MULTICAST: [&str; 2] = ["multicast_p50", "multicast_p99"];
const UNICAST: [&str; 2] = ["unicast_p50", "unicast_p99"];
const CONNECT: [&str; 2] = ["connect_p50", "connect_p99"];
/// The share of unicast solicitations answered (%).
const UNICAST_ANSWERED: &str = "unicast_answered";

impl Scenario for Ndp {
    fn name(&self) -> &'static str {
        "ndp"
    }

    fn about(&self) -> &'static str {
        "Neighbor Discovery for a pod on the provider's link: router's solicitation -> node's answer (kernel timestamps, multicast and unicast), first TCP connect from an empty neighbour cache"
    }

    fn modes(&self) -> Vec<Mode> {
        vec![
            Mode {
                name: "kernel-proxy-0",
                role: Role::Limit,
                about: "kernel proxy entry, proxy_delay 0, all.proxy_ndp",
            },
            Mode {
                name: "kernel-proxy-default",
                role: Role::Peer,
                about: "kernel proxy entry, proxy_ndp on the uplink, default proxy_delay",
            },
            Mode {
                name: "ndppd",
                role: Role::Peer,
                about: "ndppd (Debian), a static rule for the address",
            },
            Mode {
                name: "sixlane",
                role: Role::Ours,
                about: "sixlane-agent with ndp on: the uplink's ingress program answers",
            },
        ]
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut m: Vec<Metric> = [MULTICAST, UNICAST]
            .into_iter()
            .flatten()
            .map(|name| Metric::new(name, "µs", false))
            .collect();
        m.push(Metric::new(UNICAST_ANSWERED, "%", true));
        m.extend(CONNECT.map(|name| Metric::new(name, "ms", false)));
        m
    }

    fn goals(&self) -> Vec<Goal> {
        let goal = |metric, limit| Goal {
            mode: "sixlane",
            metric,
            limit,
        };
        vec![
            goal(MULTICAST[1], 200.0),
            goal(UNICAST[1], 200.0),
            goal(UNICAST_ANSWERED, 100.0),
        ]
    }

    fn trial(&self, mode: &Mode, ctx: &Ctx) -> anyhow::Result<Values> {
        let link = Link::new()?;
        // Solicitations of each kind: at least 100, so a p99 is not simply the largest (the
        // kernel's default proxy_delay makes each multicast one take up to 0.8 s).
        let n = Counts {
            solicitations: ((ctx.secs * 35.0) as usize).max(100),
            connects: ((ctx.secs * 3.0) as usize).max(5),
        };
        match mode.name {
            "sixlane" => {
                let mut agent = Sixlane::start(&link, ctx)?;
                let v = measure::run(&link, n).with_context(|| agent.log_tail())?;
                agent.check_alive()?;
                Ok(v)
            }
            "ndppd" => {
                let mut daemon = Ndppd::start(&link)?;
                let v = measure::run(&link, n);
                daemon.check_alive()?;
                v
            }
            "kernel-proxy-default" => {
                kernel::start(&link, Proxy::Default)?;
                measure::run(&link, n)
            }
            "kernel-proxy-0" => {
                kernel::start(&link, Proxy::Immediate)?;
                measure::run(&link, n)
            }
            other => bail!("unknown mode {other}"),
        }
    }
}

/// The samples' median and 99th percentile as the metrics `names` (none without samples).
fn put(v: &mut Values, [p50, p99]: [&'static str; 2], samples: &[f64]) {
    if let Some(x) = quantile(samples, 0.5) {
        v.insert(p50, x);
    }
    if let Some(x) = quantile(samples, 0.99) {
        v.insert(p99, x);
    }
}
