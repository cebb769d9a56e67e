//! Unit tests of the service programmer against in-memory maps: entries per Service and
//! policy, minimal writes, ordering (no intermediate state where a frontend points at missing
//! slots or backends), restart read-back, conflicts, conntrack cleanup.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    net::Ipv6Addr,
    rc::Rc,
    time::Duration,
};

use sixlane_common::services::{
    Backend, CtEntry, CtKey, RevNat, Service, Slot, SlotKey, SvcKey, backend_flags, group, scope,
    svc_flags,
};

use super::{
    plan::stable_slots,
    store::{MapId, MemoryMaps, bytes, from_bytes},
    *,
};
use crate::model::{
    self, Backend as B, DesiredState, NodeState, Protocol, ServiceId, ServicePort, TrafficPolicy,
};

const NODE: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn backend(addr: &str, local: bool) -> B {
    B {
        addr: a(addr),
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        local,
    }
}

fn service(name: &str, vip: &str, backends: Vec<B>) -> model::Service {
    model::Service {
        id: ServiceId {
            namespace: "default".into(),
            name: name.into(),
        },
        cluster_ips: vec![a(vip)],
        external_ips: vec![],
        load_balancer_ips: vec![],
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
            backends,
        }],
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        session_affinity: None,
        health_check_node_port: None,
    }
}

fn state(services: Vec<model::Service>) -> DesiredState {
    DesiredState {
        node: NodeState {
            name: "n1".into(),
            addresses: vec![NODE],
            cluster_ips_from_outside: false,
        },
        services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
    }
}

fn programmer() -> Programmer<MemoryMaps> {
    Programmer::with_store(MemoryMaps::default(), 1024, 1024).unwrap()
}

fn svc_entries(p: &Programmer<MemoryMaps>) -> BTreeMap<SvcKey, Service> {
    p.store()
        .typed::<SvcKey, Service>(MapId::Svc)
        .into_iter()
        .collect()
}

fn key(addr: Ipv6Addr, port: u16, proto: u8, sc: u8) -> SvcKey {
    SvcKey {
        addr: addr.octets(),
        port: port.to_be(),
        proto,
        scope: sc,
    }
}

/// The backends a frontend resolves to through its slots.
fn resolve(maps: &BTreeMap<MapId, BTreeMap<Vec<u8>, Vec<u8>>>, s: &Service) -> Vec<Backend> {
    (0..u32::from(s.count))
        .map(|slot| {
            let sk = SlotKey {
                group: s.group,
                slot,
            };
            let slot: Slot = from_bytes(
                maps[&MapId::Slots]
                    .get(bytes(&sk))
                    .unwrap_or_else(|| panic!("slot {sk:?} missing")),
            );
            from_bytes(
                maps[&MapId::Backends]
                    .get(bytes(&slot.backend))
                    .unwrap_or_else(|| panic!("backend {} missing", slot.backend)),
            )
        })
        .collect()
}

/// The invariant a packet relies on: every frontend's active slots exist and name live
/// backends of its own service port, and its frontend record exists.
fn consistent(maps: &BTreeMap<MapId, BTreeMap<Vec<u8>, Vec<u8>>>) -> Result<(), String> {
    for (k, v) in &maps[&MapId::Svc] {
        let k: SvcKey = from_bytes(k);
        let s: Service = from_bytes(v);
        if s.flags & svc_flags::ECHO != 0 {
            continue;
        }
        for slot in 0..u32::from(s.count) {
            let sk = SlotKey {
                group: s.group,
                slot,
            };
            let Some(sl) = maps[&MapId::Slots].get(bytes(&sk)) else {
                return Err(format!("{k:?}: slot {slot} missing"));
            };
            let sl: Slot = from_bytes(sl);
            let Some(b) = maps[&MapId::Backends].get(bytes(&sl.backend)) else {
                return Err(format!("{k:?}: backend {} missing", sl.backend));
            };
            let b: Backend = from_bytes(b);
            if b.flags & backend_flags::ALIVE == 0 || b.svc_port != s.svc_port {
                return Err(format!("{k:?}: backend {} not usable: {b:?}", sl.backend));
            }
        }
        if !maps[&MapId::RevNat].contains_key(bytes(&s.rev_nat)) {
            return Err(format!("{k:?}: frontend record {} missing", s.rev_nat));
        }
    }
    Ok(())
}

