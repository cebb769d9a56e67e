//! The `sixlane` plugin with its dataplane: a required dataplane without pins is "try again"
//! (STATUS 50), and in both attach modes (tc filters, TCX links) ADD attaches each pod program
//! exactly once, traffic is counted, CHECK notices a missing attachment, DEL removes
//! everything; ADDs killed mid-way and retried, and 64 ADDs at once, never duplicate an
//! attachment.

use std::{collections::HashSet, fs, net::Ipv6Addr, thread, time::Duration};

use serde_json::{Value, json};
use sixlane_agent::{PinLayout, metrics};
use sixlane_attach::{AttachMode, tc, tcx};
use sixlane_common::{
    layout::{POD_PROGRAMS, PROG_TO_POD},
    metrics::{Direction, Reason},
};
use sixlane_testkit::{NetNs, rng::Rng};
use sixlane_tests::{
    cni::{self, TempDir, with_prev},
    cni_node::Net,
    load_datapath, podattach,
};

#[test]
fn required_dataplane_without_pins_is_try_again_and_status_50() {
    let empty = TempDir::new('p');
    for mode in AttachMode::ALL {
        let net = Net::new();
        let mut conf = net.conf("1.1.0");
        conf["dataplane"] = json!("required");
        conf["attach"] = json!(mode.as_str());
        conf["pinRoot"] = json!(empty.path());
        let pod = NetNs::new().unwrap();
        let out = net.add("nodp", &pod, &conf);
        assert_eq!(out.code(), 11, "{mode}");
        assert!(out.message().contains("not loaded"), "{}", out.message());
        assert!(fs::read_dir(net.data.path()).unwrap().next().is_none());
        assert_eq!(net.node_links(), ["lo"]);
        assert_eq!(net.call("STATUS", "", "", &conf).code(), 50);
        // optional: the pod is attached without programs.
        conf["dataplane"] = json!("optional");
        net.add("opt", &pod, &conf).result();
        net.call("STATUS", "", "", &conf).ok();
        net.call("DEL", "opt", "", &conf).ok();
    }
}

/// The host veth of an ADD result.
fn host_if(result: &Value) -> String {
    result["interfaces"][0]["name"].as_str().unwrap().to_owned()
}

/// Everything a required dataplane promises on `host_if` in `mode`, read back independently:
/// each pod program runs exactly once on its hook, as the program pinned now; nothing else is
/// attached; link pins exactly in TCX mode.
fn verify_attached(net: &Net, layout: &PinLayout, host_if: &str, mode: AttachMode) {
    for (prog, hook) in POD_PROGRAMS {
        let want = podattach::pinned_id(layout, prog);
        let filters = podattach::tc_filters(&net.node, host_if, hook);
        let tcx = podattach::tcx_ids(&net.node, host_if, hook);
        match mode {
            AttachMode::Tc => {
                assert_eq!(filters.len(), 1, "{prog}: {filters:?}");
                let f = &filters[0];
                assert_eq!(f.pref, u64::from(tc::PRIORITY), "{f:?}");
                assert_eq!(f.handle, tc::HANDLE, "{f:?}");
                assert!(f.direct_action, "{f:?}");
                assert_eq!(f.prog_id, want, "{prog} runs the pinned program");
                assert!(prog.starts_with(&f.prog_name), "{f:?}");
                assert!(tcx.is_empty(), "{prog}: TCX programs {tcx:?}");
                assert!(
                    !layout.link(host_if, prog).exists(),
                    "no link pins in tc mode"
                );
            }
            AttachMode::Tcx => {
                assert_eq!(tcx, [want], "{prog}");
                assert!(filters.is_empty(), "{prog}: filters {filters:?}");
                assert!(layout.link(host_if, prog).exists());
            }
        }
    }
}

fn ingress_passed(layout: &PinLayout) -> u64 {
    metrics::get(
        &metrics::read(layout).unwrap(),
        Direction::Ingress,
        Reason::Pass,
    )
    .packets
}

