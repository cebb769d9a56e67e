//! What runs on a pod's host veth, read back independently of sixlane's own netlink code: tc
//! filters through iproute2's JSON (`tc -j filter show`), TCX programs through `BPF_PROG_QUERY`.

use aya::programs::SchedClassifier;
use serde_json::Value;
use sixlane_agent::PinLayout;
use sixlane_attach::{HookExt as _, tc};
use sixlane_common::layout::Hook;
use sixlane_testkit::NetNs;

/// One cls_bpf filter as `tc -j filter show` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcFilter {
    pub pref: u64,
    pub handle: u32,
    pub prog_id: u32,
    pub prog_name: String,
    pub direct_action: bool,
}

/// Every bpf filter on `ifname` (in `ns`) at `hook`. An interface without a clsact qdisc has none.
pub fn tc_filters(ns: &NetNs, ifname: &str, hook: Hook) -> Vec<TcFilter> {
    let out = ns
        .exec_output("tc", &["-j", "filter", "show", "dev", ifname, hook.name()])
        .expect("running tc");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.trim().is_empty() {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("tc -j: {e}: {text}"));
    v.as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "bpf" && f["options"]["handle"].is_string())
        .map(|f| {
            let o = &f["options"];
            let h = o["handle"].as_str().unwrap();
            TcFilter {
                pref: f["pref"].as_u64().unwrap(),
                handle: u32::from_str_radix(h.trim_start_matches("0x"), 16).unwrap(),
                prog_id: o["prog"]["id"].as_u64().unwrap() as u32,
                prog_name: o["prog"]["name"].as_str().unwrap_or_default().to_owned(),
                direct_action: o["direct-action"] == true,
            }
        })
        .collect()
}

/// sixlane's filters (at its priority and handle) among [`tc_filters`].
pub fn sixlane_filters(ns: &NetNs, ifname: &str, hook: Hook) -> Vec<TcFilter> {
    tc_filters(ns, ifname, hook)
        .into_iter()
        .filter(|f| f.pref == u64::from(tc::PRIORITY) && f.handle == tc::HANDLE)
        .collect()
}

/// Ids of the TCX programs on `ifname` at `hook`.
pub fn tcx_ids(ns: &NetNs, ifname: &str, hook: Hook) -> Vec<u32> {
    let ifname = ifname.to_owned();
    ns.enter(move || {
        SchedClassifier::query_tcx(&ifname, hook.attach_type())
            .unwrap()
            .1
            .iter()
            .map(|p| p.id())
            .collect()
    })
}

/// Ids of every program that runs on `ifname` at `hook`: TCX programs, then bpf filters.
pub fn program_ids(ns: &NetNs, ifname: &str, hook: Hook) -> Vec<u32> {
    let mut ids = tcx_ids(ns, ifname, hook);
    ids.extend(tc_filters(ns, ifname, hook).iter().map(|f| f.prog_id));
    ids
}

/// The id of the program pinned at `progs/<name>`.
pub fn pinned_id(layout: &PinLayout, name: &str) -> u32 {
    layout.program_id(name).unwrap()
}
