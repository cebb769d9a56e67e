//! Where the service programmer's writes go: the pinned maps (through batched syscalls) or, in
//! unit tests, an in-memory model that can check invariants after every write.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, BorrowedFd},
    path::PathBuf,
};

use aya::{Pod, maps::MapData};
use sixlane_common::{
    layout,
    services::{
        Affinity, AffinityKey, Backend, Config, CtEntry, CtKey, RevNat, Service, Slot, SlotKey,
        SvcKey, SvcPortInfo,
    },
};

use super::sys;
use crate::{
    Error, PinLayout, Result,
    error::{MapDiff, MapDiffs},
};

/// The maps of the service datapath.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapId {
    Svc,
    Slots,
    Backends,
    RevNat,
    Info,
    Affinity,
    Ct,
    Config,
}

impl MapId {
    pub const ALL: [MapId; 8] = [
        MapId::Svc,
        MapId::Slots,
        MapId::Backends,
        MapId::RevNat,
        MapId::Info,
        MapId::Affinity,
        MapId::Ct,
        MapId::Config,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            MapId::Svc => layout::MAP_SVC,
            MapId::Slots => layout::MAP_SVC_SLOTS,
            MapId::Backends => layout::MAP_BACKENDS,
            MapId::RevNat => layout::MAP_REVNAT,
            MapId::Info => layout::MAP_SVC_INFO,
            MapId::Affinity => layout::MAP_AFFINITY,
            MapId::Ct => layout::MAP_CT,
            MapId::Config => layout::MAP_SVC_CONFIG,
        }
    }

    /// Arrays cannot delete: their "deleted" elements are zeroed.
    pub const fn is_array(self) -> bool {
        matches!(self, MapId::Backends | MapId::RevNat | MapId::Config)
    }

    pub const fn sizes(self) -> (usize, usize) {
        use std::mem::size_of;
        match self {
            MapId::Svc => (size_of::<SvcKey>(), size_of::<Service>()),
            MapId::Slots => (size_of::<SlotKey>(), size_of::<Slot>()),
            MapId::Backends => (4, size_of::<Backend>()),
            MapId::RevNat => (4, size_of::<RevNat>()),
            MapId::Info => (4, size_of::<SvcPortInfo>()),
            MapId::Affinity => (size_of::<AffinityKey>(), size_of::<Affinity>()),
            MapId::Ct => (size_of::<CtKey>(), size_of::<CtEntry>()),
            MapId::Config => (4, size_of::<Config>()),
        }
    }
}

/// Raw map access. Each call is one ordered step: the datapath may look at the maps between
/// any two calls, so callers order them to keep every intermediate state consistent.
pub trait MapStore {
    /// Writes `n` elements (keys and values packed back to back).
    fn update(&mut self, map: MapId, keys: &[u8], values: &[u8]) -> Result<()>;
    /// Deletes keys (zeroes them in arrays); absent keys are ignored. Returns how many went.
    fn delete(&mut self, map: MapId, keys: &[u8]) -> Result<usize>;
    /// Every element (for arrays: every non-zero one).
    fn dump(&mut self, map: MapId) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
}

/// Views a `Pod` as bytes.
pub fn bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: `Pod` types are plain data without padding.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(v).cast::<u8>(), size_of::<T>()) }
}

/// Reads a `Pod` from bytes of exactly its size.
pub fn from_bytes<T: Pod>(b: &[u8]) -> T {
    assert_eq!(b.len(), size_of::<T>(), "element size");
    // SAFETY: `Pod`: every bit pattern is valid; the length was checked.
    unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) }
}

/// Packs typed elements for [`MapStore::update`].
pub fn pack<K: Pod, V: Pod>(entries: &[(K, V)]) -> (Vec<u8>, Vec<u8>) {
    let mut keys = Vec::with_capacity(entries.len() * size_of::<K>());
    let mut values = Vec::with_capacity(entries.len() * size_of::<V>());
    for (k, v) in entries {
        keys.extend_from_slice(bytes(k));
        values.extend_from_slice(bytes(v));
    }
    (keys, values)
}

pub fn pack_keys<K: Pod>(keys: &[K]) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_of_val(keys));
    for k in keys {
        out.extend_from_slice(bytes(k));
    }
    out
}

/// Typed dump.
pub fn dump_typed<K: Pod, V: Pod>(store: &mut impl MapStore, map: MapId) -> Result<Vec<(K, V)>> {
    Ok(store
        .dump(map)?
        .iter()
        .map(|(k, v)| (from_bytes::<K>(k), from_bytes::<V>(v)))
        .collect())
}

/// The pinned maps of a loaded datapath.
pub struct PinnedMaps {
    maps: BTreeMap<MapId, MapData>,
}

impl std::fmt::Debug for PinnedMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedMaps").finish_non_exhaustive()
    }
}

impl PinnedMaps {
    /// Opens every service map pinned under `layout`, checking key and value sizes.
    pub fn open(layout: &PinLayout) -> Result<Self> {
        Self::open_some(layout, &MapId::ALL)
    }

