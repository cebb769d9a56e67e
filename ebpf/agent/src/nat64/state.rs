//! Programming the NAT64 maps and reading them back: the configuration entry, the source
//! allow-list, and the binding and session tables (for the CLI and garbage collection). All of
//! it through the pins, so it works while the datapath runs and across agent restarts.

use std::{
    collections::{BTreeSet, HashSet},
    fs::File,
    io::Read as _,
    net::{Ipv4Addr, Ipv6Addr},
};

use aya::maps::{
    Array, HashMap, MapData,
    lpm_trie::{Key, LpmTrie},
};
use sixlane_common::{
    layout,
    nat64::maps::{Bib, BibKey, Config, DIR_IN, DIR_OUT, Session, SessionKey},
};

use super::{config::Nat64Config, statics};
use crate::{
    Error, PinLayout, Result,
    pinned::{self, map_err},
};

/// The configuration entry currently in the datapath.
pub fn read_config(layout: &PinLayout) -> Result<Config> {
    let name = layout::MAP_NAT64_CONFIG;
    let a: Array<MapData, Config> = pinned::open(layout, name)?;
    a.get(&0, 0).map_err(map_err(name))
}

fn random_key() -> Result<[u32; 4]> {
    let mut b = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::io("reading", "/dev/urandom", e))?;
    Ok([
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]) | 1,
    ])
}

/// What [`apply`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    pub sources_added: usize,
    pub sources_removed: usize,
    pub static_added: usize,
    pub static_removed: usize,
    pub static_kept: usize,
    /// Sessions of static bindings removed or changed, removed with them.
    pub static_sessions_removed: usize,
}

/// Programs the datapath from `cfg` (validated first): the configuration entry, the source
/// allow-list and the static bindings. The port selection secret survives re-application and
/// restarts; so do static bindings that did not change, with their sessions.
pub fn apply(layout: &PinLayout, cfg: &Nat64Config) -> Result<ApplyReport> {
    cfg.validate()?;
    let name = layout::MAP_NAT64_CONFIG;
    let mut a: Array<MapData, Config> = pinned::open(layout, name)?;
    let old = a.get(&0, 0).map_err(map_err(name))?;
    let key = if old.hash_key == [0; 4] {
        random_key()?
    } else {
        old.hash_key
    };
    let want = cfg.datapath(key)?;

    // Sources first when enabling (nothing is translated before the allow-list exists), the
    // configuration first when disabling.
    let (mut report, st);
    if want.flags & sixlane_common::nat64::maps::CFG_ENABLED != 0 {
        report = sync_sources(layout, cfg)?;
        st = statics::sync(layout, &cfg.static_bindings)?;
        a.set(0, want, 0).map_err(map_err(name))?;
    } else {
        a.set(0, want, 0).map_err(map_err(name))?;
        report = sync_sources(layout, cfg)?;
        st = statics::sync(layout, &[])?;
    }
    report.static_added = st.added;
    report.static_removed = st.removed;
    report.static_kept = st.kept;
    report.static_sessions_removed = remove_sessions_of(layout, &st.gone)?;
    Ok(report)
}

/// Removes the sessions opened through the IPv4-side binding keys `gone` (both entries of
/// each); returns how many.
fn remove_sessions_of(layout: &PinLayout, gone: &[BibKey]) -> Result<usize> {
    if gone.is_empty() {
        return Ok(0);
    }
    let gone: HashSet<(u8, [u8; 16], u16)> =
        gone.iter().map(|k| (k.proto, k.addr, k.port)).collect();
    let mut keys = Vec::new();
    for (k, v) in sessions(layout)? {
        if k.dir == DIR_IN && gone.contains(&(k.proto, k.addr, k.port)) {
            keys.push(k);
            keys.push(SessionKey {
                dir: DIR_OUT,
                port: v.port,
                addr: v.addr,
                ..k
            });
        }
    }
    remove(layout, &keys, &[])?;
    Ok(keys.len() / 2)
}

fn sync_sources(layout: &PinLayout, cfg: &Nat64Config) -> Result<ApplyReport> {
    let name = layout::MAP_NAT64_SOURCES;
    let mut t: LpmTrie<MapData, [u8; 16], u8> = pinned::open(layout, name)?;
    let want: BTreeSet<(u32, [u8; 16])> = if cfg.mode == super::config::Mode::Translate {
        cfg.pod_cidrs
            .iter()
            .map(|c| (u32::from(c.prefix_len()), c.network().octets()))
            .collect()
    } else {
        BTreeSet::new()
    };
    let have: BTreeSet<(u32, [u8; 16])> = t
        .keys()
        .filter_map(std::result::Result::ok)
        .map(|k| (k.prefix_len(), k.data()))
        .collect();
    let mut r = ApplyReport::default();
    for (len, data) in have.difference(&want) {
        t.remove(&Key::new(*len, *data)).map_err(map_err(name))?;
        r.sources_removed += 1;
    }
    for (len, data) in want.difference(&have) {
        t.insert(&Key::new(*len, *data), 1, 0)
            .map_err(map_err(name))?;
        r.sources_added += 1;
    }
    Ok(r)
}

/// Every entry of the session table (both directions).
pub fn sessions(layout: &PinLayout) -> Result<Vec<(SessionKey, Session)>> {
    let name = layout::MAP_NAT64_SESSIONS;
    let m: HashMap<MapData, SessionKey, Session> = pinned::open(layout, name)?;
    // Entries can vanish (LRU eviction, the datapath) while we walk: skip those.
    Ok(m.iter().filter_map(std::result::Result::ok).collect())
}

