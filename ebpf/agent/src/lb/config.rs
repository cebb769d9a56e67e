//! `LbConfig`: LoadBalancer IP assignment's settings (the `loadBalancer:` key of the agent's
//! YAML), checked as a whole and turned into the [`Pool`]s the assignment takes.
//!
//! ```yaml
//! loadBalancer:
//!   enabled: true
//!   class: sixlane.io/lb          # Services with no loadBalancerClass or this one are ours
//!   pools:
//!     - name: public
//!       cidrs: [2001:db8:200::/112]
//!       ranges: ["2001:db8:201::10-2001:db8:201::ff"]
//!       namespaces: []            # only these namespaces (empty: all)
//!       serviceSelector:          # only Services with these labels (empty: all)
//!         matchLabels: {expose: public}
//!       autoAssign: true          # false: only addresses Services request
//! ```
//!
//! Pools may not overlap: an address in two pools would have two sets of limits (namespaces,
//! selector, autoAssign) and count in two pools' usage, and which applies would depend on the
//! order of the list.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::assign::{Block, Pool};
use crate::{
    names::{is_dns_label, is_label_value, is_qualified_name},
    node::candidate::unusable_node_address,
    problem::{Problem, Problems},
};

/// sixlane's `spec.loadBalancerClass`.
pub const DEFAULT_CLASS: &str = "sixlane.io/lb";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LbConfig {
    /// Off: no Service gets an address from sixlane (another implementation may assign them;
    /// the datapath serves whatever their status says either way).
    pub enabled: bool,
    /// Services with this `spec.loadBalancerClass`, or none, are ours; others are left alone.
    pub class: String,
    /// In order: automatic assignment takes the first pool that serves a Service.
    pub pools: Vec<PoolConfig>,
}

impl Default for LbConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            class: DEFAULT_CLASS.into(),
            pools: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolConfig {
    pub name: String,
    /// IPv6 prefixes (`2001:db8::/112`). Kept as written so a bad entry is a problem naming it.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Inclusive IPv6 ranges (`2001:db8::10-2001:db8::ff`).
    #[serde(default)]
    pub ranges: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub service_selector: Selector,
    #[serde(default = "auto_assign_default")]
    pub auto_assign: bool,
}

fn auto_assign_default() -> bool {
    true
}

/// A label selector (equality only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
}

/// A `cidrs` entry as a block: an IPv6 prefix without host bits.
fn parse_cidr(s: &str) -> Result<Block, String> {
    match s.trim().parse::<IpNet>() {
        Ok(IpNet::V6(n)) if n != n.trunc() => Err(format!(
            "{s} has host bits set (did you mean {}?)",
            n.trunc()
        )),
        Ok(IpNet::V6(n)) => Ok(Block::from_cidr(n)),
        Ok(IpNet::V4(_)) => Err(format!("{s} is IPv4 (sixlane assigns IPv6 only)")),
        Err(_) => Err(format!("{s:?} is not an IPv6 prefix")),
    }
}

/// A `ranges` entry as a block: `first-last`, both IPv6, in order.
fn parse_range(s: &str) -> Result<Block, String> {
    let Some((f, l)) = s.split_once('-') else {
        return Err(format!("{s:?} is not a range (first-last)"));
    };
    let addr = |x: &str| match x.trim().parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => Ok(a),
        Ok(IpAddr::V4(_)) => Err(format!("{s} is IPv4 (sixlane assigns IPv6 only)")),
        Err(_) => Err(format!("{s:?}: {x:?} is not an IPv6 address")),
    };
    let (first, last) = (addr(f)?, addr(l)?);
    if first > last {
        return Err(format!("{s}: the first address is above the last"));
    }
    Ok(Block::range(first, last))
}

/// Problems of a block that parsed: addresses nobody can route to, nothing assignable.
fn block_problems(b: &Block) -> Option<String> {
    if let Some(why) = unusable_node_address(b.first).or(unusable_node_address(b.last)) {
        return Some(format!("{b} is {why}"));
    }
    (b.size() == 0).then(|| format!("{b} holds only subnet-router anycast addresses"))
}

