//! Static bindings (RFC 6146 §3.5.1's static BIB entries, Jool's `bib add`): the operator's
//! `nat64.staticBindings`, checked, and reconciled into the pinned `SL_N64_STATIC` map.
//!
//! ```yaml
//! staticBindings:
//!   - {protocol: tcp, ipv4: "198.51.100.7:8080", ipv6: "[fd00:10::a]:80"}
//!   - {protocol: icmp, ipv4: "198.51.100.7:7", ipv6: "[fd00:10::a]:7"}   # echo identifiers
//! ```
//!
//! An IPv4 host may open a session to the pool address and port; it reaches the IPv6 transport
//! address as `Pref64::<host>`. The pod's own traffic from that address and port leaves through
//! the same pool address and port. Pool ports of static bindings lie outside the dynamic range
//! of their protocol, so the datapath never hands them out and a port of the node's own stays
//! the node's unless a binding names it.
//!
//! Reconciling keeps entries that did not change (their sessions carry on across restarts and
//! reloads) and removes the others with their sessions.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddrV4, SocketAddrV6},
};

use aya::maps::{HashMap, MapData};
use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use sixlane_common::{
    layout,
    nat64::maps::{Bib, BibKey, DIR_IN, DIR_OUT, MAX_STATIC_BINDINGS, PortRange, proto_index},
    net::proto,
};

use crate::{
    PinLayout, Result,
    pinned::{self, map_err},
    problem::Problems,
};

/// The protocol of a static binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP queries: the "ports" are echo identifiers.
    Icmp,
}

impl Protocol {
    /// The IPv4 protocol number, as the maps key it.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => proto::TCP,
            Protocol::Udp => proto::UDP,
            Protocol::Icmp => proto::ICMP,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// One static binding: `ipv4` (a pool address and a port outside the dynamic range) ↔ `ipv6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticBinding {
    pub protocol: Protocol,
    pub ipv4: SocketAddrV4,
    pub ipv6: SocketAddrV6,
}

impl StaticBinding {
    /// The two map entries: the IPv4 side's, then the IPv6 side's.
    pub fn entries(&self) -> [(BibKey, Bib); 2] {
        let p = self.protocol.number();
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&self.ipv4.ip().octets());
        let v6 = self.ipv6.ip().octets();
        let (t, x) = (self.ipv4.port(), self.ipv6.port());
        let entry = |dir, port, addr, to_addr, to_port| {
            (
                BibKey {
                    proto: p,
                    dir,
                    port,
                    addr,
                },
                Bib {
                    addr: to_addr,
                    port: to_port,
                    ..Default::default()
                },
            )
        };
        [entry(DIR_IN, t, v4, v6, x), entry(DIR_OUT, x, v6, v4, t)]
    }
}

/// What the bindings are checked against: the translating node's pool, dynamic ranges (TCP,
/// UDP, ICMP, as in the datapath's configuration) and prefix.
pub struct Context<'a> {
    pub pool: &'a [Ipv4Addr],
    pub ranges: [PortRange; 3],
    pub prefix: Ipv6Net,
}

/// Everything wrong with `list`, each problem under `staticBindings[i]`.
pub(crate) fn problems(list: &[StaticBinding], cx: &Context<'_>, p: &mut Problems) {
    if list.len() > MAX_STATIC_BINDINGS {
        p.add(
            "staticBindings",
            format!(
                "{} bindings; the datapath holds at most {MAX_STATIC_BINDINGS}",
                list.len()
            ),
        );
    }
    let mut v4_seen = BTreeMap::new();
    let mut v6_seen = BTreeMap::new();
    for (i, b) in list.iter().enumerate() {
        let key = |field: &str| format!("staticBindings[{i}].{field}");
        if let Some(m) = ipv4_problem(b, cx) {
            p.add(key("ipv4"), m);
        }
        if let Some(m) = ipv6_problem(b, cx) {
            p.add(key("ipv6"), m);
        }
        if let Some(j) = v4_seen.insert((b.protocol, b.ipv4), i) {
            p.add(
                key("ipv4"),
                format!(
                    "{} {} is bound in staticBindings[{j}] already",
                    b.protocol.name(),
                    b.ipv4
                ),
            );
        }
        if let Some(j) = v6_seen.insert((b.protocol, b.ipv6), i) {
            p.add(
                key("ipv6"),
                format!(
                    "{} {} is bound in staticBindings[{j}] already",
                    b.protocol.name(),
                    b.ipv6
                ),
            );
        }
    }
}

