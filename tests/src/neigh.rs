//! What a namespace's network stack says about a link: an interface's MAC and a neighbour
//! entry (iproute2's JSON), for the Neighbor Discovery tests.

use std::net::Ipv6Addr;

use serde_json::Value;
use sixlane_testkit::NetNs;

/// The Ethernet address of `dev` in `ns`.
pub fn mac_of(ns: &NetNs, dev: &str) -> [u8; 6] {
    let v: Value =
        serde_json::from_str(&ns.ip(&["-j", "link", "show", "dev", dev]).unwrap()).unwrap();
    let s = v[0]["address"].as_str().unwrap();
    let b: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    b.try_into().unwrap()
}

/// `mac` as iproute2 writes it.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// `ns`'s neighbour entry for `a` on `dev`: its state(s) and link-layer address.
pub fn neigh(ns: &NetNs, dev: &str, a: Ipv6Addr) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(
        &ns.ip(&["-j", "-6", "neigh", "show", &a.to_string(), "dev", dev])
            .unwrap(),
    )
    .unwrap();
    let e = v.as_array()?.first()?;
    let state = e["state"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(",");
    Some((state, e["lladdr"].as_str().unwrap_or_default().to_owned()))
}
