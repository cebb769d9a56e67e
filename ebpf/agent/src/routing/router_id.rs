//! BGP router IDs. Every session's OPEN carries a 32-bit identifier that must be unique among a
//! router's peers and, by old rules many routers still apply, a unicast IPv4 address: peers
//! refuse 0.0.0.0 and anything in 224/3 as a "Bad BGP Identifier" (Calico's hash-derived IDs
//! landed there). An IPv6-only node has no IPv4 address to take one from, so when
//! `bgp.routerID` is unset sixlane derives one from the node name.
//!
//! Derivation: the 64-bit FNV-1a hash of the node name's bytes, modulo the number of usable
//! IDs (222 × 2²⁴), mapped in order onto 1.0.0.0–126.255.255.255 and
//! 128.0.0.0–223.255.255.255. So it is never in 0/8, 127/8 (loopback) or 224/3 (multicast and
//! reserved), and the same name gives the same ID on every node, build and version. Two names
//! collide with a chance of about 1 in 3.7 × 10⁹ per pair (for 5,000 nodes, about 0.3 % that
//! any two do): set `bgp.nodes[].routerID` where uniqueness must be guaranteed. It imports
//! nothing of the crate.

use std::net::Ipv4Addr;

/// How many IDs [`derive`] can give: the first octets 1..=223 without 127.
const USABLE: u64 = 222 << 24;

/// The router ID of the node called `node` (see the module docs).
pub fn derive(node: &str) -> Ipv4Addr {
    nth_usable(fnv1a(node.as_bytes()) % USABLE)
}

/// The `index`th usable ID in address order (`index < USABLE`).
fn nth_usable(index: u64) -> Ipv4Addr {
    let mut first = (index >> 24) + 1;
    if first >= 127 {
        first += 1;
    }
    // Fits: first <= 223 and the rest is below 2^24.
    Ipv4Addr::from(((first << 24) | (index & 0x00ff_ffff)) as u32)
}

/// Why `id` cannot be a router ID, if it cannot.
pub fn unusable(id: Ipv4Addr) -> Option<&'static str> {
    match id.octets()[0] {
        0 => Some("in 0.0.0.0/8 (\"this network\"; 0.0.0.0 is no identifier)"),
        127 => Some("in 127.0.0.0/8 (loopback)"),
        224.. => {
            Some("in 224.0.0.0/3 (multicast and reserved: peers refuse it as a Bad BGP Identifier)")
        }
        _ => None,
    }
}

/// FNV-1a, 64-bit: specified, so stable (unlike std's hashers).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable() {
        // Pinned: a change here changes every node's router ID on upgrade.
        for (name, id) in [
            ("node-a", "160.120.203.83"),
            ("node-b", "206.120.205.6"),
            ("kind-worker", "185.9.113.164"),
            ("", "144.34.35.37"),
        ] {
            assert_eq!(derive(name), id.parse::<Ipv4Addr>().unwrap(), "{name:?}");
        }
    }

    #[test]
    fn derived_ids_are_always_usable_and_spread() {
        let mut firsts = std::collections::BTreeSet::new();
        for i in 0..20_000 {
            let id = derive(&format!("node-{i}"));
            assert_eq!(unusable(id), None, "node-{i}: {id}");
            firsts.insert(id.octets()[0]);
        }
        // Uniform over 222 first octets: 20,000 names hit every one.
        assert_eq!(firsts.len(), 222);
    }

    #[test]
    fn the_ends_of_the_mapping() {
        assert_eq!(nth_usable(0), Ipv4Addr::new(1, 0, 0, 0));
        assert_eq!(
            nth_usable((126 << 24) - 1),
            Ipv4Addr::new(126, 255, 255, 255)
        );
        assert_eq!(nth_usable(126 << 24), Ipv4Addr::new(128, 0, 0, 0));
        assert_eq!(nth_usable(USABLE - 1), Ipv4Addr::new(223, 255, 255, 255));
    }

    #[test]
    fn unusable_ranges() {
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
        ] {
            assert!(unusable(bad.parse().unwrap()).is_some(), "{bad}");
        }
        for ok in [
            "1.0.0.0",
            "10.0.0.1",
            "126.255.255.255",
            "128.0.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(unusable(ok.parse().unwrap()), None, "{ok}");
        }
        assert!(unusable("255.255.255.255".parse().unwrap()).is_some());
    }
}