fn ipv4_problem(b: &StaticBinding, cx: &Context<'_>) -> Option<String> {
    let (addr, port) = (b.ipv4.ip(), b.ipv4.port());
    if !cx.pool.contains(addr) {
        return Some(format!("{addr} is not a pool address"));
    }
    if port == 0 && b.protocol != Protocol::Icmp {
        return Some("port 0 cannot be bound".into());
    }
    let range = proto_index(b.protocol.number()).map(|i| cx.ranges[i])?;
    range.contains(port).then(|| {
        format!(
            "{} {port} is in the dynamic range {}-{}; static bindings use ports outside it",
            b.protocol.name(),
            range.lo,
            range.hi
        )
    })
}

fn ipv6_problem(b: &StaticBinding, cx: &Context<'_>) -> Option<String> {
    let a = b.ipv6.ip();
    if a.is_unspecified() || a.is_multicast() || a.is_loopback() || a.is_unicast_link_local() {
        return Some(format!("{a} cannot be a destination"));
    }
    if cx.prefix.contains(a) {
        return Some(format!("{a} is in the NAT64 prefix {}", cx.prefix));
    }
    if b.ipv6.port() == 0 && b.protocol != Protocol::Icmp {
        return Some("port 0 cannot be bound".into());
    }
    None
}

/// What [`sync`] changed (bindings, not map entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub added: usize,
    pub removed: usize,
    pub kept: usize,
    /// IPv4-side keys of the bindings removed (or changed): their sessions must go too.
    pub gone: Vec<BibKey>,
}

/// The entries `list` needs, keyed.
pub fn want(list: &[StaticBinding]) -> BTreeMap<BibKey, Bib> {
    list.iter().flat_map(StaticBinding::entries).collect()
}

/// Makes `SL_N64_STATIC` hold exactly `list`'s entries. Unchanged entries are not touched.
/// New entries are written IPv6 side first, so a packet that finds the IPv4 side also finds its
/// way back; stale ones IPv4 side first, so nothing new opens through a binding half gone.
pub fn sync(layout: &PinLayout, list: &[StaticBinding]) -> Result<SyncReport> {
    let name = layout::MAP_NAT64_STATIC;
    let mut m: HashMap<MapData, BibKey, Bib> = pinned::open(layout, name)?;
    let have: BTreeMap<BibKey, Bib> = m.iter().filter_map(std::result::Result::ok).collect();
    let want = want(list);
    let stale: BTreeSet<BibKey> = have
        .iter()
        .filter(|(k, v)| want.get(k) != Some(v))
        .map(|(k, _)| *k)
        .collect();
    let mut r = SyncReport::default();
    for k in stale.iter().filter(|k| k.dir == DIR_IN) {
        m.remove(k).map_err(map_err(name))?;
        r.removed += 1;
        r.gone.push(*k);
    }
    for k in stale.iter().filter(|k| k.dir != DIR_IN) {
        m.remove(k).map_err(map_err(name))?;
    }
    let mut fresh: Vec<(&BibKey, &Bib)> = want
        .iter()
        .filter(|(k, v)| have.get(k) != Some(v))
        .collect();
    fresh.sort_by_key(|(k, _)| k.dir == DIR_IN);
    for (k, v) in fresh {
        m.insert(k, v, 0).map_err(map_err(name))?;
        if k.dir == DIR_IN {
            r.added += 1;
        }
    }
    r.kept = list.len().saturating_sub(r.added);
    Ok(r)
}

