//! What the `sixlane` CNI plugin refuses and how it fails: bad input gets the spec's error code
//! and a message naming what is wrong, with nothing written; every failure after the address
//! is allocated rolls back the veth, the routes, the reservation and any attachment.

use std::{fs, process::Command};

use serde_json::{Value, json};
use sixlane_attach::AttachMode;
use sixlane_common::layout::PROG_TO_POD;
use sixlane_testkit::NetNs;
use sixlane_tests::{
    cni::{self, Call},
    cni_node::{Net, ip_json},
    load_datapath,
};

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
    // Paths that exist and are no network namespace.
    let junk = cni::TempDir::new('j');
    let file = junk.path().join("file");
    fs::write(&file, "").unwrap();
    let (file, dir) = (
        file.display().to_string(),
        junk.path().display().to_string(),
    );
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
            name: "namespace that is a regular file",
            netns: &file,
            code: 4,
            message: "is not a network namespace",
            ..add.clone()
        },
        BadCase {
            name: "namespace that is a directory",
            netns: &dir,
            code: 4,
            message: "is not a network namespace",
            ..add.clone()
        },
        BadCase {
            name: "a mount namespace",
            netns: "/proc/self/ns/mnt",
            code: 4,
            message: "is not a network namespace",
            ..add.clone()
        },
        BadCase {
            name: "plugin type that is not a string",
            stdin: with(&["type"], json!(5)),
            code: 6,
            message: "type must be a string",
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