#[test]
fn cluster_ip_entries_and_idempotence() {
    let mut p = programmer();
    let st = state(vec![service(
        "web",
        "fd00:96::1",
        vec![backend("fd00:10::a", true), backend("fd00:20::b", false)],
    )]);
    let r = p.apply(&st).unwrap();
    assert_eq!((r.services, r.changed, r.deletes), (1, 1, 0));
    let svc = svc_entries(&p);
    let fe = svc[&key(a("fd00:96::1"), 80, 6, scope::INTERNAL)];
    assert_eq!(fe.count, 2);
    assert_eq!(fe.flags, 0);
    assert_eq!(fe.group, group(fe.svc_port, false));
    let mut got: Vec<Ipv6Addr> = resolve(&p.store().maps, &fe)
        .iter()
        .map(|b| Ipv6Addr::from(b.addr))
        .collect();
    got.sort();
    assert_eq!(got, vec![a("fd00:10::a"), a("fd00:20::b")]);
    // The ClusterIP answers echo.
    let echo = svc[&key(a("fd00:96::1"), 0, 58, scope::INTERNAL)];
    assert_eq!(echo.flags, svc_flags::ECHO);
    assert_eq!(svc.len(), 2);
    // The config carries the node address for SNAT.
    let cfg = p
        .store()
        .typed::<u32, sixlane_common::services::Config>(MapId::Config);
    assert_eq!(cfg[0].1.snat_addr, NODE.octets());
    assert_eq!(cfg[0].1.flags, 0, "pod fast path on by default");

    let log_len = p.store().log.len();
    let r = p.apply(&st).unwrap();
    assert_eq!((r.changed, r.writes, r.deletes), (0, 0, 0));
    assert_eq!(p.store().log.len(), log_len, "no map call at all");

    // `services.podFastPath: false` reaches the datapath with the next apply.
    p.set_pod_fast_path(false);
    p.apply(&st).unwrap();
    let cfg = p
        .store()
        .typed::<u32, sixlane_common::services::Config>(MapId::Config);
    assert_eq!(
        cfg[0].1.flags,
        sixlane_common::services::config_flags::NO_POD_FAST_PATH
    );
    assert_eq!(cfg[0].1.snat_addr, NODE.octets());
}

#[test]
fn node_ports_external_ips_and_traffic_policies() {
    let mut p = programmer();
    let mut s = service(
        "np",
        "fd00:96::2",
        vec![backend("fd00:10::a", true), backend("fd00:20::b", false)],
    );
    s.ports[0].node_port = Some(30080);
    s.external_ips = vec![a("fd00:e::1")];
    s.load_balancer_ips = vec![a("fd00:1b::1")];
    s.external_traffic_policy = TrafficPolicy::Local;
    s.internal_traffic_policy = TrafficPolicy::Local;
    s.session_affinity = Some(Duration::from_secs(30));
    p.apply(&state(vec![s.clone()])).unwrap();
    let svc = svc_entries(&p);

    let cip = svc[&key(a("fd00:96::2"), 80, 6, scope::INTERNAL)];
    assert_eq!(cip.count, 1, "ITP Local: the local backend only");
    assert_eq!(cip.flags, svc_flags::LOCAL_ONLY | svc_flags::AFFINITY);
    assert_eq!(cip.affinity_secs, 30);
    assert_eq!(
        Ipv6Addr::from(resolve(&p.store().maps, &cip)[0].addr),
        a("fd00:10::a")
    );
    for (addr, port, extra) in [
        (NODE, 30080, svc_flags::NODE_PORT),
        (a("fd00:e::1"), 80, 0),
        (a("fd00:1b::1"), 80, 0),
    ] {
        let int = svc[&key(addr, port, 6, scope::INTERNAL)];
        assert_eq!(int.count, 2, "{addr}: pods use every endpoint");
        assert_eq!(int.flags, svc_flags::AFFINITY | extra);
        let ext = svc[&key(addr, port, 6, scope::EXTERNAL)];
        assert_eq!(ext.count, 1, "{addr}: ETP Local");
        assert_eq!(
            ext.flags,
            svc_flags::AFFINITY | svc_flags::LOCAL_ONLY | extra,
            "{addr}: no SNAT with ETP Local"
        );
        assert_eq!(int.rev_nat, ext.rev_nat, "one frontend record per frontend");
    }
    // No NodePort echo entry (the node answers itself), but external and LB addresses do.
    assert!(!svc.contains_key(&key(NODE, 0, 58, scope::INTERNAL)));
    assert!(svc.contains_key(&key(a("fd00:e::1"), 0, 58, scope::EXTERNAL)));

    // ETP Cluster: external clients may reach remote backends through SNAT.
    s.external_traffic_policy = TrafficPolicy::Cluster;
    let r = p.apply(&state(vec![s.clone()])).unwrap();
    assert_eq!(r.changed, 1);
    let ext = svc_entries(&p)[&key(NODE, 30080, 6, scope::EXTERNAL)];
    assert_eq!(ext.count, 2);
    assert_eq!(
        ext.flags,
        svc_flags::AFFINITY | svc_flags::NODE_PORT | svc_flags::SNAT_REMOTE
    );

    // No local endpoint left: Local sets drop instead of rejecting; Cluster still serves.
    s.ports[0].backends = vec![backend("fd00:20::b", false)];
    p.apply(&state(vec![s.clone()])).unwrap();
    let cip = svc_entries(&p)[&key(a("fd00:96::2"), 80, 6, scope::INTERNAL)];
    assert_eq!(cip.count, 0);
    assert_ne!(cip.flags & svc_flags::DROP_EMPTY, 0);
    // No endpoint at all: reject everywhere (no DROP_EMPTY).
    s.ports[0].backends.clear();
    p.apply(&state(vec![s])).unwrap();
    for (k, v) in svc_entries(&p) {
        if v.flags & svc_flags::ECHO == 0 {
            assert_eq!(v.count, 0, "{k:?}");
            assert_eq!(v.flags & svc_flags::DROP_EMPTY, 0, "{k:?}");
        }
    }
    consistent(&p.store().maps).unwrap();
}

