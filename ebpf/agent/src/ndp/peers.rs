//! The other nodes on the uplink's link, as their heartbeats tell: which node is alive there and
//! which L2 LoadBalancer IPs it could serve (has a ready endpoint for). A pure module: the wire
//! format of a heartbeat and the membership table, driven by the caller's clock.
//!
//! A heartbeat is one UDP datagram to the link-local group (`ndp.heartbeat`):
//!
//! ```text
//! "SLHB" | version 1 | flags (bit 0: leaving) | name length (u16) | claims (u16) | name | claims × 16
//! ```
//!
//! Many claims make a datagram larger than the link MTU; the kernel fragments it (a lost
//! fragment loses one heartbeat; the next follows [`INTERVAL`] later).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
    time::{Duration, Instant},
};

/// How often a node sends its heartbeat.
pub const INTERVAL: Duration = Duration::from_millis(200);
/// A node not heard from for this long is gone: its addresses are taken over.
pub const TIMEOUT: Duration = Duration::from_millis(1500);
/// The most claims a heartbeat carries (it stays under UDP's 64 KiB).
pub const MAX_CLAIMS: usize = 4000;

const MAGIC: &[u8; 4] = b"SLHB";
const VERSION: u8 = 1;
const FLAG_LEAVING: u8 = 1;
const HEAD: usize = 10;

/// One heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub node: String,
    /// The node stops: its addresses are to be taken over now, not after [`TIMEOUT`].
    pub leaving: bool,
    pub claims: BTreeSet<Ipv6Addr>,
}

impl Heartbeat {
    pub fn encode(&self) -> Vec<u8> {
        let name = self.node.as_bytes();
        let claims: Vec<&Ipv6Addr> = self.claims.iter().take(MAX_CLAIMS).collect();
        let mut b = Vec::with_capacity(HEAD + name.len() + 16 * claims.len());
        b.extend_from_slice(MAGIC);
        b.push(VERSION);
        b.push(if self.leaving { FLAG_LEAVING } else { 0 });
        b.extend_from_slice(&(name.len() as u16).to_be_bytes());
        b.extend_from_slice(&(claims.len() as u16).to_be_bytes());
        b.extend_from_slice(name);
        for c in claims {
            b.extend_from_slice(&c.octets());
        }
        b
    }

    /// The heartbeat in `b`, or why it is not one.
    pub fn decode(b: &[u8]) -> Result<Self, &'static str> {
        if b.len() < HEAD || &b[..4] != MAGIC {
            return Err("not a sixlane heartbeat");
        }
        if b[4] != VERSION {
            return Err("unknown heartbeat version");
        }
        let name_len = u16::from_be_bytes([b[6], b[7]]) as usize;
        let count = u16::from_be_bytes([b[8], b[9]]) as usize;
        if b.len() != HEAD + name_len + 16 * count {
            return Err("length disagrees with its counts");
        }
        let node = std::str::from_utf8(&b[HEAD..HEAD + name_len])
            .map_err(|_| "node name not UTF-8")?
            .to_owned();
        if node.is_empty() {
            return Err("empty node name");
        }
        let claims = b[HEAD + name_len..]
            .chunks_exact(16)
            .map(|c| Ipv6Addr::from(<[u8; 16]>::try_from(c).expect("16-byte chunk")))
            .collect();
        Ok(Self {
            node,
            leaving: b[5] & FLAG_LEAVING != 0,
            claims,
        })
    }
}

/// A node heard on the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Where its heartbeats come from (its link-local address on the link).
    pub from: Ipv6Addr,
    pub claims: BTreeSet<Ipv6Addr>,
    pub seen: Instant,
}

/// The nodes alive on the link (this one excepted).
#[derive(Clone, Debug, Default)]
pub struct Membership {
    peers: BTreeMap<String, Peer>,
}

impl Membership {
    /// Takes `hb` from `from` into account; whether what the table says changed (a node came,
    /// left, or claims something else).
    pub fn heard(&mut self, me: &str, hb: Heartbeat, from: Ipv6Addr, now: Instant) -> bool {
        if hb.node == me {
            return false;
        }
        if hb.leaving {
            return self.peers.remove(&hb.node).is_some();
        }
        let changed = self
            .peers
            .get(&hb.node)
            .is_none_or(|p| p.claims != hb.claims);
        let peer = Peer {
            from,
            claims: hb.claims,
            seen: now,
        };
        self.peers.insert(hb.node, peer);
        changed
    }

    /// Forgets the nodes silent for [`TIMEOUT`]; whether any was.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.peers.len();
        self.peers
            .retain(|_, p| now.saturating_duration_since(p.seen) < TIMEOUT);
        self.peers.len() != before
    }

    pub fn peers(&self) -> &BTreeMap<String, Peer> {
        &self.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn hb(node: &str, leaving: bool, claims: &[&str]) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            leaving,
            claims: claims.iter().map(|c| ip(c)).collect(),
        }
    }

    #[test]
    fn heartbeats_round_trip_and_bad_ones_are_refused() {
        for h in [
            hb("node-1", false, &["2001:db8::1", "2001:db8::2"]),
            hb("n", true, &[]),
        ] {
            assert_eq!(Heartbeat::decode(&h.encode()), Ok(h));
        }
        let good = hb("node-1", false, &["2001:db8::1"]).encode();
        assert_eq!(
            Heartbeat::decode(&good[..good.len() - 1]),
            Err("length disagrees with its counts")
        );
        assert_eq!(
            Heartbeat::decode(b"HTTP/1.1 200"),
            Err("not a sixlane heartbeat")
        );
        let mut v2 = good.clone();
        v2[4] = 2;
        assert_eq!(Heartbeat::decode(&v2), Err("unknown heartbeat version"));
        assert_eq!(
            Heartbeat::decode(&hb("", false, &[]).encode()),
            Err("empty node name")
        );
    }

    #[test]
    fn nodes_come_change_leave_and_time_out() {
        let t0 = Instant::now();
        let from = ip("fe80::2");
        let mut m = Membership::default();
        assert!(!m.heard("me", hb("me", false, &["2001:db8::1"]), from, t0));
        assert!(m.heard("me", hb("b", false, &["2001:db8::1"]), from, t0));
        assert!(!m.heard("me", hb("b", false, &["2001:db8::1"]), from, t0 + INTERVAL));
        assert!(m.heard("me", hb("b", false, &[]), from, t0 + INTERVAL * 2));
        assert!(m.heard("me", hb("c", false, &[]), from, t0 + INTERVAL * 2));
        // b keeps talking, c falls silent.
        let later = t0 + INTERVAL * 2 + TIMEOUT;
        assert!(!m.heard("me", hb("b", false, &[]), from, later));
        assert!(m.expire(later));
        assert_eq!(m.peers().keys().collect::<Vec<_>>(), ["b"]);
        assert!(!m.expire(later));
        assert!(m.heard("me", hb("b", true, &[]), from, later));
        assert!(m.peers().is_empty());
        assert!(!m.heard("me", hb("b", true, &[]), from, later));
    }
}
