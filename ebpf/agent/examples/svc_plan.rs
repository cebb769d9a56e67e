//! Where the time of a 10,000-service apply goes, in-process and without map syscalls (a store
//! that discards every write): the whole apply into empty state, the same state again (every
//! Service compared, nothing changed), and the plan's steps timed alone. `cargo xtask bench -s
//! svc-plan` runs it once per trial and tabulates the medians; it prints one JSON object of
//! milliseconds. Not a test: nothing here asserts a timing.

use std::{net::Ipv6Addr, sync::Arc, time::Instant};

use anyhow::{Context as _, ensure};
use sixlane_agent::{
    model::{
        Backend, DesiredState, NodeState, Protocol, Service, ServiceId, ServicePort, TrafficPolicy,
    },
    services::{MapId, MapStore, Programmer, plan, store},
};

const SERVICES: u32 = 10_000;
/// Id spaces large enough that no Service is left out.
const IDS: u32 = 65_536;

/// Discards writes and holds nothing: what is left of an apply is its planning.
struct Null;

impl MapStore for Null {
    fn update(&mut self, _: MapId, _: &[u8], _: &[u8]) -> sixlane_agent::Result<()> {
        Ok(())
    }
    fn delete(&mut self, _: MapId, _: &[u8]) -> sixlane_agent::Result<usize> {
        Ok(0)
    }
    fn dump(&mut self, _: MapId) -> sixlane_agent::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(Vec::new())
    }
}

/// Service `i`: one ClusterIP, TCP port 80, one remote backend on port 8080.
fn service(i: u32) -> Service {
    let addr = |s: String| s.parse::<Ipv6Addr>().expect("address");
    Service {
        id: ServiceId {
            namespace: "default".into(),
            name: format!("svc{i}"),
        },
        cluster_ips: vec![addr(format!("fd00:96::{:x}:{:x}", i >> 16, i & 0xffff))],
        external_ips: vec![],
        load_balancer_ips: vec![],
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
            backends: vec![Backend {
                addr: addr(format!("fd00:b::1:{i:x}")),
                port: 8080,
                ready: true,
                serving: true,
                terminating: false,
                local: false,
            }],
        }],
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        session_affinity: None,
        health_check_node_port: None,
    }
}

/// Runs `f` and returns its result with the milliseconds it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed().as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    let services: Vec<Service> = (1..=SERVICES).map(service).collect();
    let state = DesiredState {
        node: NodeState {
            name: "n1".into(),
            addresses: vec!["fd00:1::1".parse()?],
            cluster_ips_from_outside: false,
        },
        services: services.iter().map(|s| (s.id.clone(), s.clone())).collect(),
    };

    let mut programmer = Programmer::with_store(Null, IDS, IDS)?;
    let (full, apply_ms) = timed(|| programmer.apply(&state));
    let full = full.context("full apply")?;
    ensure!(
        full.changed == services.len() && full.skipped.is_empty(),
        "the full apply did not program every service: {full:?}"
    );
    let (again, noop_ms) = timed(|| programmer.apply(&state));
    let again = again.context("repeated apply")?;
    ensure!(again.changed == 0 && again.writes == 0, "{again:?}");

    // The steps of a full apply one at a time, as `Programmer::apply` runs them.
    let mut ids = plan::Ids::new(IDS, IDS);
    let no_owners = plan::Owners::new();
    let mut skipped = Vec::new();
    let (contributions, contribute_ms) = timed(|| {
        services
            .iter()
            .map(|s| plan::contribute(s, &state.node, None, &mut ids, &no_owners, &mut skipped))
            .collect::<Vec<_>>()
    });
    ensure!(skipped.is_empty(), "services left out: {skipped:?}");
    let (ops, diff_ms) = timed(|| {
        let mut ops = plan::Ops::default();
        for c in &contributions {
            plan::diff(None, Some(c), &mut ops, &mut ids);
        }
        ops
    });
    let ((keys, values), pack_ms) = timed(|| store::pack(&ops.svc_up));
    ensure!(!keys.is_empty() && !values.is_empty(), "nothing to pack");
    let (specs, clone_ms) = timed(|| services.clone());
    let (owners, owners_ms) = timed(|| {
        let mut owners = plan::Owners::new();
        for (s, c) in services.iter().zip(&contributions) {
            let owner = Arc::new(s.id.clone());
            for k in plan::svc_keys(c) {
                owners.insert(*k, owner.clone());
            }
        }
        owners
    });
    ensure!(specs.len() == services.len() && !owners.is_empty());

    println!(
        "{}",
        serde_json::json!({
            "apply_ms": apply_ms,
            "noop_ms": noop_ms,
            "contribute_ms": contribute_ms,
            "diff_ms": diff_ms,
            "pack_ms": pack_ms,
            "clone_ms": clone_ms,
            "owners_ms": owners_ms,
        })
    );
    Ok(())
}