#[test]
fn cluster_ips_answer_outside_clients_when_their_ranges_are_announced() {
    let mut p = programmer();
    let mut s = service(
        "c",
        "fd00:96::4",
        vec![backend("fd00:10::a", true), backend("fd00:20::b", false)],
    );
    let outside = key(a("fd00:96::4"), 80, 6, scope::EXTERNAL);
    p.apply(&state(vec![s.clone()])).unwrap();
    assert!(
        !svc_entries(&p).contains_key(&outside),
        "not announced: pods and node processes only"
    );
    let announced = |s: &model::Service| {
        let mut st = state(vec![s.clone()]);
        st.node.cluster_ips_from_outside = true;
        st
    };
    p.apply(&announced(&s)).unwrap();
    let ext = svc_entries(&p)[&outside];
    assert_eq!(ext.count, 2, "every endpoint");
    assert_eq!(
        ext.flags,
        svc_flags::SNAT_REMOTE,
        "replies come back through this node"
    );
    let int = svc_entries(&p)[&key(a("fd00:96::4"), 80, 6, scope::INTERNAL)];
    assert_eq!((int.count, int.flags, int.rev_nat), (2, 0, ext.rev_nat));

    // internalTrafficPolicy: Local holds from outside too: local endpoints, nothing to SNAT.
    s.internal_traffic_policy = TrafficPolicy::Local;
    p.apply(&announced(&s)).unwrap();
    let ext = svc_entries(&p)[&outside];
    assert_eq!((ext.count, ext.flags), (1, svc_flags::LOCAL_ONLY));
    consistent(&p.store().maps).unwrap();
}

#[test]
fn terminating_endpoints_only_when_none_is_ready() {
    let mut p = programmer();
    let mut term = backend("fd00:10::7", true);
    term.ready = false;
    term.terminating = true;
    let mut gone = backend("fd00:10::8", true);
    gone.ready = false;
    gone.serving = false;
    gone.terminating = true;
    let mut s = service(
        "t",
        "fd00:96::3",
        vec![term.clone(), gone.clone(), backend("fd00:10::9", true)],
    );
    p.apply(&state(vec![s.clone()])).unwrap();
    let fe = svc_entries(&p)[&key(a("fd00:96::3"), 80, 6, scope::INTERNAL)];
    assert_eq!(fe.count, 1);
    assert_eq!(fe.flags & svc_flags::FALLBACK, 0);
    assert_eq!(
        Ipv6Addr::from(resolve(&p.store().maps, &fe)[0].addr),
        a("fd00:10::9")
    );

    s.ports[0].backends = vec![term, gone];
    p.apply(&state(vec![s])).unwrap();
    let fe = svc_entries(&p)[&key(a("fd00:96::3"), 80, 6, scope::INTERNAL)];
    assert_eq!(
        fe.count, 1,
        "the serving terminating endpoint, not the stopped one"
    );
    assert_ne!(fe.flags & svc_flags::FALLBACK, 0);
    let b = resolve(&p.store().maps, &fe)[0];
    assert_eq!(Ipv6Addr::from(b.addr), a("fd00:10::7"));
    assert_eq!(
        b.flags,
        backend_flags::ALIVE
            | backend_flags::SERVING
            | backend_flags::TERMINATING
            | backend_flags::LOCAL
    );
}

