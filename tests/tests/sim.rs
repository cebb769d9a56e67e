//! The simulated pods the datapath tests build on: plumbing works, and the pod programs are on
//! the path (their counters move with the traffic).

use std::net::Ipv6Addr;

use sixlane_agent::metrics;
use sixlane_common::metrics::{Direction, Reason};
use sixlane_tests::{load_datapath, sim};

#[test]
fn pods_on_one_node_reach_each_other_through_the_pod_programs() {
    let (_pins, layout, _dp) = load_datapath();
    let node = sim::node().unwrap();
    let a: Ipv6Addr = "fd00:10::a".parse().unwrap();
    let b: Ipv6Addr = "fd00:10::b".parse().unwrap();
    let pa = sim::SimPod::attach(&node, a, Some(&layout)).unwrap();
    let _pb = sim::SimPod::attach(&node, b, Some(&layout)).unwrap();

    let before = metrics::get(
        &metrics::read(&layout).unwrap(),
        Direction::Ingress,
        Reason::Pass,
    );
    pa.ns
        .exec(
            "ping",
            &["-6", "-c", "3", "-i", "0.2", "-w", "5", &b.to_string()],
        )
        .unwrap();
    let rows = metrics::read(&layout).unwrap();
    let after = metrics::get(&rows, Direction::Ingress, Reason::Pass);
    // Three echo requests leave A and three replies leave B: each crosses a from-pod hook.
    assert!(
        after.packets - before.packets >= 6,
        "from-pod counted {} packets",
        after.packets - before.packets
    );
    assert!(metrics::get(&rows, Direction::Egress, Reason::Pass).packets >= 6);
}

#[test]
fn workspace_binaries_are_found() {
    let agent = sixlane_tests::bins::path("sixlane-agent");
    let out = std::process::Command::new(&agent)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sixlane-agent "));
}
