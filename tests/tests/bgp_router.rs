//! The upstream router the BGP tests assert on, proven on its own: FRR in a namespace learns
//! what plain BIRD speakers announce, into its kernel FIB, with ECMP across speakers.
//!
//! ```text
//!   netns router: FRR (AS 65000) on the LAN's bridge, fd00:f::1/64
//!   netns speaker i: BIRD (AS 6460i), fd00:f::(i+1)/64 and fe80::(i+1) on the LAN
//! ```

use std::{collections::BTreeSet, net::Ipv6Addr, time::Duration};

use ipnet::Ipv6Net;
use sixlane_testkit::{
    NetNs,
    bird::{Bird, BirdConfig, Peer},
    daemon, fib,
    frr::{Frr, FrrConfig, Neighbor, RemoteAs},
    lan::{self, Lan},
    rtmon::{Change, RouteMonitor},
    wait,
};

const ROUTER_ASN: u32 = 65000;
const SETTLE: Duration = Duration::from_secs(20);
const PASSWORD: &str = "s3cret";

fn speaker_asn(i: u16) -> u32 {
    64600 + u32::from(i)
}

/// The router's LAN with speakers 1..=n on it.
struct Lab {
    lan: Lan,
}

impl Lab {
    fn new(n: u16) -> Self {
        sixlane_testkit::require_root();
        Self {
            lan: Lan::new("fd00:f::/64".parse().unwrap(), n).unwrap(),
        }
    }

    fn router(&self) -> &NetNs {
        self.lan.router()
    }

    /// Speaker `i`'s address.
    fn addr(&self, i: u16) -> Ipv6Addr {
        self.lan.host(i).addr()
    }

    /// The speaker whose address (global or link-local) `gw` is.
    fn speaker_of(&self, gw: Ipv6Addr) -> Option<u16> {
        self.lan.host_of(gw)
    }

    /// The router, with every speaker as an eBGP neighbor.
    fn frr(&self, config: FrrConfig) -> Frr {
        self.frr_with(config, |n| n)
    }

    /// The router, with every speaker as an eBGP neighbor with `options` applied.
    fn frr_with(&self, config: FrrConfig, options: impl Fn(Neighbor) -> Neighbor) -> Frr {
        let config = (1..=self.lan.hosts().len() as u16).fold(config, |c, i| {
            c.neighbor(options(Neighbor::new(
                self.addr(i),
                RemoteAs::Asn(speaker_asn(i)),
            )))
        });
        Frr::start(self.router(), config).unwrap()
    }

    /// Speaker `i`'s BIRD announcing `routes` to the router.
    fn bird(&self, i: u16, routes: &[Ipv6Net]) -> Bird {
        self.start_bird(i, self.bird_config(i, routes))
    }

    fn start_bird(&self, i: u16, config: BirdConfig) -> Bird {
        Bird::start(self.lan.host(i).ns(), config).unwrap()
    }

    /// The router as speakers peer with it.
    fn router_peer(&self) -> Peer {
        Peer::new(self.lan.router_addr(), ROUTER_ASN)
    }

    /// Speaker `i`'s configuration: `routes` announced to the router.
    fn bird_config(&self, i: u16, routes: &[Ipv6Net]) -> BirdConfig {
        self.bird_config_with(i, routes, self.router_peer())
    }

    /// Speaker `i`'s configuration: `routes` announced to `router` (the router with options).
    fn bird_config_with(&self, i: u16, routes: &[Ipv6Net], router: Peer) -> BirdConfig {
        BirdConfig::new(
            format!("10.0.0.{}", i + 1).parse().unwrap(),
            speaker_asn(i),
            self.addr(i),
        )
        .peer(router)
        .routes(routes.iter().copied())
    }
}

fn router_config() -> FrrConfig {
    FrrConfig::new(ROUTER_ASN, "10.255.0.1".parse().unwrap())
}

/// Waits until the router's kernel FIB has a route to `prefix` with `paths` next hops.
fn fib_route(lab: &Lab, prefix: Ipv6Net, paths: usize) -> fib::Route {
    wait::until(
        || format!("{prefix} with {paths} path(s) in the router's FIB"),
        SETTLE,
        || Ok(fib::route(lab.router(), prefix)?.filter(|r| r.nexthops.len() == paths)),
    )
    .unwrap_or_else(|e| panic!("{e}: FIB {:#?}", fib::routes(lab.router())))
}

