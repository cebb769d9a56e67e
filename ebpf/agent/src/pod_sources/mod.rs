//! Source validation for pods attached before it existed (docs/cni.md, "Source validation").
//! The CNI plugin records a pod's sources at ADD; a pod an older plugin added has a veth without
//! a marker, which the datapath does not validate. The agent finds such veths (the IPAM store's
//! reservations, under the plugin's host veth name) and records them as ADD would, honouring the
//! pod's opt-out annotation, which it reads from the API server (the runtime passed it only to
//! that older ADD). At start and every [`PERIOD`]: an older plugin may still ADD between the
//! datapath's load and the new plugin's install. [`cli`]: `sixlane-agent sources`.

pub mod cli;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use sixlane_attach::{
    iface,
    sources::{Recorded, Sources},
};
use sixlane_common::source::SOURCE_VALIDATION_ANNOTATION;
use tracing::{info, warn};

use crate::{Error, PinLayout, Result, error::KubeRequest, ipam::Reservation};

/// How often the store is compared with the table.
pub const PERIOD: Duration = Duration::from_secs(10);

/// A pod veth with no record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unrecorded {
    pub host_if: String,
    pub ifindex: u32,
    pub container_id: String,
    pub addrs: Vec<Ipv6Addr>,
}

/// The veths of `reservations` that exist (`index`: name → ifindex) and have no marker in
/// `recorded`. Reservations without an ifname (an id-only file) name no veth.
pub fn unrecorded(
    reservations: &[Reservation],
    recorded: &BTreeMap<u32, Recorded>,
    index: impl Fn(&str) -> Option<u32>,
) -> Vec<Unrecorded> {
    let mut by_attachment: BTreeMap<(&str, &str), Vec<Ipv6Addr>> = BTreeMap::new();
    for r in reservations {
        if let (IpAddr::V6(a), false) = (r.address, r.ifname.is_empty()) {
            by_attachment
                .entry((&r.container_id, &r.ifname))
                .or_default()
                .push(a);
        }
    }
    let mut out = Vec::new();
    for ((id, ifname), addrs) in by_attachment {
        let host_if = iface::host_ifname(id, ifname);
        let Some(ifindex) = index(&host_if) else {
            continue;
        };
        if recorded.get(&ifindex).is_none_or(|r| r.enforce.is_none()) {
            out.push(Unrecorded {
                host_if,
                ifindex,
                container_id: id.to_owned(),
                addrs,
            });
        }
    }
    out
}

/// The addresses of `pods` that opt out (the annotation says `disabled`; any other value
/// validates, as ADD would have refused it).
pub fn opted_out(pods: &[Pod]) -> BTreeSet<Ipv6Addr> {
    pods.iter()
        .filter(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SOURCE_VALIDATION_ANNOTATION))
                .is_some_and(|v| v == "disabled")
        })
        .flat_map(|p| p.status.iter().flat_map(|s| s.pod_ips.iter().flatten()))
        .filter_map(|ip| ip.ip.parse().ok())
        .collect()
}

/// Where the pods' annotations come from: the API server, or nowhere (static mode: every pod
/// validated).
pub enum Annotations {
    Api { client: kube::Client, node: String },
    None,
}

impl Annotations {
    async fn opted_out(&self) -> Result<BTreeSet<Ipv6Addr>> {
        let Annotations::Api { client, node } = self else {
            return Ok(BTreeSet::new());
        };
        let pods: Api<Pod> = Api::all(client.clone());
        let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let list = pods.list(&params).await.map_err(|source| Error::Kube {
            request: KubeRequest::ListPods { node: node.clone() },
            source,
        })?;
        // The field selector is the server's; a stand-in or proxy may ignore it.
        let mine: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .collect();
        Ok(opted_out(&mine))
    }
}

/// What one pass recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub validated: usize,
    pub opted_out: usize,
}