/// Every entry of the binding table (both directions).
pub fn bindings(layout: &PinLayout) -> Result<Vec<(BibKey, Bib)>> {
    let name = layout::MAP_NAT64_BIB;
    let m: HashMap<MapData, BibKey, Bib> = pinned::open(layout, name)?;
    Ok(m.iter().filter_map(std::result::Result::ok).collect())
}

/// Deletes session and binding entries (missing ones are fine: the datapath or LRU may have
/// beaten us to it).
pub fn remove(layout: &PinLayout, sessions: &[SessionKey], bindings: &[BibKey]) -> Result<()> {
    let name = layout::MAP_NAT64_SESSIONS;
    let mut m: HashMap<MapData, SessionKey, Session> = pinned::open(layout, name)?;
    for k in sessions {
        let _ = m.remove(k);
    }
    let name = layout::MAP_NAT64_BIB;
    let mut b: HashMap<MapData, BibKey, Bib> = pinned::open(layout, name)?;
    for k in bindings {
        let _ = b.remove(k);
    }
    Ok(())
}

/// The IPv4 address in the first 4 bytes of a 16-byte field.
pub fn v4(a: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(a[0], a[1], a[2], a[3])
}

/// One binding (RFC 6146 BIB entry) for display.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BindingRow {
    /// `dynamic` (made by a pod's first packet) or `static` (configured).
    pub kind: &'static str,
    pub proto: &'static str,
    pub pod: Ipv6Addr,
    pub pod_port: u16,
    pub pool: Ipv4Addr,
    pub pool_port: u16,
    pub age_secs: u64,
}

/// One session for display: the pod's side, the IPv4 side, state and idle time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SessionRow {
    pub proto: &'static str,
    pub pod: Ipv6Addr,
    pub pod_port: u16,
    pub peer6: Ipv6Addr,
    pub pool: Ipv4Addr,
    pub pool_port: u16,
    pub peer: Ipv4Addr,
    pub peer_port: u16,
    pub state: &'static str,
    pub idle_secs: u64,
    /// Seconds left before garbage collection, when the timeouts are known.
    pub expires_in_secs: Option<u64>,
}

pub fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        1 | 58 => "icmp",
        _ => "?",
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the epoch of the datapath's `bpf_ktime_get_coarse_ns` stamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Bindings as rows (IPv4-side entries, which every binding has), static ones (whose age is
/// 0: they are not made) first, sorted.
pub fn binding_rows(
    bib: &[(BibKey, Bib)],
    statics: &[(BibKey, Bib)],
    now_ns: u64,
) -> Vec<BindingRow> {
    let row = |kind, (k, v): &(BibKey, Bib)| BindingRow {
        kind,
        proto: proto_name(k.proto),
        pod: Ipv6Addr::from(v.addr),
        pod_port: v.port,
        pool: v4(&k.addr),
        pool_port: k.port,
        age_secs: if v.created_ns == 0 {
            0
        } else {
            now_ns.saturating_sub(v.created_ns) / 1_000_000_000
        },
    };
    let in_side = |e: &&(BibKey, Bib)| e.0.dir == DIR_IN;
    let mut rows: Vec<BindingRow> = statics
        .iter()
        .filter(in_side)
        .map(|e| row("static", e))
        .chain(bib.iter().filter(in_side).map(|e| row("dynamic", e)))
        .collect();
    rows.sort_by(|a, b| {
        (a.kind != "static", a.proto, a.pod, a.pod_port).cmp(&(
            b.kind != "static",
            b.proto,
            b.pod,
            b.pod_port,
        ))
    });
    rows
}

/// Sessions as rows (one per IPv6-side entry, joined with its IPv4-side twin), sorted.
pub fn session_rows(
    cfg: Option<&Nat64Config>,
    prefix: &sixlane_common::nat64::addr::Prefix,
    sessions: &[(SessionKey, Session)],
    now_ns: u64,
) -> Vec<SessionRow> {
    let ins: std::collections::HashMap<SessionKey, Session> = sessions
        .iter()
        .filter(|(k, _)| k.dir == DIR_IN)
        .copied()
        .collect();
    let mut rows: Vec<SessionRow> = sessions
        .iter()
        .filter(|(k, _)| k.dir != DIR_IN)
        .map(|(k, v)| {
            let back = SessionKey {
                dir: DIR_IN,
                port: v.port,
                addr: v.addr,
                ..*k
            };
            let last = ins
                .get(&back)
                .map_or(v.last_seen_ns, |b| b.last_seen_ns.max(v.last_seen_ns));
            let idle = now_ns.saturating_sub(last) / 1_000_000_000;
            let state = if k.proto == 6 {
                sixlane_common::nat64::tcp::State::from_u8(v.state).name()
            } else {
                "-"
            };
            let expires = cfg.map(|c| c.timeout(k.proto, v.state).as_secs().saturating_sub(idle));
            SessionRow {
                proto: proto_name(k.proto),
                pod: Ipv6Addr::from(k.addr),
                pod_port: k.port,
                peer6: Ipv6Addr::from(prefix.embed(k.remote)),
                pool: v4(&v.addr),
                pool_port: v.port,
                peer: Ipv4Addr::from(k.remote),
                peer_port: k.remote_port,
                state,
                idle_secs: idle,
                expires_in_secs: expires,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.proto, a.pod, a.pod_port, a.peer, a.peer_port).cmp(&(
            b.proto,
            b.pod,
            b.pod_port,
            b.peer,
            b.peer_port,
        ))
    });
    rows
}