#[test]
fn slots_keep_their_positions() {
    assert_eq!(stable_slots(None, &[3, 1, 2]), vec![3, 1, 2]);
    assert_eq!(
        stable_slots(Some(&vec![1, 2, 3, 4]), &[1, 3, 4]),
        vec![1, 4, 3]
    );
    assert_eq!(stable_slots(Some(&vec![1, 2]), &[2, 5, 1]), vec![1, 2, 5]);
    assert_eq!(stable_slots(Some(&vec![1, 2]), &[]), Vec::<u32>::new());
}

/// Deterministic churn: every intermediate map state, between any two map calls, resolves
/// every frontend to live backends.
#[test]
fn no_half_written_service_under_churn() {
    let violations = Rc::new(RefCell::new(Vec::new()));
    let v = violations.clone();
    let maps = MemoryMaps {
        check: Some(Box::new(move |m| {
            if let Err(e) = consistent(m) {
                v.borrow_mut().push(e);
            }
        })),
        ..Default::default()
    };
    let mut p = Programmer::with_store(maps, 4096, 4096).unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut services: BTreeMap<u64, model::Service> = BTreeMap::new();
    for _ in 0..300 {
        let which = next(12);
        match next(5) {
            0 => {
                services.remove(&which);
            }
            _ => {
                let n = next(6);
                let bs = (0..n)
                    .map(|i| {
                        let mut b = backend(&format!("fd00:10::{:x}", next(16) + 1), i % 2 == 0);
                        b.ready = next(4) != 0;
                        b.terminating = !b.ready;
                        b
                    })
                    .collect();
                let mut s = service(&format!("s{which}"), &format!("fd00:96::{which:x}"), bs);
                if next(3) == 0 {
                    s.ports[0].node_port = Some(30000 + which as u16);
                    s.external_traffic_policy = TrafficPolicy::Local;
                }
                if next(3) == 0 {
                    s.internal_traffic_policy = TrafficPolicy::Local;
                }
                services.insert(which, s);
            }
        }
        p.apply(&state(services.values().cloned().collect()))
            .unwrap();
    }
    assert!(
        violations.borrow().is_empty(),
        "{} violations, first: {:?}",
        violations.borrow().len(),
        violations.borrow().first()
    );
    // Removing everything leaves nothing behind.
    p.apply(&state(vec![])).unwrap();
    for m in [
        MapId::Svc,
        MapId::Slots,
        MapId::Backends,
        MapId::RevNat,
        MapId::Info,
    ] {
        assert!(p.store().maps[&m].is_empty(), "{m:?} not empty");
    }
}

/// `apply_changed` with the right change list ends where `apply` does, write for write.
#[test]
fn apply_changed_matches_apply() {
    let mut full = programmer();
    let mut delta = programmer();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut prev = state(vec![]);
    let mut services: BTreeMap<u64, model::Service> = BTreeMap::new();
    for round in 0..100 {
        let which = next(8);
        if next(4) == 0 {
            services.remove(&which);
        } else {
            let bs = (0..next(4))
                .map(|_| backend(&format!("fd00:10::{:x}", next(8) + 1), next(2) == 0))
                .collect();
            services.insert(
                which,
                service(&format!("s{which}"), &format!("fd00:96::{which:x}"), bs),
            );
        }
        let st = state(services.values().cloned().collect());
        let a = full.apply(&st).unwrap();
        let b = if round == 0 {
            delta.apply(&st).unwrap()
        } else {
            delta
                .apply_changed(&st, &cli::changed_services(&prev, &st))
                .unwrap()
        };
        assert_eq!(
            (a.writes, a.deletes),
            (b.writes, b.deletes),
            "round {round}"
        );
        assert_eq!(full.store().maps, delta.store().maps, "round {round}");
        prev = st;
    }
}

