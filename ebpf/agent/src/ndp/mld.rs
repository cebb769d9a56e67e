//! Membership of the solicited-node multicast groups of the owned addresses on the uplink
//! (RFC 4861 §7.2.1): joined on a socket the agent holds, so the kernel sends the MLD reports
//! and answers the queries (snooping switches then deliver the multicast solicitations here),
//! and programs the NIC's multicast filter to accept them. Addresses sharing their low 24 bits
//! share a group, joined once.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv6Addr, UdpSocket},
};

use sixlane_common::ndp::solicited_node;

use crate::{Error, Result};

pub struct Groups {
    sock: UdpSocket,
    /// Joined groups, on which interface, and how many owned addresses map to each.
    joined: BTreeMap<(Ipv6Addr, u32), usize>,
}

impl Groups {
    pub fn new() -> Result<Self> {
        let sock = UdpSocket::bind("[::]:0").map_err(|source| Error::Ndp {
            what: "opening the socket for MLD memberships",
            uplink: String::new(),
            source,
        })?;
        Ok(Self {
            sock,
            joined: BTreeMap::new(),
        })
    }

    /// Joins the groups of `addrs` on `ifindex` and leaves every other group.
    pub fn sync(&mut self, uplink: &str, ifindex: u32, addrs: &BTreeSet<Ipv6Addr>) -> Result<()> {
        let mut want: BTreeMap<(Ipv6Addr, u32), usize> = BTreeMap::new();
        for a in addrs {
            *want
                .entry((solicited_node(&a.octets()).into(), ifindex))
                .or_default() += 1;
        }
        let err = |what, source| Error::Ndp {
            what,
            uplink: uplink.to_owned(),
            source,
        };
        let stale: Vec<_> = self
            .joined
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for (g, i) in stale {
            self.joined.remove(&(g, i));
            self.sock
                .leave_multicast_v6(&g, i)
                .map_err(|e| err("leaving a solicited-node group", e))?;
        }
        for (k, n) in want {
            if !self.joined.contains_key(&k) {
                self.sock
                    .join_multicast_v6(&k.0, k.1)
                    .map_err(|e| err("joining a solicited-node group", e))?;
            }
            self.joined.insert(k, n);
        }
        Ok(())
    }

    /// The groups joined now.
    pub fn joined(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.joined.keys().map(|k| k.0)
    }
}
