//! The `sixlane` CNI plugin binary against real network namespaces: ADD/CHECK/DEL per spec
//! version with the result verified in the kernel (through iproute2's netlink JSON, independent
//! of the plugin's own netlink code), idempotent DEL, bad input, rollback, STATUS, GC, reboot
//! stamps, the dataplane, concurrency, kill -9, host-local compatibility and chaining.

use std::{
    collections::HashSet,
    fs,
    net::Ipv6Addr,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use aya::programs::TcAttachType;
use serde_json::{Value, json};
use sixlane_agent::{
    PinLayout, metrics,
    tc::{self, AttachMode},
    tcx,
};
use sixlane_common::{
    layout::{Hook, POD_PROGRAMS, PROG_TO_POD},
    metrics::{Direction, Reason},
};
use sixlane_testkit::{NetNs, require_root, rng::Rng};
use sixlane_tests::{
    cni::{self, Call, Plugin, TempDir, reservations, with_prev},
    load_datapath, podattach, sim,
};

const SUBNET: &str = "fd00:10:244:1::/64";

/// A node namespace, an IPAM data dir and the plugin.
struct Net {
    node: NetNs,
    data: TempDir,
    plugin: Plugin,
    name: String,
}

impl Net {
    fn new() -> Self {
        require_root();
        Self {
            node: sim::node().unwrap(),
            data: TempDir::new('d'),
            plugin: Plugin::sixlane(),
            name: "sixlane".into(),
        }
    }

    fn conf(&self, version: &str) -> Value {
        cni::conf(version, &self.name, SUBNET, self.data.path())
    }

    fn call(&self, cmd: &str, id: &str, netns: &str, conf: &Value) -> cni::Output {
        self.plugin
            .call(Some(&self.node), &Call::new(cmd, id, netns, "eth0"), conf)
    }

    fn add(&self, id: &str, pod: &NetNs, conf: &Value) -> cni::Output {
        self.call("ADD", id, &pod.path().display().to_string(), conf)
    }

    /// Nothing left on the node: no pod veth, no reservation, no TCX link pin.
    fn assert_clean(&self, layout: &PinLayout) {
        assert_eq!(self.node_links(), ["lo"]);
        assert!(self.reservations().is_empty(), "{:?}", self.reservations());
        let pins: Vec<_> = fs::read_dir(layout.links_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(pins.is_empty(), "link pins left: {pins:?}");
    }

    /// Starts an ADD and SIGKILLs it after `delay`; true when it was still running then.
    fn killed_add(&self, id: &str, pod: &NetNs, conf: &[u8], delay: Duration) -> bool {
        let mut child = self
            .plugin
            .command(Some(&self.node))
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", pod.path())
            .env("CNI_IFNAME", "eth0")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(conf).unwrap();
        thread::sleep(delay);
        // nsenter execs the plugin in place, so this pid is the plugin's.
        let running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        running
    }

    fn reservations(&self) -> Vec<(Ipv6Addr, String)> {
        reservations(self.data.path(), &self.name)
    }

    fn node_links(&self) -> Vec<String> {
        cni::links(&self.node)
    }
}

fn ip_json(ns: &NetNs, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&ns.ip(&full).unwrap()).unwrap()
}

fn sysctl(ns: &NetNs, key: &str) -> String {
    ns.exec("cat", &[&format!("/proc/sys/net/{key}")])
        .unwrap()
        .trim()
        .to_owned()
}

fn route<'a>(routes: &'a Value, dst: &str) -> Option<&'a Value> {
    routes.as_array().unwrap().iter().find(|r| r["dst"] == dst)
}