#[test]
fn state_file_json_round_trips() {
    let mut s = service("web", "fd00:96::1", vec![backend("fd00:10::a", true)]);
    s.session_affinity = Some(Duration::from_secs(30));
    let file = cli::StateFile {
        node: state(vec![]).node,
        services: vec![s.clone()],
    };
    let text = serde_json::to_string(&file).unwrap();
    let back: cli::StateFile = serde_json::from_str(&text).unwrap();
    let d = back.into_desired();
    assert_eq!(d.services.values().next(), Some(&s));
}

#[test]
fn removal_goes_frontends_first() {
    let mut p = programmer();
    p.apply(&state(vec![service(
        "web",
        "fd00:96::1",
        vec![backend("fd00:10::a", true)],
    )]))
    .unwrap();
    let before = p.store().log.len();
    p.apply(&state(vec![])).unwrap();
    let order: Vec<MapId> = p.store().log[before..].iter().map(|(m, _, _)| *m).collect();
    assert_eq!(
        order,
        vec![
            MapId::Svc,
            MapId::Slots,
            MapId::Backends,
            MapId::RevNat,
            MapId::Info
        ]
    );
}

#[test]
fn restart_reads_the_maps_back_and_rewrites_nothing() {
    let st = state(vec![
        service("a", "fd00:96::1", vec![backend("fd00:10::a", true)]),
        service(
            "b",
            "fd00:96::2",
            vec![backend("fd00:10::b", true), backend("fd00:20::b", false)],
        ),
    ]);
    let mut p = programmer();
    p.apply(&st).unwrap();
    let before = p.store().maps.clone();
    let maps = MemoryMaps {
        maps: before.clone(),
        ..Default::default()
    };
    let mut p2 = Programmer::with_store(maps, 1024, 1024).unwrap();
    let r = p2.apply(&st).unwrap();
    assert_eq!(r.changed, 2, "unknown specs are recomputed");
    assert_eq!((r.writes, r.deletes), (0, 0), "{r:?}");
    assert_eq!(p2.store().maps, before);

    // Ids stay stable across the restart: a new service gets fresh ids.
    let mut st2 = st.clone();
    let c = service("c", "fd00:96::3", vec![backend("fd00:10::c", true)]);
    st2.services.insert(c.id.clone(), c);
    p2.apply(&st2).unwrap();
    consistent(&p2.store().maps).unwrap();
    let ids: Vec<u32> = p2
        .store()
        .typed::<u32, Backend>(MapId::Backends)
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(ids.len(), 4);
}

#[test]
fn orphan_entries_are_removed() {
    let mut maps = MemoryMaps::default();
    let k = key(a("fd00:96::9"), 80, 6, scope::INTERNAL);
    let v = Service {
        count: 0,
        svc_port: 77,
        rev_nat: 5,
        ..Default::default()
    };
    maps.maps
        .get_mut(&MapId::Svc)
        .unwrap()
        .insert(bytes(&k).to_vec(), bytes(&v).to_vec());
    let r = RevNat {
        addr: a("fd00:96::9").octets(),
        port: 80u16.to_be(),
        proto: 6,
        kind: 1,
        svc_port: 77,
    };
    maps.maps
        .get_mut(&MapId::RevNat)
        .unwrap()
        .insert(bytes(&5u32).to_vec(), bytes(&r).to_vec());
    let mut p = Programmer::with_store(maps, 1024, 1024).unwrap();
    p.apply(&state(vec![])).unwrap();
    assert!(p.store().maps[&MapId::Svc].is_empty());
    assert!(p.store().maps[&MapId::RevNat].is_empty());
}

#[test]
fn frontend_conflicts_are_reported_and_resolved_later() {
    let mut p = programmer();
    let one = service("one", "fd00:96::1", vec![backend("fd00:10::a", true)]);
    let two = service("two", "fd00:96::1", vec![backend("fd00:10::b", true)]);
    let r = p.apply(&state(vec![one.clone(), two.clone()])).unwrap();
    assert!(!r.skipped.is_empty(), "{r:?}");
    let fe = svc_entries(&p)[&key(a("fd00:96::1"), 80, 6, scope::INTERNAL)];
    assert_eq!(
        Ipv6Addr::from(resolve(&p.store().maps, &fe)[0].addr),
        a("fd00:10::a"),
        "the first Service keeps the frontend"
    );
    // The owner goes away: the other Service gets the frontend on the next apply.
    let r = p.apply(&state(vec![two])).unwrap();
    assert!(r.skipped.is_empty(), "{r:?}");
    let fe = svc_entries(&p)[&key(a("fd00:96::1"), 80, 6, scope::INTERNAL)];
    assert_eq!(
        Ipv6Addr::from(resolve(&p.store().maps, &fe)[0].addr),
        a("fd00:10::b")
    );
    consistent(&p.store().maps).unwrap();
}

