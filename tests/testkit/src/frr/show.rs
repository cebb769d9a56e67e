//! The parts of FRR's vtysh JSON the tests assert on, typed. Only the fields read here are
//! declared (FRR adds fields between releases); a field missing from a reply decodes as its
//! default, so an assertion on it fails visibly rather than the decode.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `show bgp ipv6 unicast json`: the BGP table (Adj-RIB-In after policy, every path).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpTable {
    #[serde(rename = "localAS", default)]
    pub local_as: u32,
    /// Prefix (`2001:db8::1/128`) → its paths.
    #[serde(default)]
    pub routes: BTreeMap<String, Vec<BgpPath>>,
}

/// One path of a prefix in the BGP table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BgpPath {
    pub valid: bool,
    pub bestpath: bool,
    /// Installed as one of several equal paths (ECMP).
    pub multipath: bool,
    /// The neighbor that sent it.
    pub peer_id: String,
    /// The AS path, space separated (`64601`).
    pub path: String,
    pub nexthops: Vec<BgpNexthop>,
    /// Marked stale: kept for a neighbor in graceful restart.
    pub stale: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BgpNexthop {
    pub ip: String,
    /// `global` or `link-local`.
    pub scope: String,
    pub used: bool,
}

impl BgpTable {
    /// The paths to `prefix` (empty if the router has none).
    pub fn paths(&self, prefix: &str) -> &[BgpPath] {
        self.routes.get(prefix).map_or(&[], Vec::as_slice)
    }

    /// The neighbors whose path to `prefix` is used (best or multipath), sorted.
    pub fn used_peers(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .paths(prefix)
            .iter()
            .filter(|p| p.valid && (p.bestpath || p.multipath))
            .map(|p| p.peer_id.clone())
            .collect();
        v.sort();
        v
    }
}

/// `show bgp neighbors json`: neighbor address → its session.
pub type Neighbors = BTreeMap<String, NeighborState>;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NeighborState {
    pub remote_as: u32,
    pub local_as: u32,
    /// `Idle`, `Connect`, `Active`, `OpenSent`, `OpenConfirm`, `Established`.
    pub bgp_state: String,
    /// Times the session came up, and went down: an unchanged pair across an event proves
    /// the session was not reset.
    pub connections_established: u32,
    pub connections_dropped: u32,
    /// Why the session last went down (`No AFI/SAFI activated for peer`, `BFD down received`,
    /// ...).
    pub last_reset_due_to: String,
    pub address_family_info: BTreeMap<String, AfInfo>,
    /// The neighbor's BFD session, when it has one.
    pub peer_bfd_info: Option<BfdInfo>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BfdInfo {
    /// `Up`, `Down`, `Admin Down`, `Unknown`.
    pub status: String,
}

impl NeighborState {
    pub fn established(&self) -> bool {
        self.bgp_state == "Established"
    }

    /// Whether the neighbor's BFD session is up.
    pub fn bfd_up(&self) -> bool {
        self.peer_bfd_info
            .as_ref()
            .is_some_and(|b| b.status == "Up")
    }

    /// Prefixes accepted from the neighbor in the IPv6 unicast family.
    pub fn ipv6_accepted(&self) -> u32 {
        self.address_family_info
            .get("ipv6Unicast")
            .map_or(0, |a| a.accepted_prefix_counter)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AfInfo {
    pub accepted_prefix_counter: u32,
}

/// `show ipv6 route json`: zebra's RIB, prefix → its routes (one per protocol).
pub type Rib = BTreeMap<String, Vec<RibRoute>>;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RibRoute {
    pub prefix: String,
    /// `bgp`, `connected`, `kernel`, ...
    pub protocol: String,
    pub selected: bool,
    /// zebra says it is in the kernel (the tests read the kernel themselves too).
    pub installed: bool,
    pub nexthops: Vec<RibNexthop>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RibNexthop {
    pub ip: String,
    pub interface_name: String,
    pub active: bool,
    pub fib: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shapes as FRR 8.4's vtysh prints them (fields the tests do not read trimmed).
    #[test]
    fn bgp_table_paths_and_ecmp_peers() {
        let t: BgpTable = serde_json::from_str(
            r#"{"vrfId":0,"vrfName":"default","tableVersion":3,"routerId":"10.255.0.1",
            "defaultLocPrf":100,"localAS":65000,"routes":{"2001:db8:96::/108":[
             {"valid":true,"multipath":true,"pathFrom":"external","prefix":"2001:db8:96::",
              "prefixLen":108,"peerId":"fd00:f::3","path":"64602","origin":"IGP",
              "nexthops":[{"ip":"fd00:f::3","afi":"ipv6","scope":"global"},
                          {"ip":"fe80::3","afi":"ipv6","scope":"link-local","used":true}]},
             {"valid":true,"bestpath":true,"selectionReason":"Older Path","multipath":true,
              "peerId":"fd00:f::2","path":"64601","nexthops":[]},
             {"valid":false,"peerId":"fd00:f::4","path":"64603"}]}}"#,
        )
        .unwrap();
        assert_eq!(t.local_as, 65000);
        assert_eq!(
            t.used_peers("2001:db8:96::/108"),
            ["fd00:f::2", "fd00:f::3"]
        );
        let p = &t.paths("2001:db8:96::/108")[0];
        assert_eq!(p.nexthops[1].scope, "link-local");
        assert!(p.nexthops[1].used);
        assert!(t.paths("2001:db8::/64").is_empty());
    }

    #[test]
    fn neighbor_state_and_counters() {
        let n: Neighbors = serde_json::from_str(
            r#"{"fd00:f::2":{"remoteAs":64601,"localAs":65000,"nbrExternalLink":true,
            "bgpState":"Established","connectionsEstablished":1,"connectionsDropped":0,
            "lastResetDueTo":"Waiting for peer OPEN",
            "addressFamilyInfo":{"ipv6Unicast":{"acceptedPrefixCounter":2}},
            "peerBfdInfo":{"type":"single hop","detectMultiplier":3,"status":"Up"}},
            "fd00:f::3":{"remoteAs":64602,"bgpState":"Active"}}"#,
        )
        .unwrap();
        let a = &n["fd00:f::2"];
        assert!(a.established());
        assert_eq!((a.connections_established, a.ipv6_accepted()), (1, 2));
        assert!(a.bfd_up());
        assert!(!n["fd00:f::3"].established());
        assert!(!n["fd00:f::3"].bfd_up());
        assert_eq!(n["fd00:f::3"].ipv6_accepted(), 0);
    }

    #[test]
    fn rib_route_with_fib_nexthops() {
        let r: Rib = serde_json::from_str(
            r#"{"2001:db8::1/128":[{"prefix":"2001:db8::1/128","prefixLen":128,
            "protocol":"bgp","selected":true,"installed":true,"table":254,
            "nexthops":[{"flags":3,"fib":true,"ip":"fe80::2","afi":"ipv6",
            "interfaceIndex":2,"interfaceName":"sltr0","active":true,"weight":1}]}]}"#,
        )
        .unwrap();
        let route = &r["2001:db8::1/128"][0];
        assert!(route.selected && route.installed);
        assert_eq!(route.nexthops[0].interface_name, "sltr0");
        assert!(route.nexthops[0].fib);
    }
}