/// Every entry of the static binding table (both directions).
pub fn read(layout: &PinLayout) -> Result<Vec<(BibKey, Bib)>> {
    let name = layout::MAP_NAT64_STATIC;
    let m: HashMap<MapData, BibKey, Bib> = pinned::open(layout, name)?;
    Ok(m.iter().filter_map(std::result::Result::ok).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        static POOL: [Ipv4Addr; 1] = [Ipv4Addr::new(198, 18, 0, 1)];
        let r = PortRange {
            lo: 61001,
            hi: 65535,
        };
        Context {
            pool: &POOL,
            ranges: [r, r, r],
            prefix: "fd00:6464::/96".parse().unwrap(),
        }
    }

    fn b(protocol: Protocol, ipv4: &str, ipv6: &str) -> StaticBinding {
        StaticBinding {
            protocol,
            ipv4: ipv4.parse().unwrap(),
            ipv6: ipv6.parse().unwrap(),
        }
    }

    fn problems_of(list: &[StaticBinding]) -> Vec<String> {
        let mut p = Problems::new("nat64");
        problems(list, &cx(), &mut p);
        p.into_vec().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn valid_bindings_have_no_problems() {
        let list = [
            b(Protocol::Tcp, "198.18.0.1:8080", "[fd00:10::a]:80"),
            // The same pool port for another protocol, the same pod port behind another.
            b(Protocol::Udp, "198.18.0.1:8080", "[fd00:10::a]:80"),
            b(Protocol::Icmp, "198.18.0.1:0", "[fd00:10::a]:0"),
        ];
        assert_eq!(problems_of(&list), Vec::<String>::new());
    }

    #[test]
    fn problems_name_the_entry_and_field() {
        let list = [
            b(Protocol::Tcp, "198.18.0.2:8080", "[fd00:10::a]:80"),
            b(Protocol::Tcp, "198.18.0.1:61001", "[fd00:6464::c612:1]:80"),
            b(Protocol::Udp, "198.18.0.1:0", "[ff02::1]:53"),
            b(Protocol::Tcp, "198.18.0.1:8080", "[fd00:10::b]:0"),
            b(Protocol::Tcp, "198.18.0.1:8080", "[fd00:10::b]:0"),
            b(Protocol::Icmp, "198.18.0.1:65535", "[fe80::1]:1"),
        ];
        assert_eq!(
            problems_of(&list),
            [
                "nat64.staticBindings[0].ipv4: 198.18.0.2 is not a pool address",
                "nat64.staticBindings[1].ipv4: tcp 61001 is in the dynamic range 61001-65535; \
                 static bindings use ports outside it",
                "nat64.staticBindings[1].ipv6: fd00:6464::c612:1 is in the NAT64 prefix \
                 fd00:6464::/96",
                "nat64.staticBindings[2].ipv4: port 0 cannot be bound",
                "nat64.staticBindings[2].ipv6: ff02::1 cannot be a destination",
                "nat64.staticBindings[3].ipv6: port 0 cannot be bound",
                "nat64.staticBindings[4].ipv6: port 0 cannot be bound",
                "nat64.staticBindings[4].ipv4: tcp 198.18.0.1:8080 is bound in \
                 staticBindings[3] already",
                "nat64.staticBindings[4].ipv6: tcp [fd00:10::b]:0 is bound in \
                 staticBindings[3] already",
                "nat64.staticBindings[5].ipv4: icmp 65535 is in the dynamic range 61001-65535; \
                 static bindings use ports outside it",
                "nat64.staticBindings[5].ipv6: fe80::1 cannot be a destination",
            ]
        );
    }

    #[test]
    fn too_many_bindings() {
        let list: Vec<_> = (0..=MAX_STATIC_BINDINGS as u16)
            .map(|i| {
                b(
                    Protocol::Udp,
                    &format!("198.18.0.1:{}", 1000 + i),
                    &format!("[fd00:10::a]:{}", 1000 + i),
                )
            })
            .collect();
        assert_eq!(
            problems_of(&list),
            ["nat64.staticBindings: 1025 bindings; the datapath holds at most 1024"]
        );
    }

    #[test]
    fn two_entries_per_binding_pointing_at_each_other() {
        let [(ik, iv), (ok, ov)] = b(Protocol::Tcp, "198.18.0.1:8080", "[fd00:10::a]:80").entries();
        let mut t = [0u8; 16];
        t[..4].copy_from_slice(&[198, 18, 0, 1]);
        let x: [u8; 16] = "fd00:10::a".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(
            (ik, iv.addr, iv.port, iv.created_ns),
            (
                BibKey {
                    proto: 6,
                    dir: DIR_IN,
                    port: 8080,
                    addr: t
                },
                x,
                80,
                0
            )
        );
        assert_eq!(
            (ok, ov.addr, ov.port),
            (
                BibKey {
                    proto: 6,
                    dir: DIR_OUT,
                    port: 80,
                    addr: x
                },
                t,
                8080
            )
        );
        assert_eq!(
            want(&[b(Protocol::Icmp, "198.18.0.1:7", "[fd00:10::a]:9")]).len(),
            2
        );
    }

    #[test]
    fn yaml_form() {
        let list: Vec<StaticBinding> = serde_yaml_ng::from_str(
            r#"
- {protocol: tcp, ipv4: "198.18.0.1:8080", ipv6: "[fd00:10::a]:80"}
- protocol: icmp
  ipv4: 198.18.0.1:7
  ipv6: "[fd00:10::a]:7"
"#,
        )
        .unwrap();
        assert_eq!(
            list,
            [
                b(Protocol::Tcp, "198.18.0.1:8080", "[fd00:10::a]:80"),
                b(Protocol::Icmp, "198.18.0.1:7", "[fd00:10::a]:7")
            ]
        );
        let bad = serde_yaml_ng::from_str::<Vec<StaticBinding>>(
            "- {protocol: sctp, ipv4: \"198.18.0.1:1\", ipv6: \"[fd00::1]:1\"}",
        );
        assert!(bad.unwrap_err().to_string().contains("sctp"));
    }
}