#[test]
fn frr_learns_a_birds_static_route_into_its_kernel_fib_and_forgets_it() {
    let lab = Lab::new(1);
    let prefix: Ipv6Net = "2001:db8:100::1/128".parse().unwrap();
    let mon = RouteMonitor::start(lab.router()).unwrap();
    let mut router = lab.frr(router_config());
    let mut bird = lab.bird(1, &[prefix]);
    let session = router.wait_established(lab.addr(1), SETTLE).unwrap();
    assert_eq!(session.remote_as, speaker_asn(1));

    // The kernel forwards to the speaker, on the LAN, installed by zebra for BGP.
    let route = fib_route(&lab, prefix, 1);
    assert_eq!(route.protocol, "bgp", "{route:?}");
    let hop = &route.nexthops[0];
    assert_eq!(hop.dev.as_deref(), Some(lan::BRIDGE), "{route:?}");
    assert_eq!(
        hop.gateway.and_then(|g| lab.speaker_of(g)),
        Some(1),
        "{route:?}"
    );
    mon.wait_all(0, Change::Added, &[prefix], SETTLE).unwrap();

    // BGP's and zebra's own view agree.
    let table = router.bgp_ipv6().unwrap();
    let paths = table.paths(&prefix.to_string());
    assert_eq!(paths.len(), 1, "{table:#?}");
    assert!(paths[0].valid && paths[0].bestpath, "{paths:?}");
    assert_eq!(paths[0].path, speaker_asn(1).to_string());
    assert_eq!(paths[0].peer_id, lab.addr(1).to_string());
    let rib = router.rib().unwrap();
    let r = &rib[&prefix.to_string()][0];
    assert_eq!(r.protocol, "bgp");
    assert!(r.selected && r.installed, "{r:?}");
    assert!(r.nexthops.iter().all(|n| n.fib), "{r:?}");

    // Withdrawn by reconfiguring BIRD in place: gone from the FIB, the session untouched.
    let from = mon.cursor();
    bird.configure(lab.bird_config(1, &[])).unwrap();
    mon.wait_all(from, Change::Removed, &[prefix], SETTLE)
        .unwrap();
    assert_eq!(fib::route(lab.router(), prefix).unwrap(), None);
    let after = &router.neighbors().unwrap()[&lab.addr(1).to_string()];
    assert!(after.established(), "{after:?}");
    assert_eq!(
        (after.connections_established, after.connections_dropped),
        (session.connections_established, session.connections_dropped),
        "reconfiguring BIRD reset the session: {after:?}"
    );
    router.check_alive().unwrap();
    bird.check_alive().unwrap();
}

#[test]
fn frr_installs_one_route_with_a_next_hop_per_speaker() {
    let lab = Lab::new(2);
    let range: Ipv6Net = "2001:db8:96::/108".parse().unwrap();
    let mut router = lab.frr(router_config());
    let _birds = [lab.bird(1, &[range]), lab.bird(2, &[range])];
    for i in 1..=2 {
        router.wait_established(lab.addr(i), SETTLE).unwrap();
    }

    let route = fib_route(&lab, range, 2);
    let mut via: Vec<Option<u16>> = route
        .gateways()
        .into_iter()
        .map(|g| lab.speaker_of(g))
        .collect();
    via.sort();
    assert_eq!(via, [Some(1), Some(2)], "{route:?}");
    assert!(
        route
            .nexthops
            .iter()
            .all(|n| n.dev.as_deref() == Some(lan::BRIDGE))
    );
    let table = router.bgp_ipv6().unwrap();
    assert_eq!(
        table.used_peers(&range.to_string()),
        [lab.addr(1).to_string(), lab.addr(2).to_string()],
        "{table:#?}"
    );

    // The ECMP comes from the router's configuration: one path when it allows one.
    let bgp = format!("router bgp {ROUTER_ASN}");
    router
        .configure(&[
            bgp.as_str(),
            "address-family ipv6 unicast",
            "maximum-paths 1",
        ])
        .unwrap();
    let single = fib_route(&lab, range, 1);
    assert!(
        single
            .gateways()
            .into_iter()
            .all(|g| lab.speaker_of(g).is_some())
    );
}

/// The router's BGP routes in its kernel FIB that are among `routes`.
fn installed_of(lab: &Lab, routes: &BTreeSet<Ipv6Net>) -> usize {
    fib::routes(lab.router())
        .unwrap()
        .iter()
        .filter(|r| r.protocol == "bgp" && routes.contains(&r.dst))
        .count()
}

/// What the bench's floor times: a thousand routes handed to BIRD in one reconfiguration reach
/// the router's kernel, each notified by the route monitor, and all go again.
#[test]
fn frr_installs_and_removes_a_thousand_routes_handed_to_bird_at_once() {
    let lab = Lab::new(1);
    let routes: Vec<Ipv6Net> = (1..=1000)
        .map(|i| Ipv6Net::from(Ipv6Addr::new(0x2001, 0xdb8, 0x101, 0, 0, 0, 0, i)))
        .collect();
    let set: BTreeSet<Ipv6Net> = routes.iter().copied().collect();
    let mon = RouteMonitor::start(lab.router()).unwrap();
    let mut router = lab.frr(router_config());
    let mut bird = lab.bird(1, &[]);
    router.wait_established(lab.addr(1), SETTLE).unwrap();

    let from = mon.cursor();
    bird.configure(lab.bird_config(1, &routes)).unwrap();
    mon.wait_all(from, Change::Added, &routes, SETTLE).unwrap();
    assert_eq!(installed_of(&lab, &set), routes.len());
    let n = &router.neighbors().unwrap()[&lab.addr(1).to_string()];
    assert_eq!(n.ipv6_accepted(), 1000, "{n:?}");

    let from = mon.cursor();
    bird.configure(lab.bird_config(1, &[])).unwrap();
    mon.wait_all(from, Change::Removed, &routes, SETTLE)
        .unwrap();
    assert_eq!(installed_of(&lab, &set), 0);
    router.check_alive().unwrap();
    bird.check_alive().unwrap();
}