/// Everything ADD promised, read back from the kernel.
fn verify_plumbing(net: &Net, pod: &NetNs, result: &Value) {
    let ip = result["ips"][0]["address"].as_str().unwrap();
    let (addr, prefix) = ip.split_once('/').unwrap();
    let host_if = result["interfaces"][0]["name"].as_str().unwrap();
    assert!(
        host_if.len() <= 15 && host_if.starts_with("sl"),
        "{host_if}"
    );
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(
        result["interfaces"][1]["sandbox"],
        pod.path().display().to_string()
    );
    assert_eq!(result["ips"][0]["interface"], 1);
    assert_eq!(result["ips"][0]["gateway"], "fe80::1");

    // Pod side: exactly our address, usable at once (no DAD), no prefix route.
    let link = &ip_json(pod, &["-6", "addr", "show", "dev", "eth0"])[0];
    assert_eq!(link["mtu"], 1500);
    let globals: Vec<&Value> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .collect();
    assert_eq!(globals.len(), 1, "{link}");
    assert_eq!(globals[0]["local"], addr);
    assert_eq!(globals[0]["prefixlen"].to_string(), prefix);
    assert_eq!(globals[0]["nodad"], true);
    assert_eq!(globals[0]["noprefixroute"], true);
    assert!(globals[0].get("tentative").is_none(), "{link}");
    let routes = ip_json(pod, &["-6", "route", "show"]);
    let default = route(&routes, "default").expect("default route");
    assert_eq!(default["gateway"], "fe80::1");
    assert_eq!(default["dev"], "eth0");
    let nat64 = route(&routes, "64:ff9b::/96").expect("64:ff9b::/96 route");
    assert_eq!(nat64["gateway"], "fe80::1");
    assert_eq!(nat64["metrics"][0]["mtu"], 1480);
    assert_eq!(nat64["metrics"][0]["advmss"], 1420);
    assert_eq!(route(&routes, SUBNET).unwrap()["gateway"], "fe80::1");
    assert_eq!(sysctl(pod, "ipv6/conf/lo/disable_ipv6"), "0");
    assert_eq!(sysctl(pod, "ipv6/conf/eth0/disable_ipv6"), "0");
    assert_eq!(sysctl(pod, "ipv6/conf/eth0/keep_addr_on_down"), "1");
    assert_eq!(sysctl(pod, "ipv6/conf/eth0/accept_dad"), "0");

    // Host side: the veth with the link-local gateway, a /128 to the pod, no RAs, forwarding.
    let node = &net.node;
    let hl = &ip_json(node, &["-6", "addr", "show", "dev", host_if])[0];
    assert!(
        hl["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "fe80::1" && a["prefixlen"] == 64),
        "{hl}"
    );
    assert_eq!(hl["mtu"], 1500);
    let host_routes = ip_json(node, &["-6", "route", "show"]);
    assert_eq!(
        route(&host_routes, addr).expect("host /128")["dev"],
        host_if
    );
    assert_eq!(sysctl(node, &format!("ipv6/conf/{host_if}/accept_ra")), "0");
    assert_eq!(sysctl(node, "ipv6/conf/all/forwarding"), "1");

    // And it carries traffic right away: pod → gateway, node → pod.
    pod.exec("ping", &["-6", "-c", "1", "-W", "2", "fe80::1%eth0"])
        .unwrap();
    node.exec("ping", &["-6", "-c", "1", "-W", "2", addr])
        .unwrap();
}

#[test]
fn add_check_del_for_every_spec_version() {
    let net = Net::new();
    for (i, version) in ["0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let pod = NetNs::new().unwrap();
        let id = format!("ctr-{i}");
        let conf = net.conf(version);
        let out = net.add(&id, &pod, &conf);
        let result = out.result().clone();
        assert_eq!(result["cniVersion"], version);
        // 0.4.0 tags IPs with their family; 1.1 fields only in 1.1.
        assert_eq!(
            result["ips"][0].get("version").is_some(),
            version == "0.4.0"
        );
        assert_eq!(
            result["routes"][1].get("mtu").is_some(),
            version == "1.1.0",
            "{result}"
        );
        assert_eq!(
            result["interfaces"][0].get("mtu").is_some(),
            version == "1.1.0"
        );
        verify_plumbing(&net, &pod, &result);
        assert_eq!(net.reservations().len(), 1, "version {version}");

        let netns = pod.path().display().to_string();
        net.call("CHECK", &id, &netns, &with_prev(&conf, &result))
            .ok();
        let host_if = result["interfaces"][0]["name"].as_str().unwrap();
        net.call("DEL", &id, &netns, &with_prev(&conf, &result))
            .ok();
        assert!(!net.node_links().iter().any(|l| l == host_if));
        assert!(!cni::links(&pod).iter().any(|l| l == "eth0"));
        assert!(net.reservations().is_empty());
        // DEL again, then with an empty CNI_NETNS as containerd sends it: still success.
        net.call("DEL", &id, &netns, &conf).ok();
        net.call("DEL", &id, "", &conf).ok();
        // CHECK after DEL fails.
        let after = net.call("CHECK", &id, &netns, &with_prev(&conf, &result));
        assert!(!after.success);
        if version != "1.1.0" {
            assert_eq!(net.call("GC", "", "", &conf).code(), 1);
            assert_eq!(net.call("STATUS", "", "", &conf).code(), 1);
        } else {
            net.call("STATUS", "", "", &conf).ok();
        }
    }
}

#[test]
fn version_lists_what_we_speak() {
    let p = Plugin::sixlane();
    let out = p.call_raw(
        None,
        &Call::new("VERSION", "", "", ""),
        b"{\"cniVersion\":\"1.0.0\"}",
    );
    let doc = out.result();
    assert_eq!(doc["cniVersion"], "1.0.0");
    assert_eq!(doc["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
    // cniVersions: the highest supported entry wins.
    let net = Net::new();
    let mut conf = net.conf("1.0.0");
    conf.as_object_mut().unwrap().remove("cniVersion");
    conf["cniVersions"] = json!(["0.3.1", "1.0.0", "1.1.0", "9.0.0"]);
    let pod = NetNs::new().unwrap();
    let r = net.add("cv", &pod, &conf);
    assert_eq!(r.result()["cniVersion"], "1.1.0");
    net.call("DEL", "cv", "", &conf).ok();
}

#[test]
fn del_succeeds_whatever_is_already_gone() {
    let net = Net::new();
    let conf = net.conf("1.0.0");
    // Nothing ever added.
    net.call("DEL", "never", "/run/netns/does-not-exist", &conf)
        .ok();
    // The namespace vanished before DEL (its veth went with it).
    let pod = NetNs::new().unwrap();
    let netns = pod.path().display().to_string();
    net.add("gone-ns", &pod, &conf).result();
    drop(pod);
    net.call("DEL", "gone-ns", &netns, &conf).ok();
    assert!(net.reservations().is_empty());
    // The link was deleted behind our back.
    let pod = NetNs::new().unwrap();
    let r = net.add("gone-link", &pod, &conf).result().clone();
    let host_if = r["interfaces"][0]["name"].as_str().unwrap();
    net.node.ip(&["link", "del", host_if]).unwrap();
    net.call("DEL", "gone-link", &pod.path().display().to_string(), &conf)
        .ok();
    // No reservation, but the veth exists (the IPAM state was lost).
    let pod2 = NetNs::new().unwrap();
    let r = net.add("gone-ipam", &pod2, &conf).result().clone();
    fs::remove_dir_all(net.data.path().join(&net.name)).unwrap();
    net.call("DEL", "gone-ipam", "", &conf).ok();
    let host_if = r["interfaces"][0]["name"].as_str().unwrap();
    assert!(!net.node_links().iter().any(|l| l == host_if));
    assert_eq!(net.node_links(), ["lo"]);
}

/// One invocation the plugin must refuse: the CNI environment and stdin it gets, and the error
/// it must answer with.
#[derive(Clone)]
struct BadCase<'a> {
    /// What is wrong with the invocation (failures print it).
    name: &'a str,
    command: &'a str,
    container_id: &'a str,
    netns: &'a str,
    ifname: &'a str,
    stdin: Vec<u8>,
    /// The spec's error code.
    code: u64,
    /// A fragment of the error's message (`details`, else `msg`).
    message: &'a str,
}

#[test]
fn bad_input_gets_the_right_code_and_writes_nothing() {
    let net = Net::new();
    let pod = NetNs::new().unwrap();
    let netns = pod.path().display().to_string();
    let good = net.conf("1.0.0");
    let long_id = "a".repeat(300);
    let with = |path: &[&str], v: Value| {
        let mut c = good.clone();
        let mut cur = &mut c;
        for k in &path[..path.len() - 1] {
            cur = &mut cur[*k];
        }
        cur[path[path.len() - 1]] = v;
        serde_json::to_vec(&c).unwrap()
    };
    // A valid ADD: each case changes what it is about, and says what it expects.
    let add = BadCase {
        name: "",
        command: "ADD",
        container_id: "c",
        netns: &netns,
        ifname: "eth0",
        stdin: serde_json::to_vec(&good).unwrap(),
        code: 0,
        message: "",
    };
    let cases = [
        BadCase {
            name: "configuration cut short",
            stdin: b"{\"cniVersion\": ".to_vec(),
            code: 6,
            message: "EOF while parsing a value",
            ..add.clone()
        },
        BadCase {
            name: "configuration that is not an object",
            stdin: b"[]".to_vec(),
            code: 6,
            message: "not a JSON object",
            ..add.clone()
        },
        BadCase {
            name: "unknown CNI_COMMAND",
            command: "FROB",
            code: 4,
            message: "CNI_COMMAND",
            ..add.clone()
        },
        BadCase {
            name: "empty container id",
            container_id: "",
            code: 4,
            message: "CNI_CONTAINERID",
            ..add.clone()
        },
        BadCase {
            name: "container id climbing out of the data dir",
            container_id: "../../etc",
            code: 4,
            message: "CNI_CONTAINERID",
            ..add.clone()
        },
        BadCase {
            name: "container id with a slash",
            container_id: "a/b",
            code: 4,
            message: "CNI_CONTAINERID",
            ..add.clone()
        },
        BadCase {
            name: "container id of 300 bytes",
            container_id: &long_id,
            code: 4,
            message: "CNI_CONTAINERID",
            ..add.clone()
        },
        BadCase {
            name: "interface name longer than 15 bytes",
            ifname: "eth0-far-too-long",
            code: 4,
            message: "CNI_IFNAME",
            ..add.clone()
        },
        BadCase {
            name: "interface name that is a path",
            ifname: "../x",
            code: 4,
            message: "CNI_IFNAME",
            ..add.clone()
        },
        BadCase {
            name: "ADD without a namespace",
            netns: "",
            code: 4,
            message: "CNI_NETNS",
            ..add.clone()
        },
        BadCase {
            name: "namespace that does not exist",
            netns: "/run/netns/nope",
            code: 4,
            message: "CNI_NETNS",
            ..add.clone()
        },
        BadCase {
            name: "network name climbing out of the data dir",
            stdin: with(&["name"], json!("../escape")),
            code: 7,
            message: "name",
            ..add.clone()
        },
        BadCase {
            name: "network name with a slash",
            stdin: with(&["name"], json!("a/b")),
            code: 7,
            message: "name",
            ..add.clone()
        },
        BadCase {
            name: "network name with a NUL",
            stdin: with(&["name"], json!("a\u{0}b")),
            code: 7,
            message: "name",
            ..add.clone()
        },
        BadCase {
            name: "network name of 300 bytes",
            stdin: with(&["name"], json!("n".repeat(300))),
            code: 7,
            message: "name",
            ..add.clone()
        },
        BadCase {
            name: "unsupported cniVersion",
            stdin: with(&["cniVersion"], json!("0.3.1")),
            code: 1,
            message: "0.3.1",
            ..add.clone()
        },
        BadCase {
            name: "an IPAM type other than sixlane's",
            stdin: with(&["ipam", "type"], json!("dhcp")),
            code: 2,
            message: "ipam.type",
            ..add.clone()
        },
        BadCase {
            name: "an IPv4 range",
            stdin: with(&["ipam", "ranges"], json!([[{"subnet": "10.1.0.0/16"}]])),
            code: 7,
            message: "IPv6-only",
            ..add.clone()
        },
        BadCase {
            name: "a subnet with host bits set",
            stdin: with(&["ipam", "ranges"], json!([[{"subnet": "fd00::1/64"}]])),
            code: 7,
            message: "host bits",
            ..add.clone()
        },
        BadCase {
            name: "a /127 subnet",
            stdin: with(&["ipam", "ranges"], json!([[{"subnet": "fd00::/127"}]])),
            code: 7,
            message: "too small",
            ..add.clone()
        },
        BadCase {
            name: "a /128 subnet",
            stdin: with(&["ipam", "ranges"], json!([[{"subnet": "fd00::/128"}]])),
            code: 7,
            message: "too small",
            ..add.clone()
        },
        BadCase {
            name: "rangeStart outside the subnet",
            stdin: with(
                &["ipam", "ranges"],
                json!([[{"subnet": "fd00::/64", "rangeStart": "fd01::5"}]]),
            ),
            code: 7,
            message: "rangeStart",
            ..add.clone()
        },
        BadCase {
            name: "overlapping range sets",
            stdin: with(
                &["ipam", "ranges"],
                json!([[{"subnet": "fd00::/64"}], [{"subnet": "fd00::/80"}]]),
            ),
            code: 7,
            message: "overlaps",
            ..add.clone()
        },
        BadCase {
            name: "a requested address outside the ranges",
            stdin: with(&["runtimeConfig"], json!({"ips": ["fd00:99::1"]})),
            code: 7,
            message: "runtimeConfig.ips[0]",
            ..add.clone()
        },
        BadCase {
            name: "GC in a spec version before 1.1.0",
            command: "GC",
            container_id: "",
            netns: "",
            ifname: "",
            code: 1,
            message: "GC",
            ..add.clone()
        },
    ];
    for case in &cases {
        let name = case.name;
        assert!(
            !name.is_empty() && case.code != 0 && !case.message.is_empty(),
            "every case is named and says which error it expects"
        );
        let call = Call::new(case.command, case.container_id, case.netns, case.ifname);
        let out = net.plugin.call_raw(Some(&net.node), &call, &case.stdin);
        assert_eq!(
            out.code(),
            case.code,
            "{name}: error code of {}",
            out.stdout
        );
        let message = out.message();
        assert!(
            message.contains(case.message),
            "{name}: message {message:?} lacks {:?}",
            case.message
        );
        // Nothing written: not even the network directory, no link.
        let entries: Vec<_> = fs::read_dir(net.data.path()).unwrap().flatten().collect();
        assert!(entries.is_empty(), "{name}: wrote {entries:?}");
        assert_eq!(net.node_links(), ["lo"], "{name}: left a link");
    }
    // Nothing escaped the data dir either.
    assert!(!net.data.path().parent().unwrap().join("escape").exists());
}

#[test]
fn every_failure_after_allocation_rolls_back() {
    let net = Net::new();
    let conf = net.conf("1.1.0");
    // 1. The interface name is taken in the pod: fails at veth creation.
    let pod = NetNs::new().unwrap();
    pod.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "x0"])
        .unwrap();
    let out = net.add("taken", &pod, &conf);
    assert_eq!(out.code(), 7, "{}", out.stdout);
    assert!(out.message().contains("eth0"), "{}", out.message());
    assert!(net.reservations().is_empty());
    assert_eq!(net.node_links(), ["lo"]);
    // 2. A route the kernel refuses (gateway not on-link), after the veth, its addresses and
    //    the host route exist.
    let mut bad_route = conf.clone();
    bad_route["ipam"]["routes"] = json!([{"dst": "fd00:99::/64", "gw": "fd00:77::1"}]);
    let pod = NetNs::new().unwrap();
    let out = net.add("badroute", &pod, &bad_route);
    assert!(!out.success);
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());
    assert_eq!(net.node_links(), ["lo"]);
    assert_eq!(cni::links(&pod), ["lo"]);
    let host_routes = ip_json(&net.node, &["-6", "route", "show"]);
    assert!(
        !host_routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"].as_str().unwrap_or("").starts_with("fd00:10:244:1")),
        "{host_routes}"
    );
    // 3. The dataplane fails after plumbing: the second pod program's pin is not a program.
    let (pins, layout, _dp) = load_datapath();
    let to_pod = layout.prog(PROG_TO_POD);
    fs::remove_file(&to_pod).unwrap();
    Command::new("bpftool")
        .args(["map", "create"])
        .arg(&to_pod)
        .args([
            "type",
            "array",
            "key",
            "4",
            "value",
            "4",
            "entries",
            "1",
            "name",
            "sltbroken",
        ])
        .status()
        .unwrap();
    assert!(to_pod.exists());
    for mode in AttachMode::ALL {
        let mut dp = conf.clone();
        dp["dataplane"] = json!("required");
        dp["attach"] = json!(mode.as_str());
        dp["pinRoot"] = json!(pins.path());
        let pod = NetNs::new().unwrap();
        let out = net.add("baddp", &pod, &dp);
        assert!(!out.success, "{mode}");
        assert!(
            out.message().contains(PROG_TO_POD),
            "{mode}: {}",
            out.message()
        );
        assert!(net.reservations().is_empty(), "{mode}");
        assert_eq!(net.node_links(), ["lo"], "{mode}");
        let links: Vec<_> = fs::read_dir(layout.links_dir())
            .map(|rd| rd.flatten().collect())
            .unwrap_or_default();
        assert!(links.is_empty(), "{mode}: link pins left: {links:?}");
    }
}

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

