//! Service conntrack: one LRU map, two entries per connection.
//!
//! The forward entry is keyed by the tuple the client sends (client → frontend), the reply
//! entry by the tuple the backend answers with (backend → client, or → SNAT address). Each
//! holds the tuple a matching packet is rewritten to, so every packet costs one lookup, and an
//! ICMPv6 error is matched by looking up the reversed tuple of the packet it quotes.
//!
//! Lifetimes: each hit refreshes its entry (at most once per `REFRESH_NS`, to keep map writes
//! off the per-packet path), and the sibling entry with it, so a connection lives as long as
//! either direction is active. TCP state changes (handshake done, FIN, RST) are written to both
//! entries. Dead entries are ignored here and removed by the agent's garbage collection; under
//! pressure the kernel evicts the least recently used.

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_coarse_ns},
    macros::map,
    maps::LruHashMap,
};
use sixlane_common::{
    metrics::Reason,
    net::{proto, tcp_flags as tcp},
    services::{CtEntry, CtKey, SNAT_PORT_MAX, SNAT_PORT_MIN, ct_flags, ct_state, lifetime, sizes},
};

use crate::{config, verdict::Res};

#[map(name = "SL_CT")]
static SL_CT: LruHashMap<CtKey, CtEntry> = LruHashMap::pinned(sizes::CONNTRACK, 0);

const NS: u64 = 1_000_000_000;
/// Entries are refreshed at most this often (and a state change always writes).
const REFRESH_NS: u64 = NS;
/// SNAT ports tried before giving up on a new flow.
const SNAT_TRIES: u32 = 8;

