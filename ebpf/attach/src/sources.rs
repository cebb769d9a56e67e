//! The pinned pod source table (`layout::MAP_POD_SOURCES`, `sixlane_common::source`): which
//! sources each pod may send from, by host-side veth. The CNI plugin records a pod's addresses
//! before it attaches the programs, and forgets them on DEL and when pruning defunct veths.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
};

use aya::maps::{HashMap, Map, MapData};
use sixlane_common::{
    layout::MAP_POD_SOURCES,
    source::{ADDRESS, ANY, ENFORCE, MARKER, SourceKey},
};

use crate::{Error, PinLayout, Result};

/// `bpf_map_update_elem`'s "only if absent" flag (linux/bpf.h).
const BPF_NOEXIST: u64 = 1;

fn map_err(source: aya::maps::MapError) -> Error {
    Error::Map {
        name: MAP_POD_SOURCES.to_owned(),
        source,
    }
}

/// What is recorded for one veth.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The marker: `Some(true)` validated, `Some(false)` opted out, `None` none (not validated).
    pub enforce: Option<bool>,
    pub addrs: BTreeSet<Ipv6Addr>,
}

/// The table, opened through its pin.
pub struct Sources {
    map: HashMap<MapData, SourceKey, u32>,
}

impl Sources {
    /// The table pinned under `layout`; `None` when it is not (no datapath loaded, or one older
    /// than source validation).
    pub fn open(layout: &PinLayout) -> Result<Option<Self>> {
        let path = layout.map(MAP_POD_SOURCES);
        if !path.exists() {
            return Ok(None);
        }
        let data = MapData::from_pin(&path).map_err(map_err)?;
        let map = Map::from_map_data(data).map_err(map_err)?;
        Ok(Some(Self {
            map: map.try_into().map_err(map_err)?,
        }))
    }

    /// Replaces whatever `ifindex` had (a stale entry of an earlier interface with the same
    /// index) with `addrs` and the marker. Addresses go first, so a marker never enforces an
    /// incomplete set.
    pub fn record(&mut self, ifindex: u32, addrs: &[Ipv6Addr], enforce: bool) -> Result<()> {
        self.forget(ifindex)?;
        self.write(ifindex, addrs, enforce, 0).map(drop)
    }

    /// The agent's record for a veth the plugin attached without one (before the table
    /// existed): `addrs`, then the marker only if none is there yet. A concurrent ADD's own
    /// record (it replaces whatever the ifindex had) therefore always wins; false when it did.
    pub fn backfill(&mut self, ifindex: u32, addrs: &[Ipv6Addr], enforce: bool) -> Result<bool> {
        self.write(ifindex, addrs, enforce, BPF_NOEXIST)
    }

    /// `addrs`, then the marker with `flags`; false when `BPF_NOEXIST` found a marker there.
    fn write(
        &mut self,
        ifindex: u32,
        addrs: &[Ipv6Addr],
        enforce: bool,
        flags: u64,
    ) -> Result<bool> {
        for a in addrs {
            self.map
                .insert(SourceKey::new(ifindex, a.octets()), ADDRESS, 0)
                .map_err(map_err)?;
        }
        let mode = if enforce { ENFORCE } else { ANY };
        match self.map.insert(SourceKey::marker(ifindex), mode, flags) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(false)
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// Removes every entry of `ifindex`, marker first (so the veth is never left enforcing a
    /// partial set); how many there were.
    pub fn forget(&mut self, ifindex: u32) -> Result<usize> {
        let mut keys: Vec<SourceKey> = self
            .keys()?
            .into_iter()
            .filter(|k| k.ifindex == ifindex)
            .collect();
        keys.sort_by_key(|k| k.addr != MARKER);
        self.remove(&keys)?;
        Ok(keys.len())
    }

    /// Removes the entries of every ifindex `keep` refuses; the ifindexes removed.
    pub fn prune(&mut self, keep: &mut dyn FnMut(u32) -> bool) -> Result<Vec<u32>> {
        let mut gone = BTreeSet::new();
        for k in self.keys()? {
            if !gone.contains(&k.ifindex) && !keep(k.ifindex) {
                gone.insert(k.ifindex);
            }
        }
        for &i in &gone {
            self.forget(i)?;
        }
        Ok(gone.into_iter().collect())
    }

    /// Everything recorded, by ifindex.
    pub fn entries(&self) -> Result<BTreeMap<u32, Recorded>> {
        let mut out: BTreeMap<u32, Recorded> = BTreeMap::new();
        for kv in self.map.iter() {
            let (k, v) = kv.map_err(map_err)?;
            let r = out.entry(k.ifindex).or_default();
            if k.addr == MARKER {
                r.enforce = Some(v != ANY);
            } else {
                r.addrs.insert(Ipv6Addr::from(k.addr));
            }
        }
        Ok(out)
    }

    fn keys(&self) -> Result<Vec<SourceKey>> {
        self.map.keys().collect::<Result<_, _>>().map_err(map_err)
    }

    fn remove(&mut self, keys: &[SourceKey]) -> Result<()> {
        for k in keys {
            match self.map.remove(k) {
                Ok(()) => {}
                // Removed meanwhile by a concurrent DEL or GC: the goal is reached.
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(())
    }
}
