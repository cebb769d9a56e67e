//! Pod source validation with real traffic (docs/cni.md, "Source validation"): a pod attached by
//! the CNI plugin that sends from another pod's address is dropped at its veth and counted
//! (`src_spoofed`), whether the packet is forwarded to a pod or handled by the service stage;
//! its own address and its link-local address pass. NAT64's case is in nat64_netns.rs, the
//! plugin's bookkeeping and the opt-out in cni_sources.rs.

use std::net::Ipv6Addr;

use sixlane_agent::{
    model::{DesiredState, NodeState},
    services::Programmer,
};
use sixlane_common::metrics::Reason;
use sixlane_tests::{
    cluster::{self, node_addr, pod_addr},
    sim::SimPod,
    spoof::{claim, count, echoes_received, ping_from, spoofed},
    svc::{backend, service},
};

const VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0x5);
const PINGS: u32 = 3;

#[test]
fn a_pod_sending_from_another_pods_address_is_dropped_to_pods_and_services() {
    let c = cluster::cluster(1);
    let n = &c.nodes[0];
    let spoofer = SimPod::attach(&n.ns, pod_addr(1, 0xa), Some(&n.layout)).unwrap();
    let victim = SimPod::attach(&n.ns, pod_addr(1, 0xb), Some(&n.layout)).unwrap();
    let target = SimPod::attach(&n.ns, pod_addr(1, 0xc), Some(&n.layout)).unwrap();
    let svc = service("web", VIP, 80, vec![backend(target.addr, 8080, true)]);
    let desired = DesiredState {
        node: NodeState {
            name: "node1".into(),
            addresses: vec![node_addr(1)],
            cluster_ips_from_outside: false,
        },
        services: [(svc.id.clone(), svc)].into(),
    };
    let r = Programmer::open(&n.layout)
        .unwrap()
        .apply(&desired)
        .unwrap();
    assert!(r.skipped.is_empty(), "{r:?}");

    // Its own address: forwarded to the pod, answered by the ClusterIP.
    let own = spoofer.addr.to_string();
    let (target_addr, vip) = (target.addr.to_string(), VIP.to_string());
    let before = echoes_received(&target.ns);
    ping_from(&spoofer.ns, &own, &target_addr, PINGS);
    assert_eq!(echoes_received(&target.ns) - before, u64::from(PINGS));
    let before = count(&n.layout, Reason::SvcEchoReply);
    ping_from(&spoofer.ns, &own, &vip, PINGS);
    assert_eq!(
        count(&n.layout, Reason::SvcEchoReply) - before,
        u64::from(PINGS)
    );
    // Link-local: the gateway on the host veth answers.
    let out = spoofer
        .ns
        .exec_output(
            "ping",
            &["-6", "-c", "2", "-i", "0.2", "-w", "5", "fe80::1%eth0"],
        )
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(spoofed(&n.layout), 0, "nothing of its own was dropped");

    // The victim's address: dropped at the spoofer's veth, whatever the destination.
    claim(&spoofer.ns, victim.addr);
    let stolen = victim.addr.to_string();
    let before = (echoes_received(&target.ns), spoofed(&n.layout));
    ping_from(&spoofer.ns, &stolen, &target_addr, PINGS);
    assert_eq!(
        echoes_received(&target.ns),
        before.0,
        "forwarded to the pod"
    );
    assert_eq!(spoofed(&n.layout) - before.1, u64::from(PINGS));

    let before = (count(&n.layout, Reason::SvcEchoReply), spoofed(&n.layout));
    ping_from(&spoofer.ns, &stolen, &vip, PINGS);
    assert_eq!(
        count(&n.layout, Reason::SvcEchoReply),
        before.0,
        "answered by the service stage"
    );
    assert_eq!(spoofed(&n.layout) - before.1, u64::from(PINGS));

    // The victim itself still sends from its address.
    let before = echoes_received(&target.ns);
    ping_from(&victim.ns, &stolen, &target_addr, PINGS);
    assert_eq!(echoes_received(&target.ns) - before, u64::from(PINGS));
}
