//! Opening one of the datapath's pinned maps by name, typed: what the CLI, the Neighbor
//! Discovery task and NAT64's state readers share. Works while the agent is down.

use aya::maps::{Map, MapData, MapError};

use crate::{Error, PinLayout, Result};

/// The error of map `name`.
pub fn map_err(name: &str) -> impl Fn(MapError) -> Error + '_ {
    move |source| Error::Map {
        name: name.to_owned(),
        source,
    }
}

/// Map `name` under `layout`, as `T` (`HashMap<MapData, K, V>`, `Array<MapData, V>`, ...).
pub fn open<T: TryFrom<Map, Error = MapError>>(layout: &PinLayout, name: &str) -> Result<T> {
    let data = MapData::from_pin(layout.map(name)).map_err(map_err(name))?;
    let map = Map::from_map_data(data).map_err(map_err(name))?;
    map.try_into().map_err(map_err(name))
}
