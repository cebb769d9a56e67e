//! Which addresses this node answers for on its uplink: a pure function of the configuration,
//! the uplink and the node's pods.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
};

use sixlane_common::ndp::{Owned, kind};

use super::config::NdpConfig;

/// The uplink the node answers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// The table the datapath should hold: every pod address inside the configured prefixes, on
/// `uplink`. Nothing else: not the prefix, not the gateway, not other hosts.
pub fn owned(
    cfg: &NdpConfig,
    uplink: Uplink,
    pods: &BTreeSet<Ipv6Addr>,
) -> BTreeMap<Ipv6Addr, Owned> {
    pods.iter()
        .filter(|a| cfg.covers(**a))
        .map(|a| {
            let o = Owned {
                ifindex: uplink.ifindex,
                mac: uplink.mac,
                kind: kind::POD,
                _pad: 0,
            };
            (*a, o)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pods_inside_the_prefixes() {
        let cfg: NdpConfig =
            serde_yaml_ng::from_str("enabled: true\nprefixes: ['2001:db8:1:2::/64']\n").unwrap();
        let up = Uplink {
            ifindex: 7,
            mac: [2, 0, 0, 0, 0, 1],
        };
        let pods: BTreeSet<Ipv6Addr> = ["2001:db8:1:2::a", "fd00:10::5"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let got = owned(&cfg, up, &pods);
        assert_eq!(got.len(), 1);
        let o = got[&"2001:db8:1:2::a".parse::<Ipv6Addr>().unwrap()];
        assert_eq!((o.ifindex, o.mac, o.kind), (7, up.mac, kind::POD));
        let off = NdpConfig::default();
        assert!(owned(&off, up, &pods).is_empty());
    }
}
