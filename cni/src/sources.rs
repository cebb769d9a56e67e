//! Pod source validation, the plugin's side (docs/cni.md, "Source validation"): the pod's
//! addresses are recorded in the pinned source table (`sixlane_attach::sources`) for its host
//! veth's ifindex before the programs are attached, checked by CHECK, and forgotten on DEL and
//! whenever defunct veths are pruned (ADD, DEL, GC).

use std::{net::Ipv6Addr, path::Path};

use sixlane_attach::{PinLayout, iface, sources::Sources};

use crate::{
    error::{Error, Result},
    log, plumb,
};

fn open(pin_root: &Path) -> Result<Option<Sources>> {
    Sources::open(&PinLayout::new(pin_root))
        .map_err(|e| Error::dataplane("opening the pod source table", e))
}

/// An ifindex that belongs to no pod any more: no interface has it, or one that is not a
/// plugin-made host veth (the index was reused).
fn defunct(ifindex: u32) -> bool {
    !iface::name(ifindex).is_some_and(|n| plumb::is_host_ifname(&n))
}

/// Removes the entries of defunct veths (a pod whose namespace went without a DEL).
fn prune(t: &mut Sources) -> Result<Vec<u32>> {
    t.prune(&mut |i| !defunct(i))
        .map_err(|e| Error::dataplane("pruning the pod source table", e))
}

/// ADD: records `addrs` (or the opt-out) for `host_if`, replacing what its ifindex had, after
/// pruning defunct veths. Returns the ifindex recorded, `None` when the datapath loaded has no
/// source table (an agent older than source validation: its programs do not validate).
pub fn record(
    pin_root: &Path,
    host_if: &str,
    addrs: &[Ipv6Addr],
    enforce: bool,
) -> Result<Option<u32>> {
    let Some(mut t) = open(pin_root)? else {
        log::warn("the loaded datapath has no pod source table: sources are not validated");
        return Ok(None);
    };
    let ifindex = iface::index(host_if).ok_or_else(|| {
        Error::dataplane(
            "recording the pod's sources",
            sixlane_attach::Error::NoSuchInterface(host_if.to_owned()),
        )
    })?;
    let pruned = prune(&mut t)?;
    if !pruned.is_empty() {
        log::info(&format!(
            "pruned source entries of defunct ifindexes {pruned:?}"
        ));
    }
    t.record(ifindex, addrs, enforce).map_err(|e| {
        Error::dataplane(
            format!("recording the sources of {host_if} (ifindex {ifindex})"),
            e,
        )
    })?;
    Ok(Some(ifindex))
}

/// DEL and ADD's rollback: forgets `ifindex` (the veth's, read before it was deleted) and
/// prunes defunct veths. Nothing to do without a table.
pub fn forget(pin_root: &Path, ifindex: Option<u32>) -> Result<()> {
    let Some(mut t) = open(pin_root)? else {
        return Ok(());
    };
    if let Some(i) = ifindex {
        t.forget(i)
            .map_err(|e| Error::dataplane(format!("forgetting the sources of ifindex {i}"), e))?;
    }
    prune(&mut t).map(drop)
}

/// GC: prunes defunct veths; the ifindexes removed.
pub fn gc(pin_root: &Path) -> Result<Vec<u32>> {
    match open(pin_root)? {
        Some(mut t) => prune(&mut t),
        None => Ok(Vec::new()),
    }
}

/// CHECK: `host_if` has exactly `addrs` recorded, with the marker `enforce` asks for.
pub fn verify(pin_root: &Path, host_if: &str, addrs: &[Ipv6Addr], enforce: bool) -> Result<()> {
    let Some(t) = open(pin_root)? else {
        return Ok(());
    };
    let ifindex = iface::index(host_if)
        .ok_or_else(|| Error::Check(format!("host interface {host_if} does not exist")))?;
    let entries = t
        .entries()
        .map_err(|e| Error::dataplane("reading the pod source table", e))?;
    let have = entries.get(&ifindex).cloned().unwrap_or_default();
    let want_mode = if enforce { "validated" } else { "opted out" };
    match have.enforce {
        None => {
            return Err(Error::Check(format!(
                "no source validation entry for {host_if} (ifindex {ifindex})"
            )));
        }
        Some(e) if e != enforce => {
            return Err(Error::Check(format!(
                "{host_if}'s sources are {}, the pod's annotation says {want_mode}",
                if e { "validated" } else { "opted out" }
            )));
        }
        Some(_) => {}
    }
    let want: std::collections::BTreeSet<Ipv6Addr> = addrs.iter().copied().collect();
    if have.addrs != want {
        return Err(Error::Check(format!(
            "{host_if}'s recorded sources are {:?}, the pod's addresses {:?}",
            have.addrs, want
        )));
    }
    Ok(())
}
