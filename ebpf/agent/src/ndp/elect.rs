//! Which node answers for each L2 LoadBalancer IP: among the live nodes that claim it (have a
//! ready endpoint of a Service using it), the one ranking first for that address. Every node
//! computes the same answer from the same heartbeats, with no coordination: ranking by a hash
//! of (node, address) spreads the addresses over the candidates, and an address moves only
//! when its owner stops being a candidate or a better-ranked one appears (MetalLB's layer-2
//! rule).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
};

use super::peers::Peer;

/// FNV-1a over `node`, a separator and `addr`, then MurmurHash3's finalizer (FNV alone leaves
/// the last bytes in the low bits, so the node name would decide every address): stable
/// across builds and architectures, which every node of a cluster must agree on (std's hasher
/// is not).
fn rank(node: &str, addr: Ipv6Addr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([b'#']).chain(addr.octets()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// What one node knows to decide: itself and what it claims, the live peers and the Node
/// names of the cluster (a heartbeat naming no Node is not a candidate).
pub struct Input<'a> {
    pub me: &'a str,
    pub claims: &'a BTreeSet<Ipv6Addr>,
    pub peers: &'a BTreeMap<String, Peer>,
    pub nodes: &'a BTreeSet<String>,
}

/// The owner of every address of `addresses` (`None`: no live node claims it).
pub fn owners(
    input: &Input<'_>,
    addresses: &BTreeSet<Ipv6Addr>,
) -> BTreeMap<Ipv6Addr, Option<String>> {
    addresses
        .iter()
        .map(|a| (*a, candidates(input, *a).into_iter().next()))
        .collect()
}

/// The live nodes claiming `addr`, best-ranked first.
pub fn candidates(input: &Input<'_>, addr: Ipv6Addr) -> Vec<String> {
    let mut c: Vec<(u64, &str)> = input
        .peers
        .iter()
        .filter(|(n, p)| p.claims.contains(&addr) && input.nodes.contains(*n))
        .map(|(n, _)| n.as_str())
        .chain(input.claims.contains(&addr).then_some(input.me))
        .map(|n| (rank(n, addr), n))
        .collect();
    c.sort_unstable();
    c.into_iter().map(|(_, n)| n.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn peer(claims: &[Ipv6Addr]) -> Peer {
        Peer {
            from: ip("fe80::1"),
            claims: claims.iter().copied().collect(),
            seen: Instant::now(),
        }
    }

    #[test]
    fn one_owner_among_claimants_and_every_node_agrees() {
        let addrs: BTreeSet<Ipv6Addr> = (1..=64u16)
            .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xb, i))
            .collect();
        let all: Vec<Ipv6Addr> = addrs.iter().copied().collect();
        let nodes: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        // Each node's own view: itself from its claims, the other two as peers.
        let views: Vec<BTreeMap<Ipv6Addr, Option<String>>> = ["a", "b", "c"]
            .iter()
            .map(|me| {
                let claims: BTreeSet<Ipv6Addr> = addrs.clone();
                let peers: BTreeMap<String, Peer> = nodes
                    .iter()
                    .filter(|n| n != me)
                    .map(|n| (n.clone(), peer(&all)))
                    .collect();
                let input = Input {
                    me,
                    claims: &claims,
                    peers: &peers,
                    nodes: &nodes,
                };
                owners(&input, &addrs)
            })
            .collect();
        assert_eq!(views[0], views[1]);
        assert_eq!(views[1], views[2]);
        // Spread: every node owns some of 64 addresses.
        for n in &nodes {
            let owned = views[0].values().filter(|o| o.as_ref() == Some(n)).count();
            assert!(owned > 5, "{n} owns {owned} of 64");
        }
    }

    #[test]
    fn only_claimants_that_are_nodes_and_moves_only_from_a_lost_owner() {
        let a = ip("2001:db8::b1");
        let nodes: BTreeSet<String> = ["me", "p", "q"].map(String::from).into();
        let none = BTreeSet::new();
        let mut peers: BTreeMap<String, Peer> = BTreeMap::new();
        peers.insert("p".into(), peer(&[a]));
        peers.insert("q".into(), peer(&[a]));
        peers.insert("stranger".into(), peer(&[a]));
        let input = Input {
            me: "me",
            claims: &none,
            peers: &peers,
            nodes: &nodes,
        };
        let c = candidates(&input, a);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(!c.contains(&"stranger".to_owned()) && !c.contains(&"me".to_owned()));
        // The owner goes: the other candidate takes over; the unclaimed address has none.
        let owner = c[0].clone();
        peers.remove(&owner);
        let input = Input {
            me: "me",
            claims: &none,
            peers: &peers,
            nodes: &nodes,
        };
        let addrs = BTreeSet::from([a, ip("2001:db8::b2")]);
        let o = owners(&input, &addrs);
        assert_eq!(o[&a], Some(c[1].clone()));
        assert_eq!(o[&ip("2001:db8::b2")], None);
    }
}
