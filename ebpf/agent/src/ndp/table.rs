//! The pinned table of owned addresses (`layout::MAP_NDP_OWNED`) the uplink program answers
//! Neighbor Solicitations from: read, and brought to a desired set with the fewest writes (an
//! address that stays is never removed and re-added, so answering for it never pauses).

use std::{collections::BTreeMap, net::Ipv6Addr};

use aya::maps::{HashMap, MapData};
use sixlane_common::{layout::MAP_NDP_OWNED, ndp::Owned};

use crate::{Error, PinLayout, Result, pinned};

fn map_err(source: aya::maps::MapError) -> Error {
    pinned::map_err(MAP_NDP_OWNED)(source)
}

/// The table, opened through its pin (works while the agent is down, and across restarts).
pub struct Table {
    map: HashMap<MapData, [u8; 16], Owned>,
}

/// What [`Table::sync`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<Ipv6Addr>,
    pub removed: Vec<Ipv6Addr>,
}

impl Table {
    pub fn open(layout: &PinLayout) -> Result<Self> {
        Ok(Self {
            map: pinned::open(layout, MAP_NDP_OWNED)?,
        })
    }

    /// Every address in the table.
    pub fn entries(&self) -> Result<BTreeMap<Ipv6Addr, Owned>> {
        self.map
            .iter()
            .map(|kv| kv.map(|(k, v)| (Ipv6Addr::from(k), v)).map_err(map_err))
            .collect()
    }

    /// Removes every address: nothing is answered any more.
    pub fn clear(&mut self) -> Result<Changes> {
        self.sync(&BTreeMap::new())
    }

    /// Writes the addresses of `want` that are missing or different, then removes the ones
    /// not in it.
    pub fn sync(&mut self, want: &BTreeMap<Ipv6Addr, Owned>) -> Result<Changes> {
        let have = self.entries()?;
        let mut c = Changes::default();
        for (addr, owned) in want {
            if have.get(addr) != Some(owned) {
                self.map.insert(addr.octets(), *owned, 0).map_err(map_err)?;
                if !have.contains_key(addr) {
                    c.added.push(*addr);
                }
            }
        }
        for addr in have.keys().filter(|a| !want.contains_key(a)) {
            self.map.remove(&addr.octets()).map_err(map_err)?;
            c.removed.push(*addr);
        }
        Ok(c)
    }
}