    /// Opens the given maps only (the CLI's conntrack view needs just one).
    pub fn open_some(layout: &PinLayout, which: &[MapId]) -> Result<Self> {
        let mut maps = BTreeMap::new();
        for &id in which {
            let path: PathBuf = layout.map(id.name());
            if !path.exists() {
                return Err(Error::MapNotPinned {
                    name: id.name().to_owned(),
                    path,
                });
            }
            let map_err = |source| Error::Map {
                name: id.name().to_owned(),
                source,
            };
            let data = MapData::from_pin(&path).map_err(map_err)?;
            let info = data.info().map_err(map_err)?;
            let (k, v) = id.sizes();
            let diffs = MapDiffs(
                [
                    MapDiff::KeySize {
                        pinned: info.key_size(),
                        built: k as u32,
                    },
                    MapDiff::ValueSize {
                        pinned: info.value_size(),
                        built: v as u32,
                    },
                ]
                .into_iter()
                .filter(MapDiff::differs)
                .collect(),
            );
            if !diffs.is_empty() {
                return Err(Error::IncompatibleMap {
                    name: id.name().to_owned(),
                    path,
                    diffs,
                });
            }
            maps.insert(id, data);
        }
        Ok(Self { maps })
    }

    fn fd(&self, id: MapId) -> Result<BorrowedFd<'_>> {
        self.maps
            .get(&id)
            .map(|m| m.fd().as_fd())
            .ok_or(Error::MapNotOpened { map: id.name() })
    }

    /// Looks one element up.
    pub fn lookup<K: Pod, V: Pod>(&self, id: MapId, key: &K) -> Result<Option<V>> {
        let mut buf = vec![0u8; size_of::<V>()];
        let found = sys::lookup(self.fd(id)?, bytes(key), &mut buf).map_err(|e| syscall(id, e))?;
        Ok(found.then(|| from_bytes(&buf)))
    }
}

fn syscall(id: MapId, source: std::io::Error) -> Error {
    Error::Syscall {
        map: id.name(),
        source,
    }
}

impl MapStore for PinnedMaps {
    fn update(&mut self, map: MapId, keys: &[u8], values: &[u8]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let (k, v) = map.sizes();
        sys::update_batch(self.fd(map)?, keys, k, values, v).map_err(|e| syscall(map, e))
    }

    fn delete(&mut self, map: MapId, keys: &[u8]) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        let (k, v) = map.sizes();
        if map.is_array() {
            let n = keys.len() / k;
            let zeros = vec![0u8; n * v];
            self.update(map, keys, &zeros)?;
            return Ok(n);
        }
        sys::delete_batch(self.fd(map)?, keys, k).map_err(|e| syscall(map, e))
    }

    fn dump(&mut self, map: MapId) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (k, v) = map.sizes();
        let mut all = sys::dump(self.fd(map)?, k, v).map_err(|e| syscall(map, e))?;
        if map.is_array() {
            all.retain(|(_, v)| v.iter().any(|b| *b != 0));
        }
        Ok(all)
    }
}

/// An in-memory stand-in for the maps (unit tests): applies each call, then runs `check` on
/// the whole state, so a test can assert an invariant holds between every two writes.
pub struct MemoryMaps {
    pub maps: BTreeMap<MapId, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Every call, in order: (map, is-delete, element count).
    pub log: Vec<(MapId, bool, usize)>,
    #[allow(clippy::type_complexity, reason = "a test hook")]
    pub check: Option<Box<dyn FnMut(&BTreeMap<MapId, BTreeMap<Vec<u8>, Vec<u8>>>)>>,
}

impl std::fmt::Debug for MemoryMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryMaps")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryMaps {
    fn default() -> Self {
        Self {
            maps: MapId::ALL.iter().map(|m| (*m, BTreeMap::new())).collect(),
            log: Vec::new(),
            check: None,
        }
    }
}

impl MemoryMaps {
    fn after(&mut self) {
        if let Some(c) = self.check.as_mut() {
            c(&self.maps);
        }
    }

    /// Typed view of one map.
    pub fn typed<K: Pod, V: Pod>(&self, map: MapId) -> Vec<(K, V)> {
        self.maps[&map]
            .iter()
            .map(|(k, v)| (from_bytes(k), from_bytes(v)))
            .collect()
    }
}

impl MapStore for MemoryMaps {
    fn update(&mut self, map: MapId, keys: &[u8], values: &[u8]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let (k, v) = map.sizes();
        let n = keys.len() / k;
        let m = self.maps.get_mut(&map).expect("all maps present");
        for i in 0..n {
            let val = values[i * v..(i + 1) * v].to_vec();
            let key = keys[i * k..(i + 1) * k].to_vec();
            if map.is_array() && val.iter().all(|b| *b == 0) {
                m.remove(&key);
            } else {
                m.insert(key, val);
            }
        }
        self.log.push((map, false, n));
        self.after();
        Ok(())
    }

    fn delete(&mut self, map: MapId, keys: &[u8]) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        let (k, _) = map.sizes();
        let n = keys.len() / k;
        let m = self.maps.get_mut(&map).expect("all maps present");
        let mut gone = 0;
        for i in 0..n {
            if m.remove(&keys[i * k..(i + 1) * k]).is_some() {
                gone += 1;
            }
        }
        self.log.push((map, true, n));
        self.after();
        Ok(gone)
    }

    fn dump(&mut self, map: MapId) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self.maps[&map]
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
