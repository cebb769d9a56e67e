//! Pod programs attached as classic tc filters (the CNI's default `attach: tc`): attaching again
//! replaces in place, an upgrade re-points every filter of the node's namespace atomically while
//! connections keep flowing, other datapaths' filters and foreign filters are left alone, and
//! `status`/`unload` see exactly this datapath's filters.

use std::{
    net::{Ipv6Addr, SocketAddr},
    thread,
    time::Duration,
};

use sixlane_agent::{
    PinLayout,
    loader::{Datapath, LoadOptions},
};
use sixlane_attach::{AttachMode, Attached, tc};
use sixlane_common::layout::{Hook, POD_PROGRAMS, PROG_COUNT_INGRESS, PROG_FROM_POD};
use sixlane_testkit::{NetNs, Veth};
use sixlane_tests::{
    bins,
    echo::{self, EchoServer, Pinger, exchange},
    load_datapath,
    podattach::{self, TcFilter, sixlane_filters, tc_filters, tcx_ids},
    sim::{self, SimPod},
};

fn addr(host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, host)
}

fn id_of(dp: &mut Datapath, prog: &str) -> u32 {
    dp.classifier(prog).unwrap().info().unwrap().id()
}

#[test]
fn attaching_again_replaces_in_place() {
    let (_pins, layout, _dp) = load_datapath();
    let ns = NetNs::new().unwrap();
    let veth = Veth::new(Some(&ns), Some(&ns)).unwrap();
    let iface = veth.a.name.clone();
    let l = layout.clone();
    let i = iface.clone();
    let (first, second, third, found) = ns.enter(move || {
        // Something else of ours sits in sixlane's slot first: attach takes the slot over.
        let first = tc::attach_pinned(&l, PROG_COUNT_INGRESS, &i, Hook::Ingress).unwrap();
        let second = tc::attach_pinned(&l, PROG_FROM_POD, &i, Hook::Ingress).unwrap();
        let third = tc::attach_pinned(&l, PROG_FROM_POD, &i, Hook::Ingress).unwrap();
        let found = tc::find(&i, Hook::Ingress).unwrap();
        (first, second, third, found)
    });
    assert_eq!(
        (first, second, third),
        (Attached::Created, Attached::Replaced, Attached::Replaced)
    );
    let want = podattach::pinned_id(&layout, PROG_FROM_POD);
    let filters = tc_filters(&ns, &iface, Hook::Ingress);
    assert_eq!(filters.len(), 1, "{filters:?}");
    assert_eq!(
        (filters[0].pref, filters[0].handle, filters[0].prog_id),
        (u64::from(tc::PRIORITY), tc::HANDLE, want)
    );
    let found = found.expect("our filter");
    assert_eq!(
        (found.prog_id, found.program.as_str()),
        (want, PROG_FROM_POD)
    );
    // The datapath owns it (its program uses the pinned maps); another pin root does not.
    let (_other_pins, other, _other_dp) = load_datapath();
    let l = layout.clone();
    let (mine, theirs) = ns.enter(move || {
        (
            tc::list_owned(&l).unwrap().len(),
            tc::list_owned(&other).unwrap().len(),
        )
    });
    assert_eq!((mine, theirs), (1, 0));
    // Detach removes exactly our filter, once; the egress hook never had one.
    let i = iface.clone();
    let dets = ns.enter(move || {
        [
            tc::detach(&i, Hook::Ingress).unwrap(),
            tc::detach(&i, Hook::Ingress).unwrap(),
            tc::detach(&i, Hook::Egress).unwrap(),
        ]
    });
    assert_eq!(dets, [true, false, false]);
    assert!(tc_filters(&ns, &iface, Hook::Ingress).is_empty());
    // A missing interface is an error for attach, nothing for detach.
    let l = layout.clone();
    ns.enter(move || {
        assert!(matches!(
            tc::attach_pinned(&l, PROG_FROM_POD, "sltnope", Hook::Ingress),
            Err(sixlane_attach::Error::NoSuchInterface(_))
        ));
        assert!(!tc::detach("sltnope", Hook::Ingress).unwrap());
    });
}

fn agent(node: &NetNs, pins: &PinLayout, args: &[&str]) -> String {
    let bin = bins::path("sixlane-agent");
    let mut full = vec!["--pin-root", pins.root().to_str().unwrap()];
    full.extend_from_slice(args);
    node.exec(bin.to_str().unwrap(), &full).unwrap()
}