fn hook_of(h: Hook) -> TcAttachType {
    match h {
        Hook::Ingress => TcAttachType::Ingress,
        Hook::Egress => TcAttachType::Egress,
    }
}

/// Everything a required dataplane promises on `host_if` in `mode`, read back independently:
/// each pod program runs exactly once on its hook, as the program pinned now; nothing else is
/// attached; link pins exactly in TCX mode.
fn verify_attached(net: &Net, layout: &PinLayout, host_if: &str, mode: AttachMode) {
    for (prog, hook) in POD_PROGRAMS {
        let hook = hook_of(hook);
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

fn dataplane_conf(net: &Net, version: &str, pins: &Path, mode: AttachMode) -> Value {
    let mut conf = net.conf(version);
    conf["dataplane"] = json!("required");
    conf["attach"] = json!(mode.as_str());
    conf["pinRoot"] = json!(pins);
    conf
}

/// ADD attaches, traffic is counted, CHECK passes and notices a removed attachment, DEL removes
/// everything (and is idempotent).
fn dataplane_round(mode: AttachMode) {
    let (pins, layout, _dp) = load_datapath();
    let net = Net::new();
    let conf = dataplane_conf(&net, "1.1.0", pins.path(), mode);
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
    let conf = dataplane_conf(&net, "1.1.0", pins.path(), mode);
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
    let conf = dataplane_conf(&net, "1.0.0", pins.path(), mode);
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

/// tc mode puts a clsact qdisc on the host veth, and the reference bandwidth plugin's egress
/// shaping needs the `ingress` qdisc there (to redirect to an ifb): it fails. Ingress shaping (a
/// tbf root qdisc) works in both modes; egress shaping needs `attach: tcx` (docs/cni.md).
#[test]
fn bandwidth_egress_shaping_needs_the_tcx_mode() {
    let (pins, _layout, _dp) = load_datapath();
    let net = Net::new();
    let bandwidth = Plugin::at("/usr/lib/cni/bandwidth");
    for mode in AttachMode::ALL {
        let conf = dataplane_conf(&net, "1.0.0", pins.path(), mode);
        let pod = NetNs::new().unwrap();
        let netns = pod.path().display().to_string();
        let ours = net.add("bw", &pod, &conf).result().clone();
        let add = Call::new("ADD", "bw", &netns, "eth0");
        let del = Call::new("DEL", "bw", &netns, "eth0");
        let bw_conf = |rates: Value| {
            json!({
                "cniVersion": "1.0.0", "name": net.name, "type": "bandwidth",
                "runtimeConfig": {"bandwidth": rates}, "prevResult": ours,
            })
        };
        let c = bw_conf(json!({"ingressRate": 8_000_000, "ingressBurst": 80_000}));
        bandwidth.call(Some(&net.node), &add, &c).result();
        bandwidth.call(Some(&net.node), &del, &c).ok();
        let c = bw_conf(json!({"egressRate": 8_000_000, "egressBurst": 80_000}));
        let egress = bandwidth.call(Some(&net.node), &add, &c);
        match mode {
            AttachMode::Tc => {
                assert!(!egress.success, "{}", egress.stdout);
                assert!(egress.stdout.contains("ingress qdisc"), "{}", egress.stdout);
            }
            AttachMode::Tcx => {
                egress.result();
            }
        }
        bandwidth.call(Some(&net.node), &del, &c).ok();
        net.call("DEL", "bw", &netns, &conf).ok();
        // The failed egress ADD leaves its ifb behind (bandwidth does not roll back): remove it.
        for l in net.node_links() {
            if l != "lo" {
                let _ = net.node.ip(&["link", "del", &l]);
            }
        }
        assert_eq!(net.node_links(), ["lo"]);
    }
}

#[test]
fn status_fails_with_50_when_a_range_set_is_exhausted() {
    let net = Net::new();
    let mut conf = net.conf("1.1.0");
    conf["ipam"]["ranges"] = json!([[{"subnet": "fd00:30::/64", "rangeStart": "fd00:30::10", "rangeEnd": "fd00:30::11"}]]);
    let pods: Vec<NetNs> = (0..3).map(|_| NetNs::new().unwrap()).collect();
    net.call("STATUS", "", "", &conf).ok();
    net.add("s0", &pods[0], &conf).result();
    net.add("s1", &pods[1], &conf).result();
    assert_eq!(net.call("STATUS", "", "", &conf).code(), 50);
    let out = net.add("s2", &pods[2], &conf);
    assert_eq!(out.code(), 11);
    assert_eq!(net.node_links().len(), 3, "the failed ADD left no veth");
    net.call("DEL", "s0", "", &conf).ok();
    net.call("STATUS", "", "", &conf).ok();
    net.call("DEL", "s1", "", &conf).ok();
}

#[test]
fn gc_releases_what_is_not_a_valid_attachment() {
    let net = Net::new();
    let conf = net.conf("1.1.0");
    let pods: Vec<NetNs> = (0..3).map(|_| NetNs::new().unwrap()).collect();
    for (i, p) in pods.iter().enumerate() {
        net.add(&format!("g{i}"), p, &conf).result();
    }
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "g1", "ifname": "eth0"}]);
    net.call("GC", "", "", &gc).ok();
    let left = net.reservations();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1, "g1\r\neth0");
    for i in 0..3 {
        net.call("DEL", &format!("g{i}"), "", &conf).ok();
    }
}

