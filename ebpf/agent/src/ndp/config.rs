//! `NdpConfig`: the `ndp` section of the agent's YAML. Off by default; on, the node answers
//! Neighbor Discovery on its uplink for the addresses it owns inside `prefixes`, the uplink's
//! on-link prefixes (the /64 a hosting provider gives the server):
//!
//! ```yaml
//! ndp:
//!   enabled: true
//!   prefixes: ["2001:db8:1:2::/64"]
//!   heartbeat: {group: "ff02::114", port: 9661}   # the defaults
//! ```
//!
//! LoadBalancer IPs inside `prefixes` are answered in L2 mode, by one node at a time, chosen
//! from the nodes' heartbeats on the link (`heartbeat`).
//!
//! The prefixes are explicit rather than derived from the uplink's addresses: a pod CIDR that
//! overlaps the uplink's /64 by accident must not make the node answer for it, and an operator
//! reads from the configuration alone what the node claims on the link.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use crate::problem::{Problem, Problems};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct NdpConfig {
    pub enabled: bool,
    /// The uplink's on-link prefixes: the node answers for its pods' addresses inside them.
    pub prefixes: Vec<Ipv6Net>,
    pub heartbeat: HeartbeatConfig,
}

/// Where heartbeats go (`ndp.heartbeat`): a link-local group (by default IANA's "any private
/// experiment" group) and a UDP port, the same on every node of the link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct HeartbeatConfig {
    pub group: Ipv6Addr,
    pub port: u16,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            group: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x114),
            port: 9661,
        }
    }
}

impl NdpConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("ndp");
        if self.enabled && self.prefixes.is_empty() {
            p.add(
                "prefixes",
                "empty: name the uplink's on-link prefixes the node answers for",
            );
        }
        if !self.enabled && !self.prefixes.is_empty() {
            p.add("prefixes", "only used with ndp.enabled: true");
        }
        let g = self.heartbeat.group;
        if !g.is_multicast() || g.segments()[0] & 0x000f != 2 {
            p.add(
                "heartbeat.group",
                format!(
                    "{g}: not a link-local multicast group (ff02::/16): heartbeats stay on the link"
                ),
            );
        }
        if self.heartbeat.port == 0 {
            p.add(
                "heartbeat.port",
                "0: name the UDP port every node of the link uses",
            );
        }
        for (i, n) in self.prefixes.iter().enumerate() {
            let a = n.network();
            let why = if a.is_multicast() {
                Some("multicast: Neighbor Discovery resolves unicast addresses")
            } else if a.is_unicast_link_local() {
                Some("link-local: pods never have these addresses")
            } else if n.prefix_len() < 48 {
                Some("shorter than /48: an on-link prefix is a /64 or close to it")
            } else {
                None
            };
            if let Some(why) = why {
                p.add(format!("prefixes[{i}]"), format!("{n}: {why}"));
            }
        }
        p.into_vec()
    }

    /// Whether the node answers for `a`.
    pub fn covers(&self, a: std::net::Ipv6Addr) -> bool {
        self.enabled && self.prefixes.iter().any(|n| n.contains(&a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let c: NdpConfig = serde_yaml_ng::from_str(yaml).unwrap();
        c.problems().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_problem_names_its_field() {
        assert!(problems("enabled: true\nprefixes: ['2001:db8:1:2::/64']\n").is_empty());
        assert!(problems("{}").is_empty());
        assert_eq!(
            problems("heartbeat: {group: 'ff05::114', port: 0}\n"),
            [
                "ndp.heartbeat.group: ff05::114: not a link-local multicast group (ff02::/16): heartbeats stay on the link",
                "ndp.heartbeat.port: 0: name the UDP port every node of the link uses"
            ]
        );
        assert_eq!(
            problems("enabled: true\n"),
            ["ndp.prefixes: empty: name the uplink's on-link prefixes the node answers for"]
        );
        assert_eq!(
            problems("prefixes: ['2001:db8::/64']\n"),
            ["ndp.prefixes: only used with ndp.enabled: true"]
        );
        let p = problems(
            "enabled: true\nprefixes: ['2001:db8::/64', 'ff02::/64', 'fe80::/64', '2001::/16']\n",
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("ndp.prefixes[1]: ff02::/64: multicast"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("ndp.prefixes[2]: fe80::/64: link-local"),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("ndp.prefixes[3]: 2001::/16: shorter"),
            "{p:?}"
        );
    }

    #[test]
    fn covers_only_inside_the_prefixes_and_only_when_enabled() {
        let mut c: NdpConfig =
            serde_yaml_ng::from_str("enabled: true\nprefixes: ['2001:db8:1:2::/64']\n").unwrap();
        assert!(c.covers("2001:db8:1:2::a".parse().unwrap()));
        assert!(!c.covers("2001:db8:1:3::a".parse().unwrap()));
        c.enabled = false;
        assert!(!c.covers("2001:db8:1:2::a".parse().unwrap()));
    }
}
