//! Reading the datapath counters (`SL_METRICS`) from their pin, summed over CPUs. Works while the
//! agent is down: the map lives in bpffs.

use aya::maps::{Map, MapData, PerCpuArray};
use serde::Serialize;
use sixlane_common::{
    layout,
    metrics::{Counter, Direction, Reason, slot},
};

use crate::{Error, PinLayout, Result};

/// One (direction, reason) counter, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CounterRow {
    pub direction: &'static str,
    pub reason: &'static str,
    pub verdict: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// All known counters, including zero ones, in (direction, reason) order.
pub fn read(layout: &PinLayout) -> Result<Vec<CounterRow>> {
    let path = layout.map(layout::MAP_METRICS);
    let map_err = |source| Error::Map {
        name: layout::MAP_METRICS.to_owned(),
        source,
    };
    let data = MapData::from_pin(&path).map_err(map_err)?;
    let map = Map::from_map_data(data).map_err(map_err)?;
    let array: PerCpuArray<MapData, Counter> = map.try_into().map_err(map_err)?;
    let mut rows = Vec::new();
    for dir in Direction::ALL {
        for reason in Reason::ALL {
            let per_cpu = array.get(&slot(dir, reason), 0).map_err(map_err)?;
            let total = per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
            });
            rows.push(CounterRow {
                direction: dir.name(),
                reason: reason.name(),
                verdict: reason.verdict().name(),
                packets: total.packets,
                bytes: total.bytes,
            });
        }
    }
    Ok(rows)
}

/// Looks up one counter in rows returned by [`read`].
pub fn get(rows: &[CounterRow], dir: Direction, reason: Reason) -> Counter {
    rows.iter()
        .find(|r| r.direction == dir.name() && r.reason == reason.name())
        .map(|r| Counter {
            packets: r.packets,
            bytes: r.bytes,
        })
        .unwrap_or_default()
}
