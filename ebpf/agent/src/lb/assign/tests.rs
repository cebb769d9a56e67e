//! The assignment rules, one table row per case the issue lists (and the ones the rules add).

use super::*;

fn id(s: &str) -> ServiceId {
    let (namespace, name) = s.split_once('/').unwrap();
    ServiceId {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// `default/web`-style Service: TCP 80, eTP Cluster, no request, no key.
fn svc(name: &str) -> LbService {
    LbService {
        id: id(name),
        created: 0,
        labels: BTreeMap::new(),
        request: Ok(None),
        sharing_key: None,
        ports: vec![(Protocol::Tcp, 80)],
        traffic_policy: TrafficPolicy::Cluster,
        selector: BTreeMap::new(),
    }
}

impl LbService {
    fn created(mut self, t: i64) -> Self {
        self.created = t;
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    fn request(mut self, addr: &str) -> Self {
        self.request = Ok(Some(a(addr)));
        self
    }
    fn bad(mut self, b: BadRequest) -> Self {
        self.request = Err(b);
        self
    }
    fn key(mut self, k: &str) -> Self {
        self.sharing_key = Some(k.into());
        self
    }
    fn ports(mut self, p: &[(Protocol, u16)]) -> Self {
        self.ports = p.to_vec();
        self
    }
    fn local(mut self, app: &str) -> Self {
        self.traffic_policy = TrafficPolicy::Local;
        self.selector = BTreeMap::from([("app".into(), app.into())]);
        self
    }
}

/// A pool from CIDRs (`a/n`) and ranges (`a-b`).
fn pool(name: &str, blocks: &[&str]) -> Pool {
    Pool {
        name: name.into(),
        blocks: blocks
            .iter()
            .map(|b| match b.split_once('-') {
                Some((f, l)) => Block::range(a(f), a(l)),
                None => Block::from_cidr(b.parse().unwrap()),
            })
            .collect(),
        namespaces: vec![],
        selector: BTreeMap::new(),
        auto_assign: true,
    }
}

impl Pool {
    fn namespaces(mut self, ns: &[&str]) -> Self {
        self.namespaces = ns.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    fn select(mut self, k: &str, v: &str) -> Self {
        self.selector.insert(k.into(), v.into());
        self
    }
    fn manual(mut self) -> Self {
        self.auto_assign = false;
        self
    }
}

/// An outcome as a table cell: the address, or `Code: message`.
fn cell(o: &Outcome) -> String {
    match o {
        Outcome::Assigned(a) => a.to_string(),
        Outcome::Pending(r) => format!("{}: {r}", r.code()),
    }
}

struct Case {
    name: &'static str,
    pools: Vec<Pool>,
    services: Vec<LbService>,
    previous: &'static [(&'static str, &'static str)],
    /// Service -> address, or a prefix of `Code: message`.
    want: &'static [(&'static str, &'static str)],
}

fn run(c: &Case) -> BTreeMap<ServiceId, Outcome> {
    let previous = c.previous.iter().map(|(s, x)| (id(s), a(x))).collect();
    assign(&c.services, &c.pools, &previous)
}

fn check(c: &Case) {
    let got = run(c);
    assert_eq!(
        got.len(),
        c.services.len(),
        "{}: every Service gets an outcome",
        c.name
    );
    for (s, want) in c.want {
        let o = got
            .get(&id(s))
            .unwrap_or_else(|| panic!("{}: no outcome for {s}", c.name));
        let text = cell(o);
        assert!(
            text.starts_with(want),
            "{}: {s}: want {want:?}, got {text:?}",
            c.name
        );
    }
    // Never a duplicate, unless every holder shares by key.
    for (addr, ids) in holders(&got) {
        let holders: Vec<&LbService> = c.services.iter().filter(|s| ids.contains(&s.id)).collect();
        for (i, x) in holders.iter().enumerate() {
            for y in &holders[i + 1..] {
                assert_eq!(
                    shareable(x, y),
                    Ok(()),
                    "{}: {addr} given to {} and {}",
                    c.name,
                    x.id,
                    y.id
                );
            }
        }
    }
}

fn cases() -> Vec<Case> {
    use Protocol::{Tcp, Udp};
    vec![
        Case {
            name: "lowest address of the first pool, the /64's anycast address skipped",
            pools: vec![
                pool("a", &["2001:db8::/126"]),
                pool("b", &["2001:db8:1::/120"]),
            ],
            services: vec![svc("x/one"), svc("x/two"), svc("x/three"), svc("x/four")],
            previous: &[],
            // Sorted by name at equal age: four, one, three, two.
            want: &[
                ("x/four", "2001:db8::1"),
                ("x/one", "2001:db8::2"),
                ("x/three", "2001:db8::3"),
                ("x/two", "2001:db8:1::1"),
            ],
        },
        Case {
            name: "the CIDR's own network address is skipped too",
            pools: vec![pool("p", &["2001:db8::100/126"])],
            services: vec![svc("x/a")],
            previous: &[],
            want: &[("x/a", "2001:db8::101")],
        },
        Case {
            name: "a range starts where it says, but never at a /64 boundary",
            pools: vec![pool("p", &["2001:db8:0:1::-2001:db8:0:1::2"])],
            services: vec![svc("x/a"), svc("x/b"), svc("x/c")],
            previous: &[],
            want: &[
                ("x/a", "2001:db8:0:1::1"),
                ("x/b", "2001:db8:0:1::2"),
                ("x/c", "PoolExhausted: no free address left in pool p"),
            ],
        },
        Case {
            name: "older Services first",
            pools: vec![pool("p", &["2001:db8::/126"])],
            services: vec![svc("x/a").created(20), svc("x/b").created(10)],
            previous: &[],
            want: &[("x/b", "2001:db8::1"), ("x/a", "2001:db8::2")],
        },
        Case {
            name: "exhaustion leaves the rest pending, never a duplicate",
            pools: vec![pool("p", &["2001:db8::1-2001:db8::2"])],
            services: vec![svc("x/a"), svc("x/b"), svc("x/c")],
            previous: &[],
            want: &[
                ("x/a", "2001:db8::1"),
                ("x/b", "2001:db8::2"),
                ("x/c", "PoolExhausted: no free address left in pool p"),
            ],
        },
        Case {
            name: "namespace and label limits choose the pool",
            pools: vec![
                pool("team", &["2001:db8:1::/120"]).namespaces(&["team"]),
                pool("web", &["2001:db8:2::/120"]).select("tier", "web"),
                pool("rest", &["2001:db8:3::/120"]),
            ],
            services: vec![
                svc("team/a"),
                svc("x/b").label("tier", "web"),
                svc("x/c").label("tier", "db"),
            ],
            previous: &[],
            want: &[
                ("team/a", "2001:db8:1::1"),
                ("x/b", "2001:db8:2::1"),
                ("x/c", "2001:db8:3::1"),
            ],
        },
        Case {
            name: "no pool serves the Service",
            pools: vec![
                pool("team", &["2001:db8:1::/120"]).namespaces(&["team"]),
                pool("web", &["2001:db8:2::/120"]).select("tier", "web"),
            ],
            services: vec![svc("x/a")],
            previous: &[],
            want: &[(
                "x/a",
                "NoEligiblePool: no pool serves this Service: team serves namespaces team only; \
                 web serves Services labelled tier=web only",
            )],
        },
        Case {
            name: "no pool at all",
            pools: vec![],
            services: vec![svc("x/a")],
            previous: &[],
            want: &[("x/a", "NoEligiblePool: no pool is configured")],
        },
        Case {
            name: "autoAssign false: only requested addresses",
            pools: vec![pool("manual", &["2001:db8::/120"]).manual()],
            services: vec![svc("x/a"), svc("x/b").request("2001:db8::7")],
            previous: &[],
            want: &[
                (
                    "x/a",
                    "AutoAssignDisabled: pool manual only assigns requested",
                ),
                ("x/b", "2001:db8::7"),
            ],
        },
        Case {
            name: "a manual pool is skipped for automatic assignment",
            pools: vec![
                pool("manual", &["2001:db8:1::/120"]).manual(),
                pool("auto", &["2001:db8:2::/120"]),
            ],
            services: vec![svc("x/a")],
            previous: &[],
            want: &[("x/a", "2001:db8:2::1")],
        },
        Case {
            name: "requested address honoured, wherever it is in the pool",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![svc("x/a").request("2001:db8::80"), svc("x/b")],
            previous: &[],
            want: &[("x/a", "2001:db8::80"), ("x/b", "2001:db8::1")],
        },
        Case {
            name: "requested address outside every pool",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![svc("x/a").request("2001:db8:9::1")],
            previous: &[],
            want: &[(
                "x/a",
                "AddressNotInPool: requested 2001:db8:9::1 is in no pool",
            )],
        },
        Case {
            name: "requested address in a pool that does not serve the namespace",
            pools: vec![pool("team", &["2001:db8::/120"]).namespaces(&["team"])],
            services: vec![svc("x/a").request("2001:db8::5")],
            previous: &[],
            want: &[(
                "x/a",
                "PoolNotEligible: requested 2001:db8::5 is in pool team, which serves namespaces team only",
            )],
        },
        Case {
            name: "requested subnet-router anycast address",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![svc("x/a").request("2001:db8::")],
            previous: &[],
            want: &[(
                "x/a",
                "AddressReserved: requested 2001:db8:: is a subnet-router anycast address of pool p",
            )],
        },
        Case {
            name: "a requested address held by an older Service: conflict, pending",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![
                svc("x/old").created(1).request("2001:db8::9"),
                svc("x/new").created(2).request("2001:db8::9"),
            ],
            previous: &[],
            want: &[
                ("x/old", "2001:db8::9"),
                (
                    "x/new",
                    "AddressInUse: requested 2001:db8::9 is assigned to x/old (no common sharing key)",
                ),
            ],
        },
        Case {
            name: "a requested address is not taken from a Service that holds it already",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![
                svc("x/old").created(1).request("2001:db8::1"),
                svc("x/holder").created(2),
            ],
            previous: &[("x/holder", "2001:db8::1")],
            want: &[
                ("x/holder", "2001:db8::1"),
                (
                    "x/old",
                    "AddressInUse: requested 2001:db8::1 is assigned to x/holder",
                ),
            ],
        },
        Case {
            name: "automatic assignment skips requested addresses",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![
                svc("x/a").created(1),
                svc("x/b").created(2).request("2001:db8::1"),
            ],
            previous: &[],
            want: &[("x/b", "2001:db8::1"), ("x/a", "2001:db8::2")],
        },
        Case {
            name: "bad requests",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![
                svc("x/v4").bad(BadRequest::Ipv4 {
                    what: "sixlane.io/load-balancer-ips",
                    value: "192.0.2.1".into(),
                }),
                svc("x/two").bad(BadRequest::Several(vec![
                    a("2001:db8::1"),
                    a("2001:db8::2"),
                ])),
                svc("x/junk").bad(BadRequest::Unparsable {
                    what: "spec.loadBalancerIP",
                    value: "web".into(),
                }),
                svc("x/mismatch").bad(BadRequest::Mismatch {
                    annotation: a("2001:db8::1"),
                    spec: a("2001:db8::2"),
                }),
            ],
            previous: &[],
            want: &[
                (
                    "x/v4",
                    "InvalidRequest: sixlane.io/load-balancer-ips: 192.0.2.1 is an IPv4 address",
                ),
                (
                    "x/two",
                    "InvalidRequest: 2 addresses requested (2001:db8::1, 2001:db8::2)",
                ),
                (
                    "x/junk",
                    "InvalidRequest: spec.loadBalancerIP: \"web\" is not an IP address",
                ),
                (
                    "x/mismatch",
                    "InvalidRequest: the annotation requests 2001:db8::1 but spec.loadBalancerIP 2001:db8::2",
                ),
            ],
        },
        Case {
            name: "a sharing key without a port clash shares one address",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![
                svc("x/dns-tcp").key("dns").ports(&[(Tcp, 53)]),
                svc("x/dns-udp").key("dns").ports(&[(Udp, 53)]),
                svc("x/other"),
            ],
            previous: &[],
            want: &[
                ("x/dns-tcp", "2001:db8::1"),
                ("x/dns-udp", "2001:db8::1"),
                ("x/other", "2001:db8::2"),
            ],
        },
        Case {
            name: "a sharing key with a port clash: another address",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![
                svc("x/a").key("k").ports(&[(Tcp, 80), (Tcp, 443)]),
                svc("x/b").key("k").ports(&[(Tcp, 443)]),
            ],
            previous: &[],
            want: &[("x/a", "2001:db8::1"), ("x/b", "2001:db8::2")],
        },
        Case {
            name: "a sharing key with a port clash on a requested address: pending",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![
                svc("x/a").key("k").request("2001:db8::5"),
                svc("x/b").key("k").request("2001:db8::5"),
            ],
            previous: &[],
            want: &[
                ("x/a", "2001:db8::5"),
                (
                    "x/b",
                    "AddressInUse: requested 2001:db8::5 is assigned to x/a (both use TCP port 80)",
                ),
            ],
        },
        Case {
            name: "requested shared address",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![
                svc("x/a").key("k").request("2001:db8::5"),
                svc("x/b")
                    .key("k")
                    .ports(&[(Tcp, 81)])
                    .request("2001:db8::5"),
            ],
            previous: &[],
            want: &[("x/a", "2001:db8::5"), ("x/b", "2001:db8::5")],
        },
        Case {
            name: "the same key in another namespace shares nothing",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![svc("x/a").key("k"), svc("y/b").key("k").ports(&[(Tcp, 81)])],
            previous: &[],
            want: &[("x/a", "2001:db8::1"), ("y/b", "2001:db8::2")],
        },
        Case {
            name: "eTP Local shares only with the same pods; Cluster never with Local",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![
                svc("x/a").key("k").local("web"),
                svc("x/b").key("k").local("web").ports(&[(Tcp, 81)]),
                svc("x/c").key("k").local("db").ports(&[(Tcp, 82)]),
                svc("x/d").key("k").ports(&[(Tcp, 83)]),
            ],
            previous: &[],
            want: &[
                ("x/a", "2001:db8::1"),
                ("x/b", "2001:db8::1"),
                ("x/c", "2001:db8::2"),
                ("x/d", "2001:db8::3"),
            ],
        },
        Case {
            name: "stable: a kept address is not moved to a lower free one",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![svc("x/a"), svc("x/b")],
            previous: &[("x/b", "2001:db8::9")],
            want: &[("x/b", "2001:db8::9"), ("x/a", "2001:db8::1")],
        },
        Case {
            name: "a kept address outside the pools now is replaced",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![svc("x/a")],
            previous: &[("x/a", "2001:db8:9::1")],
            want: &[("x/a", "2001:db8::1")],
        },
        Case {
            name: "a kept address that no longer matches the request is replaced by the request",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![svc("x/a").request("2001:db8::20")],
            previous: &[("x/a", "2001:db8::10")],
            want: &[("x/a", "2001:db8::20")],
        },
        Case {
            name: "two Services claiming one address in status: the older keeps it",
            pools: vec![pool("p", &["2001:db8::/120"])],
            services: vec![svc("x/new").created(5), svc("x/old").created(1)],
            previous: &[("x/new", "2001:db8::7"), ("x/old", "2001:db8::7")],
            want: &[("x/old", "2001:db8::7"), ("x/new", "2001:db8::1")],
        },
        Case {
            name: "a kept address in a manual pool stays",
            pools: vec![pool("manual", &["2001:db8::/120"]).manual()],
            services: vec![svc("x/a")],
            previous: &[("x/a", "2001:db8::3")],
            want: &[("x/a", "2001:db8::3")],
        },
    ]
}

#[test]
fn assignment_table() {
    for c in cases() {
        check(&c);
    }
}

#[test]
fn the_order_services_come_in_does_not_matter() {
    for c in cases() {
        let want = run(&c);
        let mut rev = c;
        rev.services.reverse();
        assert_eq!(run(&rev), want, "{}", rev.name);
    }
}

#[test]
fn release_on_delete_frees_the_address_for_the_next_service() {
    let pools = vec![pool("p", &["2001:db8::1-2001:db8::1"])];
    let first = assign(&[svc("x/a")], &pools, &BTreeMap::new());
    assert_eq!(first[&id("x/a")], Outcome::Assigned(a("2001:db8::1")));
    let previous = BTreeMap::from([(id("x/a"), a("2001:db8::1"))]);
    // x/a still there: x/b waits.
    let both = assign(&[svc("x/a"), svc("x/b")], &pools, &previous);
    assert!(matches!(
        both[&id("x/b")],
        Outcome::Pending(Reason::Exhausted(_))
    ));
    // x/a gone (its status with it, or not: only the Services given count).
    let after = assign(&[svc("x/b")], &pools, &previous);
    assert_eq!(after[&id("x/b")], Outcome::Assigned(a("2001:db8::1")));
    assert!(!after.contains_key(&id("x/a")));
}

#[test]
fn block_sizes_exclude_reserved_addresses() {
    let cidr = |s: &str| Block::from_cidr(s.parse().unwrap());
    assert_eq!(cidr("2001:db8::/120").size(), 255);
    assert_eq!(cidr("2001:db8::100/120").size(), 255);
    assert_eq!(cidr("2001:db8::/64").size(), (1u128 << 64) - 1);
    assert_eq!(cidr("2001:db8::/63").size(), (1u128 << 65) - 2);
    assert_eq!(cidr("2001:db8::5/128").size(), 1);
    assert_eq!(cidr("2001:db8::/128").size(), 0);
    assert_eq!(cidr("2001:db8::4/127").size(), 2);
    assert_eq!(Block::range(a("2001:db8::"), a("2001:db8::f")).size(), 15);
    assert_eq!(Block::range(a("2001:db8::5"), a("2001:db8::6")).size(), 2);
    assert_eq!(
        Block::range(a("2001:db8:0:0:ffff:ffff:ffff:fffe"), a("2001:db8:0:1::1")).size(),
        3
    );
}

#[test]
fn a_thousand_services_fill_a_pool_in_order() {
    let pools = vec![pool("p", &["2001:db8::/112"])];
    let services: Vec<LbService> = (0..1000).map(|i| svc(&format!("x/s{i:04}"))).collect();
    let out = assign(&services, &pools, &BTreeMap::new());
    for (i, s) in services.iter().enumerate() {
        assert_eq!(
            out[&s.id],
            Outcome::Assigned(Ipv6Addr::from(u128::from(a("2001:db8::")) + i as u128 + 1))
        );
    }
}

#[test]
fn a_block_at_the_top_of_the_address_space_does_not_overflow() {
    let top = Block::range(
        a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"),
        Ipv6Addr::from(u128::MAX),
    );
    assert_eq!(top.size(), 2);
    let mut p = pool("top", &[]);
    p.blocks = vec![top];
    let out = assign(
        &[svc("x/a"), svc("x/b"), svc("x/c")],
        &[p],
        &BTreeMap::new(),
    );
    assert_eq!(
        out[&id("x/a")],
        Outcome::Assigned(a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"))
    );
    assert_eq!(
        out[&id("x/b")],
        Outcome::Assigned(Ipv6Addr::from(u128::MAX))
    );
    assert!(matches!(
        out[&id("x/c")],
        Outcome::Pending(Reason::Exhausted(_))
    ));
}