fn ping_counts(layout: &PinLayout, from: &NetNs, to: &str, n: u32) {
    let before = ingress_passed(layout);
    from.exec(
        "ping",
        &["-6", "-c", &n.to_string(), "-i", "0.2", "-w", "5", to],
    )
    .unwrap();
    // Requests enter the datapath at the client's host veth, replies at the server's.
    let counted = ingress_passed(layout) - before;
    assert!(counted >= u64::from(2 * n), "{counted} packets counted");
}

fn addr_of(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// ADD attaches, traffic is counted, CHECK passes and notices a removed attachment, DEL removes
/// everything (and is idempotent).
fn dataplane_round(mode: AttachMode) {
    let (pins, layout, _dp) = load_datapath();
    let net = Net::new();
    let conf = net.dataplane_conf("1.1.0", pins.path(), mode);
    let (pa, pb) = (NetNs::new().unwrap(), NetNs::new().unwrap());
    let ra = net.add("dpa", &pa, &conf).result().clone();
    let rb = net.add("dpb", &pb, &conf).result().clone();
    let (ha, hb) = (host_if(&ra), host_if(&rb));
    verify_attached(&net, &layout, &ha, mode);
    verify_attached(&net, &layout, &hb, mode);
    ping_counts(&layout, &pa, &addr_of(&rb), 3);

    let netns_a = pa.path().display().to_string();
    let check = |prev: &Value| net.call("CHECK", "dpa", &netns_a, &with_prev(&conf, prev));
    check(&ra).ok();
    // The egress program goes away behind the plugin's back: CHECK says so.
    match mode {
        AttachMode::Tc => {
            let pref = tc::PRIORITY.to_string();
            let handle = format!("{:#x}", tc::HANDLE);
            net.node
                .exec(
                    "tc",
                    &[
                        "filter", "del", "dev", &ha, "egress", "pref", &pref, "handle", &handle,
                        "bpf",
                    ],
                )
                .unwrap();
        }
        AttachMode::Tcx => {
            let (l, h) = (layout.clone(), ha.clone());
            assert!(
                net.node
                    .enter(move || tcx::detach(&l, &h, PROG_TO_POD))
                    .unwrap()
            );
        }
    }
    let out = check(&ra);
    assert_eq!(out.code(), 100, "{mode}");
    assert!(
        out.message().contains(PROG_TO_POD) && out.message().contains("not attached"),
        "{}",
        out.message()
    );
    // CHECK of the untouched pod still passes.
    let netns_b = pb.path().display().to_string();
    net.call("CHECK", "dpb", &netns_b, &with_prev(&conf, &rb))
        .ok();

    net.call("DEL", "dpa", "", &conf).ok();
    assert!(!net.node_links().contains(&ha));
    for (prog, _) in POD_PROGRAMS {
        assert!(!layout.link(&ha, prog).exists());
    }
    net.call("DEL", "dpb", "", &conf).ok();
    net.call("DEL", "dpb", "", &conf).ok();
    net.assert_clean(&layout);
}

#[test]
fn required_dataplane_attaches_the_pod_programs_as_tc_filters() {
    dataplane_round(AttachMode::Tc);
}

#[test]
fn required_dataplane_attaches_the_pod_programs_through_tcx_links() {
    dataplane_round(AttachMode::Tcx);
}

/// ADDs killed at random points, then DEL and ADD again with the same ids (what a runtime does
/// after a crash): every pod ends up with exactly one attachment per hook. Attaching again on a
/// live pod (`services attach`, an interrupted attach retried) replaces in place.
fn crash_then_re_add(mode: AttachMode) {
    let (pins, layout, _dp) = load_datapath();
    let net = Net::new();
    let conf = net.dataplane_conf("1.1.0", pins.path(), mode);
    let conf_bytes = serde_json::to_vec(&conf).unwrap();
    let mut rng = Rng::new(0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id()));
    let mut pods = Vec::new();
    for i in 0..12 {
        let pod = NetNs::new().unwrap();
        let id = format!("r{i}");
        net.killed_add(
            &id,
            &pod,
            &conf_bytes,
            Duration::from_micros(rng.below(8000) as u64),
        );
        pods.push((id, pod));
    }
    for (id, pod) in &pods {
        net.call("DEL", id, &pod.path().display().to_string(), &conf)
            .ok();
    }
    net.assert_clean(&layout);
    let mut results = Vec::new();
    for (id, pod) in &pods {
        let r = net.add(id, pod, &conf).result().clone();
        verify_attached(&net, &layout, &host_if(&r), mode);
        results.push(r);
    }
    // Attach again on a live pod, twice: replaced in place, never a second copy.
    let h = host_if(&results[0]);
    let agent = sixlane_tests::bins::path("sixlane-agent");
    for _ in 0..2 {
        net.node
            .exec(
                agent.to_str().unwrap(),
                &[
                    "--pin-root",
                    pins.path().to_str().unwrap(),
                    "services",
                    "attach",
                    "--iface",
                    &h,
                    "--role",
                    "pod",
                    "--attach",
                    mode.as_str(),
                ],
            )
            .unwrap();
        verify_attached(&net, &layout, &h, mode);
    }
    ping_counts(&layout, &pods[0].1, &addr_of(&results[1]), 2);
    let netns = pods[0].1.path().display().to_string();
    net.call("CHECK", "r0", &netns, &with_prev(&conf, &results[0]))
        .ok();
    for (id, _) in &pods {
        net.call("DEL", id, "", &conf).ok();
    }
    net.assert_clean(&layout);
}