fn ct(backend: u32, proto: u8, expires_ns: u64, n: u8) -> (CtKey, CtEntry) {
    (
        CtKey {
            src: [n; 16],
            proto,
            ..Default::default()
        },
        CtEntry {
            backend,
            expires_ns,
            ..Default::default()
        },
    )
}

#[test]
fn removed_udp_backends_lose_their_flows() {
    let mut p = programmer();
    let mut s = service(
        "dns",
        "fd00:96::a",
        vec![backend("fd00:10::1", true), backend("fd00:10::2", true)],
    );
    s.ports[0].protocol = Protocol::Udp;
    p.apply(&state(vec![s.clone()])).unwrap();
    let ids: HashMap<Ipv6Addr, u32> = p
        .store()
        .typed::<u32, Backend>(MapId::Backends)
        .into_iter()
        .map(|(id, b)| (Ipv6Addr::from(b.addr), id))
        .collect();
    let gone = ids[&a("fd00:10::1")];
    let stays = ids[&a("fd00:10::2")];
    let ctm = p.store_mut().maps.get_mut(&MapId::Ct).unwrap();
    for (k, v) in [
        ct(gone, 17, u64::MAX, 1),
        ct(gone, 17, u64::MAX, 2),
        ct(stays, 17, u64::MAX, 3),
    ] {
        ctm.insert(bytes(&k).to_vec(), bytes(&v).to_vec());
    }
    s.ports[0].backends.remove(0);
    let r = p.apply(&state(vec![s])).unwrap();
    assert_eq!(r.ct_flushed, 2);
    assert_eq!(p.store().maps[&MapId::Ct].len(), 1);
}

#[test]
fn gc_removes_dead_entries_only() {
    let mut maps = MemoryMaps::default();
    let ctm = maps.maps.get_mut(&MapId::Ct).unwrap();
    for (k, v) in [ct(1, 6, 100, 1), ct(1, 6, 300, 2), ct(1, 6, 199, 3)] {
        ctm.insert(bytes(&k).to_vec(), bytes(&v).to_vec());
    }
    let r = gc(&mut maps, 200).unwrap();
    assert_eq!((r.scanned, r.expired), (3, 2));
    let left: Vec<(CtKey, CtEntry)> = maps.typed(MapId::Ct);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1.expires_ns, 300);
}

#[test]
fn services_listing_names_frontends_and_backends() {
    let mut p = programmer();
    let mut s = service("web", "fd00:96::1", vec![backend("fd00:10::a", true)]);
    s.ports[0].node_port = Some(30080);
    p.apply(&state(vec![s])).unwrap();
    let rows = cli::list_services(p.store_mut()).unwrap();
    let cip = rows
        .iter()
        .find(|r| r.kind == "ClusterIP")
        .expect("ClusterIP row");
    assert_eq!(cip.service, "default/web/http");
    assert_eq!(cip.frontend, "[fd00:96::1]:80");
    assert_eq!(cip.backends.len(), 1);
    assert_eq!(cip.backends[0].endpoint, "[fd00:10::a]:8080");
    assert_eq!(
        cip.backends[0].conditions,
        vec!["ready", "serving", "local"]
    );
    assert_eq!(rows.iter().filter(|r| r.kind == "NodePort").count(), 2);
    let addr = rows.iter().find(|r| r.kind == "address").unwrap();
    assert_eq!(addr.service, "default/web");
}

#[test]
fn long_names_are_cut_at_a_character_boundary() {
    let id = ServiceId {
        namespace: "n".repeat(60),
        name: "é".repeat(40),
    };
    let p = ServicePort {
        name: "http".into(),
        protocol: Protocol::Tcp,
        port: 80,
        node_port: None,
        backends: vec![],
    };
    let info = plan::port_info(&id, &p);
    let name = plan::info_name(&info);
    assert!(name.len() <= sixlane_common::services::SVC_NAME_LEN);
    assert!(name.starts_with(&format!("{}/é", "n".repeat(60))), "{name}");
    assert_eq!(
        plan::info_service(&plan::port_info(
            &ServiceId {
                namespace: "a".into(),
                name: "b".into()
            },
            &p
        )),
        Some(ServiceId {
            namespace: "a".into(),
            name: "b".into()
        })
    );
}