/// TCP MD5 (RFC 2385) and BFD, as a router in front of a cluster may require: the speaker with
/// the router's password gets its session, its route and a BFD session up on both ends; the
/// one with another password, started at the same time, gets no session at all.
#[test]
fn a_session_with_the_password_and_bfd_comes_up_and_a_wrong_password_never_does() {
    let lab = Lab::new(2);
    let prefix: Ipv6Net = "2001:db8:100::2/128".parse().unwrap();
    let mut router = lab.frr_with(router_config(), |n| n.password(PASSWORD).bfd());
    let good = lab.start_bird(
        1,
        lab.bird_config_with(1, &[prefix], lab.router_peer().password(PASSWORD).bfd()),
    );
    let mut bad = lab.start_bird(
        2,
        lab.bird_config_with(2, &[prefix], lab.router_peer().password("not-it").bfd()),
    );
    router
        .wait_neighbor(lab.addr(1), "established with BFD up", SETTLE, |n| {
            n.established() && n.bfd_up()
        })
        .unwrap_or_else(|e| {
            panic!(
                "{e}: {:#?}\nbgpd: {}\nbfdd: {}\nBIRD: {}",
                router.neighbors(),
                daemon::tail(&router.dir().join("bgpd.log")),
                daemon::tail(&router.dir().join("bfdd.log")),
                daemon::tail(good.log()),
            )
        });
    let route = fib_route(&lab, prefix, 1);
    assert_eq!(
        route
            .gateways()
            .into_iter()
            .map(|g| lab.speaker_of(g))
            .collect::<Vec<_>>(),
        [Some(1)]
    );
    let router_addr = lab.lan.router_addr().to_string();
    wait::until(
        || "BIRD's BFD session with the router to be up".into(),
        SETTLE,
        || {
            let text = good.request("show bfd sessions")?.text();
            Ok(text
                .lines()
                .any(|l| l.starts_with(&router_addr) && l.split_whitespace().any(|w| w == "Up"))
                .then_some(()))
        },
    )
    .unwrap();

    let refused = &router.neighbors().unwrap()[&lab.addr(2).to_string()];
    assert!(!refused.established(), "{refused:?}");
    assert_eq!(refused.connections_established, 0, "{refused:?}");
    bad.check_alive().unwrap();
    router.check_alive().unwrap();
}

/// Graceful restart (RFC 4724) at work: BIRD crashes (SIGKILL) and comes back in recovery
/// (`bird -R`); the router keeps its route (stale) meanwhile, takes it fresh from the new BIRD,
/// and its kernel never loses it. (Restarted plainly, BIRD's OPEN says no forwarding state was
/// kept: the router drops the stale route at once and installs it again about a second later,
/// once the new BIRD has sent it.)
#[test]
fn a_crashed_bird_restarted_in_recovery_costs_the_routers_fib_nothing() {
    let lab = Lab::new(1);
    let prefix: Ipv6Net = "2001:db8:100::3/128".parse().unwrap();
    let mon = RouteMonitor::start(lab.router()).unwrap();
    let mut router = lab.frr(router_config());
    let mut bird = lab.bird(1, &[prefix]);
    let before = router.wait_established(lab.addr(1), SETTLE).unwrap();
    mon.wait_all(0, Change::Added, &[prefix], SETTLE).unwrap();

    let from = mon.cursor();
    bird.crash_and_restart(lab.lan.host(1).ns(), true).unwrap();
    router
        .wait_neighbor(lab.addr(1), "established again", SETTLE, |n| {
            n.established() && n.connections_established > before.connections_established
        })
        .unwrap();
    let key = prefix.to_string();
    wait::until(
        || format!("{prefix} to be fresh (not stale) in the router's BGP table"),
        SETTLE,
        || {
            let t = router.bgp_ipv6()?;
            Ok(t.paths(&key)
                .iter()
                .any(|p| p.valid && !p.stale)
                .then_some(()))
        },
    )
    .unwrap();
    fib_route(&lab, prefix, 1);
    let changes = mon.events_since(from);
    assert!(
        !changes
            .iter()
            .any(|e| e.dst == prefix && e.change == Change::Removed),
        "the route left the router's FIB: {changes:?}"
    );
    router.check_alive().unwrap();
    bird.check_alive().unwrap();
}