#[test]
fn re_add_after_a_crash_replaces_rather_than_duplicates_tc() {
    crash_then_re_add(AttachMode::Tc);
}

#[test]
fn re_add_after_a_crash_replaces_rather_than_duplicates_tcx() {
    crash_then_re_add(AttachMode::Tcx);
}

/// 64 ADDs at once with the dataplane on: distinct addresses, every pod attached exactly once and
/// reachable through the programs; 64 DELs at once leave nothing.
fn parallel_with_dataplane(mode: AttachMode) {
    const N: usize = 64;
    let (pins, layout, _dp) = load_datapath();
    let net = Net::new();
    let conf = net.dataplane_conf("1.0.0", pins.path(), mode);
    let pods: Vec<NetNs> = (0..N).map(|_| NetNs::new().unwrap()).collect();
    let outs: Vec<cni::Output> = thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (net, conf) = (&net, &conf);
                s.spawn(move || net.add(&format!("q{i}"), p, conf))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: HashSet<Ipv6Addr> = outs.iter().map(cni::Output::ip).collect();
    assert_eq!(ips.len(), N, "duplicate addresses");
    let before = ingress_passed(&layout);
    for o in &outs {
        verify_attached(&net, &layout, &host_if(o.result()), mode);
        // The node reaches the pod through its host veth (sl_to_pod); the reply comes back
        // through sl_from_pod.
        net.node
            .exec("ping", &["-6", "-c", "1", "-W", "2", &o.ip().to_string()])
            .unwrap();
    }
    assert!(ingress_passed(&layout) - before >= N as u64);
    thread::scope(|s| {
        for i in 0..N {
            let (net, conf) = (&net, &conf);
            s.spawn(move || net.call("DEL", &format!("q{i}"), "", conf).ok().success);
        }
    });
    net.assert_clean(&layout);
}

#[test]
fn parallel_adds_with_the_dataplane_as_tc_filters() {
    parallel_with_dataplane(AttachMode::Tc);
}

#[test]
fn parallel_adds_with_the_dataplane_through_tcx_links() {
    parallel_with_dataplane(AttachMode::Tcx);
}
