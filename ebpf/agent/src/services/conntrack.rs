//! Service conntrack from userspace: listing, garbage collection by lifetime, flushing.
//!
//! The datapath ignores dead entries and the kernel evicts the least recently used ones when
//! the LRU map is full; garbage collection removes dead entries before that, so the map's
//! occupancy reflects live flows. Run [`gc`] periodically (the agent does, every few seconds)
//! or `sixlane-agent conntrack gc`.

use std::{collections::BTreeSet, net::Ipv6Addr, time::Instant};

use serde::Serialize;
use sixlane_common::services::{
    Affinity, AffinityKey, Backend, CtEntry, CtKey, RevNat, SvcPortInfo, backend_flags, ct_flags,
    ct_state,
};

use super::{
    plan,
    store::{MapId, MapStore, PinnedMaps, dump_typed, pack_keys},
};
use crate::{PinLayout, Result};

/// Affinity entries older than this are removed whatever their service's timeout
/// (Kubernetes caps `timeoutSeconds` at one day).
const AFFINITY_MAX_NS: u64 = 86_400 * 1_000_000_000;

/// CLOCK_MONOTONIC in ns: the epoch of the datapath's `bpf_ktime_get_coarse_ns` stamps.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// What a [`gc`] pass did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct GcReport {
    pub scanned: usize,
    pub expired: usize,
    pub affinity_expired: usize,
    pub elapsed_us: u64,
}

/// Removes dead conntrack entries (past their lifetime at `now`) and stale affinities (past the
/// longest possible timeout, or naming a backend that is gone).
pub fn gc(store: &mut impl MapStore, now: u64) -> Result<GcReport> {
    let start = Instant::now();
    let entries: Vec<(CtKey, CtEntry)> = dump_typed(store, MapId::Ct)?;
    let dead: Vec<CtKey> = entries
        .iter()
        .filter(|(_, e)| e.expires_ns < now)
        .map(|(k, _)| *k)
        .collect();
    let expired = store.delete(MapId::Ct, &pack_keys(&dead))?;

    let alive: BTreeSet<u32> = dump_typed::<u32, Backend>(store, MapId::Backends)?
        .into_iter()
        .filter(|(_, b)| b.flags & backend_flags::ALIVE != 0)
        .map(|(id, _)| id)
        .collect();
    let stale: Vec<AffinityKey> = dump_typed::<AffinityKey, Affinity>(store, MapId::Affinity)?
        .into_iter()
        .filter(|(_, a)| {
            now.saturating_sub(a.last_ns) > AFFINITY_MAX_NS || !alive.contains(&a.backend)
        })
        .map(|(k, _)| k)
        .collect();
    let affinity_expired = store.delete(MapId::Affinity, &pack_keys(&stale))?;
    Ok(GcReport {
        scanned: entries.len(),
        expired,
        affinity_expired,
        elapsed_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
    })
}

/// One garbage-collection pass over the maps pinned under `layout`: what the agent daemon runs
/// every few seconds (and `sixlane-agent conntrack gc` once).
pub fn gc_pinned(layout: &PinLayout) -> Result<GcReport> {
    let mut store = PinnedMaps::open_some(layout, &[MapId::Ct, MapId::Backends, MapId::Affinity])?;
    gc(&mut store, now_ns())
}

/// Removes the conntrack entries of flows to the given backends (removed UDP endpoints: new
/// datagrams of those flows then pick a live backend, as kube-proxy's conntrack cleanup does).
pub fn flush_backends(store: &mut impl MapStore, backends: &[u32]) -> Result<usize> {
    let gone: BTreeSet<u32> = backends.iter().copied().collect();
    let keys: Vec<CtKey> = dump_typed::<CtKey, CtEntry>(store, MapId::Ct)?
        .into_iter()
        .filter(|(_, e)| gone.contains(&e.backend))
        .map(|(k, _)| k)
        .collect();
    store.delete(MapId::Ct, &pack_keys(&keys))
}

/// Removes every conntrack entry (established flows then start over as new ones).
pub fn flush(store: &mut impl MapStore) -> Result<usize> {
    let keys: Vec<CtKey> = dump_typed::<CtKey, CtEntry>(store, MapId::Ct)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    store.delete(MapId::Ct, &pack_keys(&keys))
}