#[test]
fn reservations_stamped_with_an_earlier_boot_are_released() {
    let net = Net::new();
    let conf = net.conf("1.1.0");
    let pod = NetNs::new().unwrap();
    let r = net.add("before-reboot", &pod, &conf).result().clone();
    let ip = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // Pretend the reservation and the last sweep happened in another boot.
    let side = net.data.path().join(".sixlane").join(&net.name);
    let stamp = side.join(&ip);
    let body = fs::read_to_string(&stamp).unwrap();
    let (_, owner) = body.split_once('\n').unwrap();
    fs::write(
        &stamp,
        format!("boot 00000000-0000-0000-0000-000000000000\n{owner}"),
    )
    .unwrap();
    fs::write(side.join("boot"), "00000000-0000-0000-0000-000000000000").unwrap();
    net.call("STATUS", "", "", &conf).ok();
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());
    net.call("DEL", "before-reboot", "", &conf).ok();
}

#[test]
fn parallel_adds_get_distinct_addresses() {
    let net = Net::new();
    let conf = net.conf("1.0.0");
    const N: usize = 64;
    for round in 0..3 {
        let pods: Vec<NetNs> = (0..N).map(|_| NetNs::new().unwrap()).collect();
        let outs: Vec<cni::Output> = thread::scope(|s| {
            let hs: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let (net, conf) = (&net, &conf);
                    s.spawn(move || net.add(&format!("p{round}-{i}"), p, conf))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ips: HashSet<Ipv6Addr> = outs.iter().map(cni::Output::ip).collect();
        assert_eq!(ips.len(), N, "round {round}: duplicate addresses");
        assert_eq!(net.reservations().len(), N);
        assert_eq!(net.node_links().len(), N + 1);
        thread::scope(|s| {
            for i in 0..N {
                let (net, conf) = (&net, &conf);
                s.spawn(move || {
                    net.call("DEL", &format!("p{round}-{i}"), "", conf)
                        .ok()
                        .success
                });
            }
        });
        assert!(net.reservations().is_empty());
        assert_eq!(net.node_links(), ["lo"]);
    }
}

#[test]
fn kill_9_during_add_then_del_leaves_a_consistent_store() {
    let net = Net::new();
    let conf = net.conf("1.1.0");
    let conf_bytes = serde_json::to_vec(&conf).unwrap();
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut killed = Vec::new();
    let mut interrupted = 0;
    for i in 0..24 {
        let delay = Duration::from_micros(rng.below(6000) as u64);
        let pod = NetNs::new().unwrap();
        let id = format!("k{i}");
        if net.killed_add(&id, &pod, &conf_bytes, delay) {
            interrupted += 1;
        }
        // Every reservation file is complete (never empty or partial).
        for (_, owner) in net.reservations() {
            assert!(
                owner.starts_with('k') && owner.ends_with("\r\neth0"),
                "{owner:?}"
            );
        }
        killed.push((id, pod));
    }
    assert!(interrupted > 0, "no ADD was killed while running");
    for (id, pod) in &killed {
        net.call("DEL", id, &pod.path().display().to_string(), &conf)
            .ok();
    }
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());
    assert_eq!(net.node_links(), ["lo"]);
    let names: Vec<String> = fs::read_dir(net.data.path().join(&net.name))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "lock" || n.starts_with("last_reserved_ip.")),
        "{names:?}"
    );
    // GC agrees: nothing valid, nothing left.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    net.call("GC", "", "", &gc).ok();
    assert!(net.reservations().is_empty());
}