#[inline(always)]
pub fn now() -> u64 {
    // CLOCK_MONOTONIC_COARSE: the agent's CLOCK_MONOTONIC epoch, at most a tick behind it.
    // Timeouts are seconds; the fine clock costs a clocksource read on every packet.
    // SAFETY: no arguments, always safe to call.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
pub fn random() -> u32 {
    // SAFETY: no arguments, always safe to call.
    unsafe { bpf_get_prandom_u32() }
}

#[inline(always)]
fn secs_or(v: u32, default: u32) -> u64 {
    u64::from(if v == 0 { default } else { v }) * NS
}

/// How long an entry in `state` lives after its last packet.
#[inline(always)]
pub fn lifetime_ns(l4: u8, state: u8) -> u64 {
    let (syn, est, closing, other) = match config::get() {
        Some(c) => (
            c.tcp_syn_secs,
            c.tcp_established_secs,
            c.tcp_closing_secs,
            c.other_secs,
        ),
        None => (0, 0, 0, 0),
    };
    if l4 != proto::TCP {
        secs_or(other, lifetime::OTHER)
    } else if ct_state::closing(state) {
        secs_or(closing, lifetime::TCP_CLOSING)
    } else if state & ct_state::ESTABLISHED != 0 {
        secs_or(est, lifetime::TCP_ESTABLISHED)
    } else {
        secs_or(syn, lifetime::TCP_SYN)
    }
}

/// The entry for `key`, live or not (callers check `expires_ns`).
#[inline(always)]
pub fn find(key: &CtKey) -> Option<*mut CtEntry> {
    SL_CT.get_ptr_mut(key)
}

/// The live entry for `key`, if any.
#[inline(always)]
pub fn lookup(key: &CtKey, now: u64) -> Option<*mut CtEntry> {
    let e = SL_CT.get_ptr_mut(key)?;
    // SAFETY: a valid map value pointer; a concurrent update can at worst tear this u64 read,
    // which only decides whether the entry is considered live.
    if unsafe { (*e).expires_ns } < now {
        return None;
    }
    Some(e)
}

/// Whether a forward-direction TCP packet with `tcp_flags` opens a new connection over the
/// dead remains of an old one (a SYN reusing a tuple in TIME_WAIT, as netfilter allows).
#[inline(always)]
pub fn reopens(e: &CtEntry, l4: u8, tcp_flags: u8) -> bool {
    l4 == proto::TCP
        && tcp_flags & (tcp::SYN | tcp::ACK) == tcp::SYN
        && e.flags & ct_flags::FORWARD != 0
        && ct_state::closing(e.state)
}

/// Accounts a packet that matched `e`: TCP state, lifetime, and the sibling entry when either
/// changed enough to matter. `learn` (non-zero): the pod veth a reply came from, recorded on
/// the forward entry so the client's later packets can be delivered straight to that pod.
#[inline(always)]
pub fn seen(e: *mut CtEntry, l4: u8, tcp_flags: u8, now: u64, sib_key: &mut CtKey, learn: u32) {
    // SAFETY: `e` is a live map value pointer from `lookup`. Two CPUs may update the same
    // entry; the fields written are independent and any interleaving leaves a valid entry.
    let entry = unsafe { &mut *e };
    let forward = entry.flags & ct_flags::FORWARD != 0;
    let old = entry.state;
    let mut st = old;
    if forward {
        if l4 == proto::TCP && tcp_flags & (tcp::SYN | tcp::ACK) == tcp::ACK {
            // The client acknowledged the server's SYN-ACK (or anything later).
            st |= ct_state::ESTABLISHED;
        }
    } else {
        st |= ct_state::SEEN_REPLY;
    }
    if l4 == proto::TCP {
        if tcp_flags & tcp::RST != 0 {
            st |= ct_state::RST;
        }
        if tcp_flags & tcp::FIN != 0 {
            st |= if forward {
                ct_state::FIN_FORWARD
            } else {
                ct_state::FIN_REPLY
            };
        }
    }
    let expires = now + lifetime_ns(l4, st);
    let changed = st != old;
    if !changed && expires < entry.expires_ns + REFRESH_NS {
        return;
    }
    entry.state = st;
    entry.expires_ns = expires;
    *sib_key = entry.sibling(l4);
    // By reference: the key lives in scratch space, not on the BPF stack.
    let sib_key: &CtKey = sib_key;
    if let Some(sib) = SL_CT.get_ptr_mut(sib_key) {
        // SAFETY: as above, for the sibling's value pointer.
        let s = unsafe { &mut *sib };
        if learn != 0 && s.flags & ct_flags::FORWARD != 0 {
            s.ifindex = learn;
        }
        if changed {
            s.state |= st;
            s.expires_ns = now + lifetime_ns(l4, s.state);
        } else if s.expires_ns < expires {
            s.expires_ns = expires;
        }
    }
}

/// Creates both entries of a new connection: the reply entry first, so no reply can arrive
/// before it exists. Existing (dead or reused) entries are overwritten.
#[inline(always)]
pub fn create(fwd_key: &CtKey, fwd: &CtEntry, rev_key: &CtKey, rev: &CtEntry) -> Res<()> {
    if SL_CT.insert(rev_key, rev, u64::from(BPF_ANY)).is_err() {
        return Err(Reason::SvcCtFull);
    }
    if SL_CT.insert(fwd_key, fwd, u64::from(BPF_ANY)).is_err() {
        let _ = SL_CT.remove(rev_key);
        return Err(Reason::SvcCtFull);
    }
    Ok(())
}

/// A source port for a translated flow whose reply key is `rev_key` with `dport` = the port:
/// `first` if free (0 = none preferred), else random ports of the SNAT range. A port is taken
/// while a live reply entry uses it.
#[inline(always)]
pub fn snat_port(rev_key: &mut CtKey, first_be: u16, now: u64) -> Option<u16> {
    let (min, max) = match config::get() {
        Some(c) if c.snat_port_min != 0 && c.snat_port_max >= c.snat_port_min => {
            (c.snat_port_min, c.snat_port_max)
        }
        _ => (SNAT_PORT_MIN, SNAT_PORT_MAX),
    };
    let span = u32::from(max - min) + 1;
    if span == 0 {
        return None;
    }
    if first_be != 0 {
        rev_key.dport = first_be;
        if lookup(rev_key, now).is_none() {
            return Some(first_be);
        }
    }
    let start = random() % span;
    for i in 0..SNAT_TRIES {
        // Consecutive from a random start: cheap, and as likely to be free as another draw.
        let port = min + ((start + i * 7919) % span) as u16;
        rev_key.dport = port.to_be();
        if lookup(rev_key, now).is_none() {
            return Some(rev_key.dport);
        }
    }
    None
}