/// One conntrack entry, readable.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FlowRow {
    pub proto: &'static str,
    /// `forward` (client → frontend) or `reply`.
    pub direction: &'static str,
    /// The tuple as matched, and what it is rewritten to.
    pub src: String,
    pub dst: String,
    pub new_src: String,
    pub new_dst: String,
    /// Where the rewrite happens.
    pub hook: &'static str,
    pub flags: Vec<&'static str>,
    pub state: Vec<&'static str>,
    /// Seconds until the entry dies (negative: dead, awaiting garbage collection).
    pub expires_in_s: i64,
    pub age_s: u64,
    pub backend: u32,
    pub frontend: String,
    pub service: String,
}

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        58 => "icmpv6",
        _ => "other",
    }
}

pub fn endpoint(addr: [u8; 16], port_be: u16) -> String {
    format!("[{}]:{}", Ipv6Addr::from(addr), u16::from_be(port_be))
}

/// Every conntrack entry with its service, forward entries first.
pub fn list(store: &mut impl MapStore, now: u64) -> Result<Vec<FlowRow>> {
    let entries: Vec<(CtKey, CtEntry)> = dump_typed(store, MapId::Ct)?;
    let revnat: std::collections::HashMap<u32, RevNat> =
        dump_typed::<u32, RevNat>(store, MapId::RevNat)?
            .into_iter()
            .collect();
    let info: std::collections::HashMap<u32, SvcPortInfo> =
        dump_typed::<u32, SvcPortInfo>(store, MapId::Info)?
            .into_iter()
            .collect();
    let mut rows: Vec<FlowRow> = entries
        .iter()
        .map(|(k, e)| {
            let forward = e.flags & ct_flags::FORWARD != 0;
            let hook = if e.flags & ct_flags::AT_FROM_POD != 0 {
                "from-pod"
            } else if e.flags & ct_flags::AT_TO_POD != 0 {
                "to-pod"
            } else if e.flags & ct_flags::AT_FROM_UPLINK != 0 {
                "from-uplink"
            } else if e.flags & ct_flags::AT_TO_UPLINK != 0 {
                "to-uplink"
            } else {
                "-"
            };
            let mut flags = Vec::new();
            for (bit, name) in [
                (ct_flags::SNAT, "snat"),
                (ct_flags::HAIRPIN, "hairpin"),
                (ct_flags::EXTERNAL, "external"),
            ] {
                if e.flags & bit != 0 {
                    flags.push(name);
                }
            }
            // Delivered straight into a local pod (docs/services.md, "Pod fast path").
            if e.ifindex != 0 && (forward || e.flags & ct_flags::PEER != 0) {
                flags.push("pod-fast-path");
            }
            let mut state = Vec::new();
            for (bit, name) in [
                (ct_state::SYN, "syn"),
                (ct_state::ESTABLISHED, "established"),
                (ct_state::FIN_FORWARD, "fin-forward"),
                (ct_state::FIN_REPLY, "fin-reply"),
                (ct_state::RST, "rst"),
                (ct_state::SEEN_REPLY, "replied"),
            ] {
                if e.state & bit != 0 {
                    state.push(name);
                }
            }
            if ct_state::closing(e.state) {
                state.push("closing");
            }
            let rev = revnat.get(&e.rev_nat);
            let frontend = rev.map_or_else(|| "-".to_owned(), |r| endpoint(r.addr, r.port));
            let service = rev
                .and_then(|r| info.get(&r.svc_port))
                .map_or_else(|| "-".to_owned(), |i| plan::info_name(i).to_owned());
            FlowRow {
                proto: proto_name(k.proto),
                direction: if forward { "forward" } else { "reply" },
                src: endpoint(k.src, k.sport),
                dst: endpoint(k.dst, k.dport),
                new_src: endpoint(e.new_src, e.new_sport),
                new_dst: endpoint(e.new_dst, e.new_dport),
                hook,
                flags,
                state,
                expires_in_s: ((i128::from(e.expires_ns) - i128::from(now)) / 1_000_000_000) as i64,
                age_s: now.saturating_sub(e.created_ns) / 1_000_000_000,
                backend: e.backend,
                frontend,
                service,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.direction == "forward", &a.service, &a.src).cmp(&(
            a.direction == "forward",
            &b.service,
            &b.src,
        ))
    });
    Ok(rows)
}
