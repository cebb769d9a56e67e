//! Built-in IPAM with host-local's semantics and on-disk format (see [`store`]), IPv6 only.

pub mod range;
pub mod store;

use std::{
    net::{IpAddr, Ipv6Addr},
    path::PathBuf,
};

use ipnet::Ipv6Net;

pub use range::{Range, RangeSet, RangeSpec};
pub use store::Store;

use crate::{
    error::{Error, Result},
    spec::{Dns, Route},
};

/// The validated `ipam` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamConf {
    /// `sixlane-ipam` or `host-local` (same behaviour and keys).
    pub kind: String,
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub data_dir: PathBuf,
    pub dns: Dns,
    /// Requested addresses from `CNI_ARGS` `IP=`, `args.cni.ips` and `runtimeConfig.ips`.
    pub requested: Vec<Ipv6Addr>,
}

/// One allocated address and the range it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub ip: Ipv6Addr,
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
}

/// ADD: one address per range set, requested addresses honoured, round robin otherwise; every
/// reservation made here is undone on failure. The whole operation holds the lock.
pub fn allocate(store: &Store, conf: &IpamConf, id: &str, ifname: &str) -> Result<Vec<Allocation>> {
    let locked = store.lock()?;
    let released = locked.release_previous_boots()?;
    if !released.is_empty() {
        crate::log::info(&format!(
            "released {} reservation(s) made before the last boot: {}",
            released.len(),
            join(&released)
        ));
    }
    let mut requested = conf.requested.clone();
    let mut out: Vec<Allocation> = Vec::new();
    let res = (|| {
        for (idx, set) in conf.ranges.iter().enumerate() {
            let want = requested
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|i| requested.remove(i));
            let alloc = match want {
                Some(ip) => {
                    let r = set.range_for(ip).expect("contains");
                    if ip == r.gateway {
                        return Err(Error::config(
                            "ips",
                            format!("requested address {ip} is the gateway of range {r}"),
                        ));
                    }
                    if !locked.reserve(id, ifname, ip, idx)? {
                        return Err(Error::TryAgain(format!(
                            "requested address {ip} is not available in range set {set}"
                        )));
                    }
                    Allocation {
                        ip,
                        subnet: r.subnet,
                        gateway: r.gateway,
                    }
                }
                None => {
                    let held: Vec<IpAddr> = locked.get_by_id(id, ifname)?;
                    if let Some(ip) = held.iter().find_map(|ip| match ip {
                        IpAddr::V6(v6) if set.contains(*v6) => Some(*v6),
                        _ => None,
                    }) {
                        return Err(Error::TryAgain(format!(
                            "{ip} is already allocated to {id}/{ifname} in range set {set}; \
                             duplicate allocation is not allowed (DEL it first)"
                        )));
                    }
                    let mut got = None;
                    for (ip, r) in set.iter_from(locked.last_reserved(idx)) {
                        if locked.reserve(id, ifname, ip, idx)? {
                            got = Some(Allocation {
                                ip,
                                subnet: r.subnet,
                                gateway: r.gateway,
                            });
                            break;
                        }
                    }
                    got.ok_or_else(|| {
                        Error::TryAgain(format!(
                            "no IP addresses available in range set {idx} ({set})"
                        ))
                    })?
                }
            };
            out.push(alloc);
        }
        if !requested.is_empty() {
            return Err(Error::config(
                "ips",
                format!(
                    "requested address(es) {} are in no configured range",
                    requested
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(())
    })();
    match res {
        Ok(()) => Ok(out),
        Err(e) => {
            for a in &out {
                let _ = locked.remove(IpAddr::V6(a.ip));
            }
            Err(e)
        }
    }
}

/// Undoes [`allocate`] for exactly these addresses (ADD rollback).
pub fn undo(store: &Store, allocs: &[Allocation]) -> Result<()> {
    let locked = store.lock()?;
    for a in allocs {
        locked.remove(IpAddr::V6(a.ip))?;
    }
    Ok(())
}

/// DEL: releases everything `(id, ifname)` holds. Missing state is not an error.
pub fn release(store: &Store, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
    let locked = store.lock()?;
    locked.remove_stale_temp_files()?;
    locked.release_by_id(id, ifname)
}

/// CHECK: host-local passes when any reservation of `(id, ifname)` exists.
pub fn check(store: &Store, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
    let locked = store.lock()?;
    locked.get_by_id(id, ifname)
}

/// GC with `cni.dev/valid-attachments`.
pub fn gc(store: &Store, valid: &[(String, String)]) -> Result<Vec<IpAddr>> {
    let locked = store.lock()?;
    locked.remove_stale_temp_files()?;
    let mut released = locked.release_previous_boots()?;
    released.extend(locked.retain_valid(valid)?);
    Ok(released)
}

/// STATUS: the range sets that have no address left (after the reboot sweep).
pub fn exhausted(store: &Store, conf: &IpamConf) -> Result<Vec<usize>> {
    let locked = store.lock()?;
    locked.release_previous_boots()?;
    let entries = locked.entries()?;
    let mut out = Vec::new();
    for (idx, set) in conf.ranges.iter().enumerate() {
        let used = entries
            .iter()
            .filter(|e| match e.ip {
                IpAddr::V6(ip) => set.range_for(ip).is_some_and(|r| ip != r.gateway),
                IpAddr::V4(_) => false,
            })
            .count() as u128;
        if used >= set.capacity() {
            out.push(idx);
        }
    }
    Ok(out)
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
