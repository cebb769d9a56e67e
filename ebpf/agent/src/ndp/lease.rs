//! The pinned lease under which the datapath answers for this node's L2 LoadBalancer IPs
//! (`layout::MAP_NDP_LEASE`): moved [`LEASE`] ahead of now at every heartbeat, so when the agent
//! dies the node stops answering for them within [`LEASE`] — before the other nodes, which wait
//! for `peers::TIMEOUT`, take them over. Pods are not under it.

use std::time::Duration;

use aya::maps::{Array, MapData};
use nix::time::{ClockId, clock_gettime};
use sixlane_common::{layout::MAP_NDP_LEASE, ndp::LEASE_KEY};

use crate::{Error, PinLayout, Result, pinned};

/// How far ahead of now each renewal sets the lease.
pub const LEASE: Duration = Duration::from_millis(1000);
const _: () = assert!(LEASE.as_millis() < super::peers::TIMEOUT.as_millis());

fn map_err(source: aya::maps::MapError) -> Error {
    pinned::map_err(MAP_NDP_LEASE)(source)
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of the kernel's `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always readable");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

pub struct Lease {
    map: Array<MapData, u64>,
}

impl Lease {
    pub fn open(layout: &PinLayout) -> Result<Self> {
        Ok(Self {
            map: pinned::open(layout, MAP_NDP_LEASE)?,
        })
    }

    /// Whether the lease still runs (a previous agent's, at start).
    pub fn running(&self) -> Result<bool> {
        Ok(self.map.get(&LEASE_KEY, 0).map_err(map_err)? > monotonic_ns())
    }

    /// Moves the lease to [`LEASE`] from now.
    pub fn renew(&mut self) -> Result<()> {
        self.run_for(LEASE)
    }

    /// Moves the lease to `d` from now.
    pub fn run_for(&mut self, d: Duration) -> Result<()> {
        let until = monotonic_ns() + d.as_nanos() as u64;
        self.map.set(LEASE_KEY, until, 0).map_err(map_err)
    }

    /// Ends it now: the LoadBalancer IPs in the table are answered no more.
    pub fn end(&mut self) -> Result<()> {
        self.map.set(LEASE_KEY, 0, 0).map_err(map_err)
    }
}