/// Runs Debian's host-local directly (an IPAM plugin is callable on its own).
fn host_local(net: &Net, cmd: &str, id: &str, conf: &Value) -> cni::Output {
    let mut c = conf.clone();
    c["ipam"]["type"] = json!("host-local");
    Plugin::at("/usr/lib/cni/host-local").call(
        Some(&net.node),
        &Call::new(cmd, id, "/run/netns/unused", "eth0"),
        &c,
    )
}

#[test]
fn host_local_and_sixlane_share_reservations_both_ways() {
    assert!(
        Path::new("/usr/lib/cni/host-local").exists(),
        "Debian's containernetworking-plugins is missing (cargo xtask setup installs it)"
    );
    let net = Net::new();
    let mut conf = net.conf("1.0.0");
    conf["ipam"]["type"] = json!("host-local");
    // host-local reserves; sixlane sees it, continues its round robin, and releases it.
    let hl = host_local(&net, "ADD", "from-hl", &conf);
    let hl_ip = hl.ip();
    let pod = NetNs::new().unwrap();
    let ours = net.add("from-us", &pod, &conf);
    assert_eq!(
        u128::from(ours.ip()),
        u128::from(hl_ip) + 1,
        "round robin shared"
    );
    net.call("DEL", "from-hl", "", &conf).ok();
    assert!(!net.reservations().iter().any(|(ip, _)| *ip == hl_ip));
    // sixlane's reservation: byte-identical format, found and released by host-local.
    let r = net.reservations();
    assert_eq!(r, [(ours.ip(), "from-us\r\neth0".to_owned())]);
    host_local(&net, "CHECK", "from-us", &conf).ok();
    host_local(&net, "DEL", "from-us", &conf).ok();
    assert!(net.reservations().is_empty());
    // host-local continues after our last_reserved_ip.
    let next = host_local(&net, "ADD", "again", &conf);
    assert_eq!(u128::from(next.ip()), u128::from(ours.ip()) + 1);
    host_local(&net, "DEL", "again", &conf).ok();
    net.call("DEL", "from-us", "", &conf).ok();
}