#[test]
fn upgrade_repoints_every_tc_filter_and_a_connection_survives() {
    let (pins, layout, dp) = load_datapath();
    let node = sim::node().unwrap();
    // Two pods in the default mode (tc), one through TCX links, one of another datapath (another
    // pin root) on the same node.
    let a = SimPod::attach(&node, addr(0xa), Some(&layout)).unwrap();
    let b = SimPod::attach(&node, addr(0xb), Some(&layout)).unwrap();
    let c = SimPod::attach_with(&node, addr(0xc), &layout, AttachMode::Tcx).unwrap();
    let (_other_pins, other, _other_dp) = load_datapath();
    let d = SimPod::attach(&node, addr(0xd), Some(&other)).unwrap();
    // A foreign filter at another priority on a's veth.
    let counter = other.prog(PROG_COUNT_INGRESS);
    node.exec(
        "tc",
        &[
            "filter",
            "add",
            "dev",
            a.host_if(),
            "ingress",
            "pref",
            "100",
            "handle",
            "0x1",
            "bpf",
            "direct-action",
            "pinned",
            counter.to_str().unwrap(),
        ],
    )
    .unwrap();
    let foreign = |pod: &SimPod| -> Vec<TcFilter> {
        tc_filters(&node, pod.host_if(), Hook::Ingress)
            .into_iter()
            .filter(|f| f.pref == 100)
            .collect()
    };
    let foreign_before = foreign(&a);
    assert_eq!(foreign_before.len(), 1);
    let d_before: Vec<Vec<TcFilter>> = POD_PROGRAMS
        .iter()
        .map(|(_, h)| sixlane_filters(&node, d.host_if(), *h))
        .collect();

    // A long-lived connection a → b, and a second one carrying round trips throughout.
    let to = SocketAddr::from((b.addr, 7000));
    let server = EchoServer::start(&b.ns, to);
    let mut s = echo::connect(&a.ns, to).unwrap();
    exchange(&mut s, b"before");
    let pinger = Pinger::start(echo::connect(&a.ns, to).unwrap());

    let old: Vec<u32> = POD_PROGRAMS
        .iter()
        .map(|(p, _)| podattach::pinned_id(&layout, p))
        .collect();
    // The agent restarts: a new load on the same pins, upgraded in the node's namespace.
    drop(dp);
    thread::sleep(Duration::from_millis(100));
    let mut dp = Datapath::load(&layout, &LoadOptions::default()).unwrap();
    let report = node.enter(|| dp.repoint_attachments()).unwrap();
    assert_eq!(report.tcx.replaced, 2, "c's two TCX links: {report:?}");
    assert_eq!(report.tc.replaced, 4, "a's and b's filters: {report:?}");
    assert_eq!(report.tc.foreign, 2, "d's filters: {report:?}");
    assert_eq!(
        (report.tc.current, report.tc.gone, report.tc.unknown),
        (0, 0, 0)
    );
    for (i, &(prog, hook)) in POD_PROGRAMS.iter().enumerate() {
        let new = id_of(&mut dp, prog);
        assert_ne!(new, old[i]);
        for pod in [&a, &b] {
            let ours = sixlane_filters(&node, pod.host_if(), hook);
            assert_eq!(
                ours.len(),
                1,
                "exactly one sixlane filter per hook: {ours:?}"
            );
            assert_eq!(ours[0].prog_id, new, "{prog} on {}", pod.host_if());
            assert!(tcx_ids(&node, pod.host_if(), hook).is_empty());
        }
        assert_eq!(tcx_ids(&node, c.host_if(), hook), [new]);
        assert!(tc_filters(&node, c.host_if(), hook).is_empty());
        assert_eq!(
            sixlane_filters(&node, d.host_if(), hook),
            d_before[i],
            "another datapath's filters are not touched"
        );
    }
    assert_eq!(foreign(&a), foreign_before, "foreign filter untouched");
    assert_eq!(tc_filters(&node, a.host_if(), Hook::Ingress).len(), 2);

    exchange(&mut s, b"after the upgrade");
    thread::sleep(Duration::from_millis(200));
    assert!(
        pinger.finish() > 20,
        "round trips kept completing during the upgrade"
    );
    exchange(&mut s, b"still there");

    // Upgrading again changes nothing.
    let again = node.enter(|| dp.repoint_attachments()).unwrap();
    assert_eq!(
        (again.tcx.current, again.tc.current, again.tc.replaced),
        (2, 4, 0),
        "{again:?}"
    );

    // status counts this datapath's filters in the namespace it runs in.
    let st: serde_json::Value =
        serde_json::from_str(&agent(&node, &layout, &["--json", "status"])).unwrap();
    let mut filters: Vec<String> = st["tcFilters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    filters.sort();
    let mut want: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|p| {
            POD_PROGRAMS
                .iter()
                .map(|(g, _)| format!("{g}@{}", p.host_if()))
        })
        .collect();
    want.sort();
    assert_eq!(filters, want);
    assert_eq!(st["pinnedLinks"].as_array().unwrap().len(), 2);
    let text = agent(&node, &layout, &["status"]);
    assert!(
        text.contains("4 in this network namespace (2 pod interfaces)"),
        "{text}"
    );
    assert!(
        text.contains("2 pinned TCX links (1 pod interfaces)"),
        "{text}"
    );

    // unload takes this datapath's filters with it, and nothing else; the pods keep plain
    // connectivity.
    drop(dp);
    let out = agent(&node, &layout, &["unload"]);
    assert!(out.contains("removed 4 tc filter(s)"), "{out}");
    for pod in [&a, &b] {
        for (_, h) in POD_PROGRAMS {
            assert!(sixlane_filters(&node, pod.host_if(), h).is_empty());
        }
    }
    assert_eq!(foreign(&a), foreign_before);
    for (i, (_, h)) in POD_PROGRAMS.iter().enumerate() {
        assert_eq!(sixlane_filters(&node, d.host_if(), *h), d_before[i]);
    }
    exchange(&mut s, b"after unload");
    drop(s);
    drop(server);
    drop(pins);
}