impl PoolConfig {
    /// The entries as blocks, each with the key naming it (`cidrs`, `ranges`) and its index.
    fn blocks(&self) -> impl Iterator<Item = (&'static str, usize, Result<Block, String>)> + '_ {
        let cidrs = self.cidrs.iter().enumerate();
        let ranges = self.ranges.iter().enumerate();
        cidrs
            .map(|(j, c)| ("cidrs", j, parse_cidr(c)))
            .chain(ranges.map(|(j, r)| ("ranges", j, parse_range(r))))
    }
}

impl LbConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new("loadBalancer");
        if !is_qualified_name(&self.class) {
            p.add(
                "class",
                format!(
                    "{:?} is not a qualified name (like the default {DEFAULT_CLASS})",
                    self.class
                ),
            );
        }
        if self.enabled && self.pools.is_empty() {
            p.add(
                "pools",
                "enabled without a pool: no Service could get an address",
            );
        }
        // Every block that parsed, with its key, to find overlaps across all pools.
        let mut seen: Vec<(String, Block)> = Vec::new();
        for (i, pool) in self.pools.iter().enumerate() {
            self.pool_problems(i, pool, &mut p);
            for (list, j, b) in pool.blocks() {
                let key = format!("pools[{i}].{list}[{j}]");
                match b {
                    Err(why) => p.add(key, why),
                    Ok(b) => {
                        if let Some(why) = block_problems(&b) {
                            p.add(key.clone(), why);
                        }
                        if let Some((other, ob)) = seen.iter().find(|(_, o)| o.overlaps(&b)) {
                            p.add(key.clone(), format!("{b} overlaps {other} ({ob})"));
                        }
                        seen.push((key, b));
                    }
                }
            }
        }
        p.into_vec()
    }

    /// One pool's own keys (its blocks are checked with the others').
    fn pool_problems(&self, i: usize, pool: &PoolConfig, p: &mut Problems) {
        if !is_dns_label(&pool.name) {
            p.add(
                format!("pools[{i}].name"),
                format!("{:?} is not a DNS label (a-z, 0-9, '-')", pool.name),
            );
        }
        if let Some(j) = self.pools[..i].iter().position(|o| o.name == pool.name) {
            p.add(
                format!("pools[{i}].name"),
                format!("{:?} is also pools[{j}]'s name", pool.name),
            );
        }
        if pool.cidrs.is_empty() && pool.ranges.is_empty() {
            p.add(format!("pools[{i}]"), "has neither cidrs nor ranges");
        }
        for ns in &pool.namespaces {
            if !is_dns_label(ns) {
                p.add(
                    format!("pools[{i}].namespaces"),
                    format!("{ns:?} is not a namespace name"),
                );
            }
        }
        for (k, v) in &pool.service_selector.match_labels {
            if !is_qualified_name(k) || !is_label_value(v) {
                p.add(
                    format!("pools[{i}].serviceSelector.matchLabels"),
                    format!("{k}={v} is not a valid label"),
                );
            }
        }
    }

    /// The pools as the assignment takes them (entries that do not parse are left out: a
    /// validated configuration has none).
    pub fn pools(&self) -> Vec<Pool> {
        self.pools
            .iter()
            .map(|c| Pool {
                name: c.name.clone(),
                blocks: c.blocks().filter_map(|(_, _, b)| b.ok()).collect(),
                namespaces: c.namespaces.clone(),
                selector: c.service_selector.match_labels.clone(),
                auto_assign: c.auto_assign,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `loadBalancer:` key of an agent configuration (the rest of it is `crate::config`'s).
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Doc {
        #[serde(default)]
        load_balancer: LbConfig,
    }

    fn parse(yaml: &str) -> Result<Doc, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(yaml)
    }

    fn problems(yaml: &str) -> Vec<String> {
        let c = parse(yaml).unwrap();
        c.load_balancer
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_full_section_parses_into_pools() {
        let c = parse(
            "loadBalancer:\n  enabled: true\n  pools:\n  - name: public\n    cidrs: [2001:db8:200::/112]\n    \
             ranges: ['2001:db8:201::10-2001:db8:201::ff']\n    namespaces: [web]\n    \
             serviceSelector: {matchLabels: {expose: public}}\n  - name: manual\n    cidrs: [fd00:5::/120]\n    autoAssign: false\n",
        )
        .unwrap();
        let lb = &c.load_balancer;
        assert!(lb.problems().is_empty(), "{:?}", lb.problems());
        assert_eq!(lb.class, DEFAULT_CLASS);
        let pools = lb.pools();
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0].blocks.len(), 2);
        assert_eq!(
            pools[0].blocks[1].to_string(),
            "2001:db8:201::10-2001:db8:201::ff"
        );
        assert_eq!(pools[0].size(), 65535 + 240);
        assert_eq!(pools[0].namespaces, ["web"]);
        assert_eq!(pools[0].selector["expose"], "public");
        assert!(pools[0].auto_assign);
        assert!(!pools[1].auto_assign);
    }

    #[test]
    fn the_default_is_off_and_valid() {
        let c = LbConfig::default();
        assert!(!c.enabled);
        assert!(c.problems().is_empty());
    }

    #[test]
    fn unknown_keys_are_errors() {
        for yaml in [
            "loadBalancer:\n  pool: []\n",
            "loadBalancer:\n  pools: [{name: a, cidr: [2001:db8::/120]}]\n",
            "loadBalancer:\n  pools: [{name: a, serviceSelector: {matchExpressions: []}}]\n",
        ] {
            let e = parse(yaml).unwrap_err().to_string();
            assert!(e.contains("unknown field"), "{yaml}: {e}");
        }
    }

    #[test]
    fn validation_table() {
        let pool = |body: &str| format!("loadBalancer:\n  pools:\n  - {{name: p, {body}}}\n");
        let table: &[(String, &[&str])] = &[
            (pool("cidrs: [2001:db8::/120]"), &[]),
            (pool("ranges: ['fd00::10-fd00::20']"), &[]),
            (
                pool("cidrs: [10.0.0.0/24]"),
                &["loadBalancer.pools[0].cidrs[0]: 10.0.0.0/24 is IPv4"],
            ),
            (
                pool("cidrs: [2001:db8::5/120]"),
                &["pools[0].cidrs[0]: 2001:db8::5/120 has host bits set (did you mean 2001:db8::/120?)"],
            ),
            (pool("cidrs: [bogus]"), &["pools[0].cidrs[0]: \"bogus\" is not an IPv6 prefix"]),
            (
                pool("cidrs: [2001:db8::/120], ranges: ['2001:db8::20-2001:db8::10']"),
                &["pools[0].ranges[0]: 2001:db8::20-2001:db8::10: the first address is above"],
            ),
            (
                pool("ranges: ['10.0.0.1-10.0.0.9']"),
                &["pools[0].ranges[0]: 10.0.0.1-10.0.0.9 is IPv4"],
            ),
            (pool("ranges: ['2001:db8::1']"), &["pools[0].ranges[0]: \"2001:db8::1\" is not a range"]),
            (pool("cidrs: ['fe80::/64']"), &["pools[0].cidrs[0]: fe80::/64 is link-local"]),
            (pool("cidrs: ['ff00::/120']"), &["multicast"]),
            (
                pool("cidrs: ['2001:db8::/128']"),
                &["pools[0].cidrs[0]: 2001:db8::/128 holds only subnet-router anycast addresses"],
            ),
            (pool("cidrs: []"), &["loadBalancer.pools[0]: has neither cidrs nor ranges"]),
            (
                "loadBalancer:\n  pools:\n  - {name: Public, cidrs: ['2001:db8::/120']}\n".into(),
                &["pools[0].name: \"Public\" is not a DNS label"],
            ),
            (
                "loadBalancer:\n  pools:\n  - {name: a, cidrs: ['2001:db8::/120']}\n  - {name: a, cidrs: ['2001:db8:1::/120']}\n".into(),
                &["pools[1].name: \"a\" is also pools[0]'s name"],
            ),
            (
                "loadBalancer:\n  pools:\n  - {name: a, cidrs: ['2001:db8::/112']}\n  - {name: b, ranges: ['2001:db8::ff00-2001:db8:0:0:0:0:1:10']}\n".into(),
                &["pools[1].ranges[0]: 2001:db8::ff00-2001:db8::1:10 overlaps pools[0].cidrs[0] (2001:db8::/112)"],
            ),
            (
                pool("cidrs: ['2001:db8::/120', '2001:db8::80/121']"),
                &["pools[0].cidrs[1]: 2001:db8::80/121 overlaps pools[0].cidrs[0]"],
            ),
            (
                pool("cidrs: ['2001:db8::/120'], namespaces: [Web_1]"),
                &["pools[0].namespaces: \"Web_1\" is not a namespace name"],
            ),
            (
                pool("cidrs: ['2001:db8::/120'], serviceSelector: {matchLabels: {'a b': x}}"),
                &["pools[0].serviceSelector.matchLabels: a b=x is not a valid label"],
            ),
            (
                "loadBalancer:\n  class: 'not a class'\n".into(),
                &["loadBalancer.class: \"not a class\" is not a qualified name"],
            ),
            (
                "loadBalancer:\n  enabled: true\n".into(),
                &["loadBalancer.pools: enabled without a pool"],
            ),
        ];
        for (yaml, want) in table {
            let got = problems(yaml);
            if want.is_empty() {
                assert!(got.is_empty(), "{yaml:?} should be valid, got {got:?}");
            }
            for w in *want {
                assert!(
                    got.iter().any(|g| g.contains(w)),
                    "{yaml:?}: expected a problem containing {w:?}, got {got:?}"
                );
            }
        }
    }
}