#[test]
fn chains_with_the_reference_bandwidth_and_portmap_plugins() {
    let net = Net::new();
    let conf = net.conf("1.0.0");
    let pod = NetNs::new().unwrap();
    let netns = pod.path().display().to_string();
    let ours = net.add("chain", &pod, &conf).result().clone();
    let host_if = ours["interfaces"][0]["name"].as_str().unwrap().to_owned();
    let call = Call::new("ADD", "chain", &netns, "eth0");
    let bw_conf = json!({
        "cniVersion": "1.0.0", "name": net.name, "type": "bandwidth",
        "runtimeConfig": {"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 80_000,
                                         "egressRate": 8_000_000, "egressBurst": 80_000}},
        "prevResult": ours,
    });
    let bw = Plugin::at("/usr/lib/cni/bandwidth").call(Some(&net.node), &call, &bw_conf);
    let bw_result = bw.result().clone();
    // prevResult went through unchanged except what bandwidth adds (its ifb interface).
    assert_eq!(bw_result["ips"], ours["ips"]);
    assert_eq!(bw_result["routes"], ours["routes"]);
    assert_eq!(bw_result["interfaces"][0], ours["interfaces"][0]);
    let tc = net
        .node
        .exec("tc", &["qdisc", "show", "dev", &host_if])
        .unwrap();
    assert!(tc.contains("tbf"), "no tbf on {host_if}: {tc}");
    let pm_conf = json!({
        "cniVersion": "1.0.0", "name": net.name, "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": bw_result,
    });
    let pm = Plugin::at("/usr/lib/cni/portmap").call(Some(&net.node), &call, &pm_conf);
    assert_eq!(pm.result()["ips"], ours["ips"]);
    let rules = net.node.exec("ip6tables-save", &[]).unwrap();
    assert!(rules.contains("18080"), "{rules}");
    // DEL in reverse order, each with the final result as prevResult.
    let final_result = pm.result().clone();
    let del = Call::new("DEL", "chain", &netns, "eth0");
    let mut pm_del = pm_conf.clone();
    pm_del["prevResult"] = final_result.clone();
    Plugin::at("/usr/lib/cni/portmap")
        .call(Some(&net.node), &del, &pm_del)
        .ok();
    let mut bw_del = bw_conf.clone();
    bw_del["prevResult"] = final_result.clone();
    Plugin::at("/usr/lib/cni/bandwidth")
        .call(Some(&net.node), &del, &bw_del)
        .ok();
    net.call("DEL", "chain", &netns, &with_prev(&conf, &final_result))
        .ok();
    assert!(net.reservations().is_empty());
    assert!(!net.node_links().iter().any(|l| l == &host_if));
}