/// Records every unrecorded veth of the store at `store_dir` (network `network`).
pub async fn pass(
    layout: &PinLayout,
    store_dir: &Path,
    network: &str,
    annotations: &Annotations,
) -> Result<Pass> {
    let Some(mut table) = Sources::open(layout)? else {
        return Ok(Pass::default());
    };
    let reservations = crate::ipam::network_reservations(store_dir, network)?;
    let todo = unrecorded(&reservations, &table.entries()?, iface::index);
    let mut done = Pass::default();
    if todo.is_empty() {
        return Ok(done);
    }
    let opted = annotations.opted_out().await?;
    for u in todo {
        let enforce = !u.addrs.iter().any(|a| opted.contains(a));
        if !table.backfill(u.ifindex, &u.addrs, enforce)? {
            continue; // an ADD recorded it meanwhile
        }
        let mode = if enforce { "validated" } else { "opted out" };
        info!(veth = %u.host_if, ifindex = u.ifindex, container = %u.container_id, addrs = ?u.addrs, "pod attached before source validation: {mode}");
        if enforce {
            done.validated += 1;
        } else {
            done.opted_out += 1;
        }
    }
    Ok(done)
}

/// Runs [`pass`] now and every [`PERIOD`]; `recorded` is told what each pass recorded. A failed
/// pass records nothing (the veths stay unvalidated, never wrongly validated) and is retried.
pub fn spawn(
    layout: PinLayout,
    store_dir: PathBuf,
    annotations: Annotations,
    recorded: impl Fn(Pass) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let network = store_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tokio::spawn(async move {
        loop {
            match pass(&layout, &store_dir, &network, &annotations).await {
                Ok(p) => recorded(p),
                Err(e) => {
                    warn!(error = %sixlane_attach::chain(&e), "source validation of pods attached before it: retrying");
                }
            }
            tokio::time::sleep(PERIOD).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(addr: &str, id: &str, ifname: &str) -> Reservation {
        Reservation {
            network: "sixlane".into(),
            address: addr.parse().unwrap(),
            container_id: id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn only_existing_veths_without_a_marker() {
        let rs = [
            res("fd00::a", "a", "eth0"),
            res("fd00::a2", "a", "eth0"),
            res("fd00::b", "b", "eth0"),
            res("fd00::c", "c", "eth0"),
            res("fd00::d", "d", ""),
            res("198.18.0.5", "e", "eth0"),
            res("fd00::f", "f", "eth0"),
        ];
        let names: BTreeMap<String, u32> = ["a", "b", "d", "e", "f"]
            .iter()
            .zip(10..)
            .map(|(id, i)| (iface::host_ifname(id, "eth0"), i))
            .collect();
        let recorded = BTreeMap::from([
            (
                11,
                Recorded {
                    enforce: Some(false),
                    addrs: BTreeSet::new(),
                },
            ),
            // Addresses without a marker (a record under way, or half undone): not validated.
            (
                14,
                Recorded {
                    enforce: None,
                    addrs: BTreeSet::from(["fd00::f".parse().unwrap()]),
                },
            ),
        ]);
        let got = unrecorded(&rs, &recorded, |n| names.get(n).copied());
        let want = [
            ("a", 10, vec!["fd00::a", "fd00::a2"]),
            ("f", 14, vec!["fd00::f"]),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (u, (id, i, addrs)) in got.iter().zip(want) {
            assert_eq!(u.container_id, id);
            assert_eq!(u.ifindex, i);
            assert_eq!(u.host_if, iface::host_ifname(id, "eth0"));
            let want: Vec<Ipv6Addr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
            assert_eq!(u.addrs, want);
        }
    }

    #[test]
    fn only_disabled_opts_out() {
        let pod = |ann: Option<&str>, ip: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": ip, "annotations": ann.map(|v| serde_json::json!({SOURCE_VALIDATION_ANNOTATION: v}))},
                "status": {"podIPs": [{"ip": ip}, {"ip": "198.18.0.9"}]},
            }))
            .unwrap()
        };
        let pods = [
            pod(Some("disabled"), "fd00::1"),
            pod(Some("enabled"), "fd00::2"),
            pod(Some("Disabled"), "fd00::3"),
            pod(None, "fd00::4"),
        ];
        assert_eq!(
            opted_out(&pods),
            BTreeSet::from(["fd00::1".parse().unwrap()])
        );
    }
}
