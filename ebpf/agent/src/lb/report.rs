//! What LoadBalancer IP assignment reports: pools with their use, the assignments, the pending
//! Services and why, and who writes. It goes into the agent's status (`/status`,
//! `status.json`), which `sixlane-agent lb` and `status` print.

use std::{collections::BTreeMap, net::Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::assign::{Outcome, Pool, holders, pool_of};
use crate::model::ServiceId;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The `spec.loadBalancerClass` served (besides none).
    pub class: String,
    pub writer: Writer,
    pub pools: Vec<PoolRow>,
    pub assigned: Vec<AssignedRow>,
    pub pending: Vec<PendingRow>,
}

/// Who turns the assignments into Service addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum Writer {
    /// Static mode: this agent puts them into its own desired state.
    #[default]
    Static,
    /// Kubernetes mode: the holder of a Lease writes them to the Services' status.
    Lease(LeaseView),
}

/// The Lease as this agent last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView {
    /// `namespace/name`.
    pub lease: String,
    /// This agent's holder identity (its node name).
    pub identity: String,
    /// This agent holds the Lease and writes.
    pub leader: bool,
    /// Who holds it, if anyone.
    pub holder: Option<String>,
    /// The last failure to read or renew it.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolRow {
    pub name: String,
    /// CIDRs and ranges as configured.
    pub blocks: Vec<String>,
    /// Assignable addresses (subnet-router anycast ones excluded).
    pub size: u128,
    /// Addresses given out.
    pub used: u64,
    /// Services holding them (more than `used` when addresses are shared).
    pub services: u64,
    pub auto_assign: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedRow {
    /// `namespace/name`.
    pub service: String,
    pub address: Ipv6Addr,
    pub pool: String,
    /// The other Services on this address (a sharing key).
    pub shared_with: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRow {
    pub service: String,
    /// The condition's reason (`PoolExhausted`, `AddressInUse`, …).
    pub reason: String,
    pub message: String,
}

impl Report {
    /// The report of one assignment run.
    pub fn new(
        class: &str,
        pools: &[Pool],
        outcomes: &BTreeMap<ServiceId, Outcome>,
        writer: Writer,
    ) -> Self {
        let by_addr = holders(outcomes);
        let mut assigned = Vec::new();
        let mut pending = Vec::new();
        for (id, o) in outcomes {
            match o {
                Outcome::Assigned(a) => assigned.push(AssignedRow {
                    service: id.to_string(),
                    address: *a,
                    pool: pool_of(pools, *a).map_or_else(String::new, |p| p.name.clone()),
                    shared_with: by_addr[a]
                        .iter()
                        .filter(|other| *other != id)
                        .map(ToString::to_string)
                        .collect(),
                }),
                Outcome::Pending(r) => pending.push(PendingRow {
                    service: id.to_string(),
                    reason: r.code().into(),
                    message: r.to_string(),
                }),
            }
        }
        let pools = pools
            .iter()
            .map(|p| {
                let mine = |a: &&Ipv6Addr| p.contains(**a);
                PoolRow {
                    name: p.name.clone(),
                    blocks: p.blocks.iter().map(ToString::to_string).collect(),
                    size: p.size(),
                    used: by_addr.keys().filter(mine).count() as u64,
                    services: assigned.iter().filter(|r| r.pool == p.name).count() as u64,
                    auto_assign: p.auto_assign,
                }
            })
            .collect();
        Self {
            class: class.into(),
            writer,
            pools,
            assigned,
            pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::assign::Block;

    #[test]
    fn a_pool_larger_than_u64_survives_the_status_file() {
        let pools = vec![Pool {
            name: "big".into(),
            blocks: vec![Block::from_cidr("2001:db8::/48".parse().unwrap())],
            namespaces: vec![],
            selector: BTreeMap::new(),
            auto_assign: true,
        }];
        let r = Report::new("sixlane.io/lb", &pools, &BTreeMap::new(), Writer::Static);
        assert_eq!(r.pools[0].size, (1u128 << 80) - (1 << 16));
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            text.contains("\"size\":1208925819614629174640640"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
    }
}