#[test]
fn range_gateway_mode_routes_via_the_range_gateway() {
    let net = Net::new();
    let mut conf = net.conf("1.1.0");
    conf["podGateway"] = json!("range");
    let (pa, pb) = (NetNs::new().unwrap(), NetNs::new().unwrap());
    let ra = net.add("ra", &pa, &conf).result().clone();
    let rb = net.add("rb", &pb, &conf).result().clone();
    assert_eq!(ra["ips"][0]["gateway"], "fd00:10:244:1::1");
    let routes = ip_json(&pa, &["-6", "route", "show"]);
    assert_eq!(
        route(&routes, "default").unwrap()["gateway"],
        "fd00:10:244:1::1"
    );
    // The gateway itself is on-link (IPv6 keeps no route scope; no gateway on this route).
    let gw = route(&routes, "fd00:10:244:1::1").expect("gateway /128 on-link route");
    assert_eq!(gw["dev"], "eth0");
    assert!(gw.get("gateway").is_none(), "{gw}");
    let host_if = ra["interfaces"][0]["name"].as_str().unwrap();
    let hl = &ip_json(&net.node, &["-6", "addr", "show", "dev", host_if])[0];
    assert!(
        hl["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "fd00:10:244:1::1" && a["prefixlen"] == 128),
        "{hl}"
    );
    let b_addr = rb["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    pa.exec("ping", &["-6", "-c", "1", "-W", "2", &b_addr])
        .unwrap();
    let netns = pa.path().display().to_string();
    net.call("CHECK", "ra", &netns, &with_prev(&conf, &ra)).ok();
    net.call("DEL", "ra", "", &conf).ok();
    net.call("DEL", "rb", "", &conf).ok();
    assert_eq!(net.node_links(), ["lo"]);
}

#[test]
fn check_reports_what_differs_from_prev_result() {
    let net = Net::new();
    let conf = net.conf("1.1.0");
    let pod = NetNs::new().unwrap();
    let netns = pod.path().display().to_string();
    let r = net.add("chk", &pod, &conf).result().clone();
    let check = |prev: &Value| net.call("CHECK", "chk", &netns, &with_prev(&conf, prev));
    check(&r).ok();
    // prevResult missing: an invalid request.
    assert_eq!(net.call("CHECK", "chk", &netns, &conf).code(), 7);
    // A MAC that is not the interface's.
    let mut wrong_mac = r.clone();
    wrong_mac["interfaces"][1]["mac"] = json!("02:00:00:00:00:01");
    assert_eq!(check(&wrong_mac).code(), 100);
    // A route prevResult lists that the pod lacks.
    pod.ip(&["-6", "route", "del", "64:ff9b::/96"]).unwrap();
    let out = check(&r);
    assert_eq!(out.code(), 100);
    assert!(out.message().contains("64:ff9b::/96"), "{}", out.message());
    // The address is gone.
    let ip = r["ips"][0]["address"].as_str().unwrap();
    pod.ip(&["-6", "addr", "del", ip, "dev", "eth0"]).unwrap();
    assert_eq!(check(&r).code(), 100);
    net.call("DEL", "chk", &netns, &conf).ok();
}
