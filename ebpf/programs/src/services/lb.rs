//! Load balancing: a tracked flow's packets translated by its conntrack entry, a new flow to a
//! frontend given a backend and its two entries, and the later fragments of a datagram
//! following their first.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap},
    programs::TcContext,
};
use sixlane_common::{
    metrics::{Direction, Reason},
    net::{proto, tcp_flags as tcp},
    services::{
        Affinity, AffinityKey, Backend, CtEntry, CtKey, FragKey, FragPorts, Service, Slot, SlotKey,
        backend_flags, ct_flags, ct_state, sizes, svc_flags,
    },
};

use super::{
    area::{self, Area},
    conntrack as ct,
    frontend::{Hook, service},
    icmp,
    rewrite::{self, rewritten},
};
use crate::{
    config, forward,
    mem::{eq16, is_zero16},
    packet,
    parse::{Frag, L3},
    verdict::Verdict,
};

#[map(name = "SL_SVC_SLOTS")]
static SL_SVC_SLOTS: HashMap<SlotKey, Slot> = HashMap::pinned(sizes::SLOTS, 0);

#[map(name = "SL_BACKENDS")]
static SL_BACKENDS: Array<Backend> = Array::pinned(sizes::BACKENDS, 0);

#[map(name = "SL_FRAGS")]
static SL_FRAGS: LruHashMap<FragKey, FragPorts> = LruHashMap::pinned(sizes::FRAGS, 0);

#[map(name = "SL_AFFINITY")]
static SL_AFFINITY: LruHashMap<AffinityKey, Affinity> = LruHashMap::pinned(sizes::AFFINITY, 0);

/// Reads the packet's 5-tuple into `key`.
#[inline(always)]
fn tuple(ctx: &TcContext, l3: &L3, key: &mut CtKey) -> Option<()> {
    // SAFETY: `src` and `dst` are the key's first 32 bytes (repr(C)).
    unsafe { rewrite::load_addrs(ctx, key.src.as_mut_ptr()) }.ok()?;
    let p: [u8; 4] = packet::read(ctx, l3.l4_off)?;
    key.sport = u16::from_ne_bytes([p[0], p[1]]);
    key.dport = u16::from_ne_bytes([p[2], p[3]]);
    key.proto = l3.proto;
    key._pad = 0;
    key._pad2 = 0;
    Some(())
}

#[inline(always)]
fn tcp_flags(ctx: &TcContext, l3: &L3) -> u8 {
    if l3.proto != proto::TCP {
        return 0;
    }
    // Data offset and flags together: a 1-byte direct read does not verify (see packet::ptr_at).
    packet::read::<[u8; 2]>(ctx, l3.l4_off + 12).map_or(0, |b| b[1])
}

/// TCP, UDP or SCTP with its ports: a tracked flow, a new flow to a frontend, or not ours.
#[inline(always)]
pub fn flow(ctx: &TcContext, l3: &L3, hook: Hook) -> Option<Verdict> {
    let s = area::get()?;
    if tuple(ctx, l3, &mut s.key).is_none() {
        // Ports announced but not there: the kernel drops it; count it on the way.
        return Some(Verdict::pass(Reason::Malformed));
    }
    // The clock and the TCP flags only matter once the packet turns out to be ours.
    let mut now = 0;
    let mut flags = 0;
    if let Some(e) = ct::find(&s.key) {
        // SAFETY: valid map value pointer.
        let entry = unsafe { &*e };
        // A reply to a local pod client may be translated here, at an ingress hook, and
        // delivered straight into the client (`ct_flags::PEER`) instead of at the client
        // veth's egress.
        let peer = entry.flags & hook.bit() == 0;
        if peer
            && (hook.dir() != Direction::Ingress
                || entry.flags & ct_flags::PEER == 0
                || l3.frag != Frag::No)
        {
            // Tracked, but translated at another hook (a reply on its way to the pod or
            // uplink whose egress rewrites it). Whether it is still live does not matter: a
            // reply-direction tuple is never a frontend's.
            return None;
        }
        now = ct::now();
        flags = tcp_flags(ctx, l3);
        if entry.expires_ns >= now && !ct::reopens(entry, l3.proto, flags) {
            let mut learn = 0;
            if peer {
                s.to = entry.translated(l3.proto);
                if !rewrite::peer_route(ctx, &mut s.fib, &s.to, entry.ifindex) {
                    return None;
                }
                if hook == Hook::FromPod {
                    // The reply comes from a local backend: its veth is where the client's
                    // next packets can go straight to.
                    learn = packet::ifindex(ctx);
                }
            }
            ct::seen(e, l3.proto, flags, now, &mut s.other, learn);
            if l3.frag == Frag::First {
                remember_fragment(s, l3);
            }
            let pkt = if peer { Packet::Peer } else { Packet::Whole };
            return Some(translate(ctx, l3.l4_off, pkt, hook, e));
        }
        if peer {
            return None;
        }
    }
    let scope = hook.scope()?;
    crate::mem::copy(
        &mut s.svc,
        service(&s.key.dst, s.key.dport, s.key.proto, scope)?,
    );
    if now == 0 {
        flags = tcp_flags(ctx, l3);
    }
    if l3.frag == Frag::First {
        remember_fragment(s, l3);
    }
    let v = new_flow(ctx, l3.l4_off, hook, flags);
    // Not from inside new_flow: the two would not fit the BPF stack together.
    Some(if v == REJECT { icmp::reject(ctx) } else { v })
}

/// `new_flow`'s answer when the client must be told there is no endpoint ([`icmp::reject`]
/// answers; no other verdict drops with this reason).
const REJECT: Verdict = Verdict::drop(Reason::SvcNoBackend);

/// What [`translate`] has to work with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Packet {
    /// A later fragment: no upper-layer header, addresses only.
    Fragment,
    /// A whole packet (or first fragment).
    Whole,
    /// A whole packet going straight into a local pod along the route already in the scratch
    /// space (`rewrite::peer_route`).
    Peer,
}

/// Applies conntrack entry `e`'s translation to the packet whose tuple is in the scratch key.
/// A forward entry that knows its local backend's veth tries the route straight into it.
#[inline(never)]
fn translate(
    ctx: &TcContext,
    l4_off: usize,
    pkt: Packet,
    hook: Hook,
    e: *const CtEntry,
) -> Verdict {
    let has_l4 = pkt != Packet::Fragment;
    let Some(s) = area::get() else {
        return REWRITE_FAILED;
    };
    // SAFETY: live map value pointer.
    let entry = unsafe { &*e };
    let flags = entry.flags;
    if pkt != Packet::Peer {
        // (The peer route was looked up for this very tuple: already there.)
        s.to = entry.translated(s.key.proto);
    }
    if rewrite::apply(ctx, l4_off, has_l4, &s.key, &s.to).is_err() {
        return REWRITE_FAILED;
    }
    if flags & ct_flags::REDIRECT_BACK != 0 {
        return rewritten(forward::redirect_back(ctx), Reason::SvcHairpin);
    }
    if flags & ct_flags::ROUTE != 0 {
        return rewritten(rewrite::reroute(ctx, &mut s.fib, &s.to), Reason::SvcForward);
    }
    if pkt == Packet::Peer
        || (pkt == Packet::Whole
            && hook == Hook::FromPod
            && flags & ct_flags::FORWARD != 0
            && entry.ifindex != 0
            && rewrite::peer_route(ctx, &mut s.fib, &s.to, entry.ifindex))
    {
        return rewritten(rewrite::redirect_peer(ctx, &s.fib), Reason::SvcPeer);
    }
    Verdict::pass(if flags & ct_flags::FORWARD != 0 {
        Reason::SvcForward
    } else {
        Reason::SvcReverse
    })
}

/// A rewrite step failed: the packet may be half-rewritten, so it is dropped.
const REWRITE_FAILED: Verdict = Verdict::drop(Reason::SvcRewriteFailed);

/// Whether backend `b` may serve `svc` right now (affinity must not pin clients to backends
/// that left the active set).
#[inline(always)]
fn usable(b: &Backend, svc: &Service) -> bool {
    let f = b.flags;
    if f & backend_flags::ALIVE == 0 || b.svc_port != svc.svc_port {
        return false;
    }
    if svc.flags & svc_flags::LOCAL_ONLY != 0 && f & backend_flags::LOCAL == 0 {
        return false;
    }
    if svc.flags & svc_flags::FALLBACK != 0 {
        f & (backend_flags::SERVING | backend_flags::TERMINATING)
            == backend_flags::SERVING | backend_flags::TERMINATING
    } else {
        f & backend_flags::READY != 0
    }
}

/// Picks a backend: the client's affine one while valid, else a random active slot.
#[inline(always)]
fn select(svc: &Service, client: &[u8; 16], now: u64) -> Option<u32> {
    let affinity = svc.flags & svc_flags::AFFINITY != 0;
    let akey = AffinityKey {
        client: *client,
        svc_port: svc.svc_port,
        _pad: 0,
    };
    if affinity && let Some(a) = SL_AFFINITY.get_ptr_mut(akey) {
        // SAFETY: valid map value pointer; racing writers store whole u32/u64 fields.
        let (id, last) = unsafe { ((*a).backend, (*a).last_ns) };
        if now.saturating_sub(last) < u64::from(svc.affinity_secs) * 1_000_000_000
            && let Some(b) = SL_BACKENDS.get(id)
            && usable(b, svc)
        {
            // SAFETY: as above.
            unsafe { (*a).last_ns = now };
            return Some(id);
        }
    }
    let count = u32::from(svc.count);
    if count == 0 {
        return None;
    }
    let slot = ct::random() % count;
    let sk = SlotKey {
        group: svc.group,
        slot,
    };
    // SAFETY: map values stay valid for the program run.
    let id = unsafe { SL_SVC_SLOTS.get(sk) }?.backend;
    if SL_BACKENDS.get(id)?.flags & backend_flags::ALIVE == 0 {
        return None;
    }
    if affinity {
        let v = Affinity {
            backend: id,
            _pad: 0,
            last_ns: now,
        };
        let _ = SL_AFFINITY.insert(akey, v, 0);
    }
    Some(id)
}

/// A new flow to the frontend in the scratch space (`key`, `svc`): pick a backend, create
/// both conntrack entries, translate.
#[inline(never)]
fn new_flow(ctx: &TcContext, l4_off: usize, hook: Hook, tcp_flags: u8) -> Verdict {
    let Some(s) = area::get() else {
        return REWRITE_FAILED;
    };
    let now = ct::now();
    let (id, b) = match backend(s, now) {
        Ok(picked) => picked,
        Err(v) => return v,
    };
    let l4 = s.key.proto;
    let state = if l4 == proto::TCP && tcp_flags & tcp::SYN != 0 {
        ct_state::SYN
    } else {
        0
    };
    entries(s, hook, (id, b), state, now);
    let exit = match policy(ctx, s, hook, b, now) {
        Ok(exit) => exit,
        Err(v) => return v,
    };
    s.other = s.fwd.sibling(l4);
    if let Err(r) = ct::create(&s.key, &s.fwd, &s.other, &s.rev) {
        return Verdict::drop(r);
    }
    s.to = s.fwd.translated(l4);
    if rewrite::apply(ctx, l4_off, true, &s.key, &s.to).is_err() {
        return REWRITE_FAILED;
    }
    match exit {
        Exit::Back => rewritten(forward::redirect_back(ctx), Reason::SvcHairpin),
        Exit::Reroute => rewritten(rewrite::reroute(ctx, &mut s.fib, &s.to), Reason::SvcNew),
        Exit::On => Verdict::pass(Reason::SvcNew),
    }
}

/// The backend (id and entry) for the new flow in `s`, or the verdict when there is none to
/// give it (or none it can use).
#[inline(always)]
fn backend(s: &Area, now: u64) -> Result<(u32, &'static Backend), Verdict> {
    if s.svc.count == 0 {
        if s.svc.flags & svc_flags::DROP_EMPTY != 0 {
            return Err(Verdict::drop(Reason::SvcNoLocalBackend));
        }
        return Err(REJECT);
    }
    let Some(id) = select(&s.svc, &s.key.src, now) else {
        // A slot naming a dead backend: the agent is mid-update or the maps are damaged.
        return Err(REJECT);
    };
    let Some(b) = SL_BACKENDS.get(id) else {
        return Err(REJECT);
    };
    if s.key.proto == proto::SCTP && b.port != s.key.dport {
        // SCTP's CRC32c covers the ports and cannot be updated incrementally.
        return Err(Verdict::drop(Reason::SvcUnsupported));
    }
    Ok((id, b))
}

/// Both entries of the new flow in `s` to backend `b` as a plain DNAT: the forward entry
/// rewrites the client's packets to the backend, the reply entry whatever the backend answers
/// to come from the frontend and go to the client. [`policy`] adds the rest.
#[inline(always)]
fn entries(s: &mut Area, hook: Hook, (id, b): (u32, &Backend), state: u8, now: u64) {
    let fwd = &mut s.fwd;
    fwd.new_src = s.key.src;
    crate::mem::copy(&mut fwd.new_dst, &b.addr);
    fwd.new_sport = s.key.sport;
    fwd.new_dport = b.port;
    fwd.flags = ct_flags::FORWARD | hook.bit();
    fwd.state = state;
    fwd._pad = 0;
    fwd.rev_nat = s.svc.rev_nat;
    fwd.backend = id;
    fwd.expires_ns = now + ct::lifetime_ns(s.key.proto, state);
    fwd.created_ns = now;
    fwd.ifindex = 0;
    fwd._pad2 = 0;
    let rev = &mut s.rev;
    rev.new_src = s.key.dst;
    rev.new_dst = s.key.src;
    rev.new_sport = s.key.dport;
    rev.new_dport = s.key.sport;
    rev.flags = 0;
    rev.state = state;
    rev._pad = 0;
    rev.rev_nat = s.svc.rev_nat;
    rev.backend = id;
    rev.expires_ns = fwd.expires_ns;
    rev.created_ns = now;
    rev.ifindex = 0;
    rev._pad2 = 0;
}

/// How a new flow's first packet leaves once translated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Hairpin: back out to the pod it came from.
    Back,
    /// A node process's packet, already routed towards the frontend: routed afresh.
    Reroute,
    /// On through the stack, which routes it to the backend.
    On,
}

/// Where the new flow in `s` is translated and how its replies come back, by who the client is
/// (`hook`) and where backend `b` is: source NAT for hairpin and for external clients of remote
/// backends, the hooks the reply entry is used at. The verdict when no SNAT port is free.
#[inline(always)]
fn policy(
    ctx: &TcContext,
    s: &mut Area,
    hook: Hook,
    b: &Backend,
    now: u64,
) -> Result<Exit, Verdict> {
    let hairpin = hook == Hook::FromPod && eq16(&b.addr, &s.key.src);
    let external = hook == Hook::FromUplink;
    let host = hook == Hook::ToUplink;
    let snat = hairpin
        || (external
            && s.svc.flags & svc_flags::SNAT_REMOTE != 0
            && b.flags & backend_flags::LOCAL == 0);
    if snat {
        // Source becomes the frontend (hairpin: the pod must see the service, not itself)
        // or a node address, on a port no live flow to this backend uses.
        let snat_addr = if hairpin || s.svc.flags & svc_flags::NODE_PORT != 0 {
            s.key.dst
        } else {
            match config::get() {
                Some(c) if !is_zero16(&c.snat_addr) => c.snat_addr,
                _ => s.key.dst,
            }
        };
        let probe = &mut s.other;
        crate::mem::copy(&mut probe.src, &b.addr);
        probe.dst = snat_addr;
        probe.sport = b.port;
        probe.dport = 0;
        probe.proto = s.key.proto;
        probe._pad = 0;
        probe._pad2 = 0;
        let first = if hairpin { s.key.sport } else { 0 };
        let Some(port) = ct::snat_port(probe, first, now) else {
            return Err(Verdict::drop(Reason::SvcSnatExhausted));
        };
        let (fwd, rev) = (&mut s.fwd, &mut s.rev);
        fwd.new_src = snat_addr;
        fwd.new_sport = port;
        fwd.flags |= ct_flags::SNAT;
        rev.flags = ct_flags::SNAT;
        if hairpin {
            fwd.flags |= ct_flags::HAIRPIN | ct_flags::REDIRECT_BACK;
            rev.flags |= ct_flags::HAIRPIN | ct_flags::REDIRECT_BACK | ct_flags::AT_FROM_POD;
            return Ok(Exit::Back);
        }
        // Replies come back to the node address on the uplink.
        rev.flags |= ct_flags::AT_FROM_UPLINK | ct_flags::EXTERNAL;
        fwd.flags |= ct_flags::EXTERNAL;
        return Ok(Exit::On);
    }
    let (fwd, rev) = (&mut s.fwd, &mut s.rev);
    if external {
        // Client address kept (local backend, or `externalTrafficPolicy: Local`): the reply
        // leaves through the uplink, whose egress restores the frontend.
        fwd.flags |= ct_flags::EXTERNAL;
        rev.flags = ct_flags::AT_TO_UPLINK | ct_flags::EXTERNAL;
        Ok(Exit::On)
    } else if host {
        // A node process: the packet was routed towards the frontend and goes to the backend
        // instead; the reply, addressed to the node, is restored before local delivery, on
        // the uplink (remote backend) or the backend's veth (local one).
        fwd.flags |= ct_flags::HOST | ct_flags::ROUTE;
        rev.flags = ct_flags::AT_FROM_UPLINK | ct_flags::AT_FROM_POD | ct_flags::HOST;
        Ok(Exit::Reroute)
    } else {
        // A pod client: its veth's egress restores the frontend, wherever the backend is,
        // unless the reply can be delivered straight into the client from where it arrives.
        rev.flags = ct_flags::AT_TO_POD;
        if forward::pod_fast_path() {
            rev.flags |= ct_flags::PEER;
            rev.ifindex = packet::ifindex(ctx);
        }
        Ok(Exit::On)
    }
}

/// Records the ports of a first fragment so the datagram's later fragments, which carry
/// none, find the same conntrack entry.
#[inline(always)]
fn remember_fragment(s: &mut Area, l3: &L3) {
    let f = &mut s.frag;
    f.src = s.key.src;
    f.dst = s.key.dst;
    f.id = l3.frag_id;
    f.proto = l3.proto;
    f._pad = 0;
    f._pad2 = 0;
    let ports = FragPorts {
        sport: s.key.sport,
        dport: s.key.dport,
    };
    let f: &FragKey = f;
    let _ = SL_FRAGS.insert(f, ports, 0);
}

/// A non-first fragment carries no ports: it follows its first fragment's translation (the
/// addresses; the first fragment's checksum already covers the whole datagram). Without a
/// first fragment seen, a fragment to a frontend cannot be translated and is dropped
/// (counted); anything else passes.
#[inline(always)]
pub fn later_fragment(ctx: &TcContext, l3: &L3, hook: Hook) -> Option<Verdict> {
    let s = area::get()?;
    let f = &mut s.frag;
    // SAFETY: `src` and `dst` are the key's first 32 bytes (repr(C)).
    unsafe { rewrite::load_addrs(ctx, f.src.as_mut_ptr()) }.ok()?;
    f.id = l3.frag_id;
    f.proto = l3.proto;
    f._pad = 0;
    f._pad2 = 0;
    let f: &FragKey = f;
    // SAFETY: map values stay valid for the program run.
    if let Some(p) = unsafe { SL_FRAGS.get(f) } {
        let k = &mut s.key;
        k.src = f.src;
        k.dst = f.dst;
        k.sport = p.sport;
        k.dport = p.dport;
        k.proto = l3.proto;
        k._pad = 0;
        k._pad2 = 0;
        let now = ct::now();
        if let Some(e) = ct::lookup(&s.key, now) {
            // SAFETY: live map value pointer.
            if unsafe { (*e).flags } & hook.bit() == 0 {
                return None;
            }
            ct::seen(e, l3.proto, 0, now, &mut s.other, 0);
            return Some(translate(ctx, l3.l4_off, Packet::Fragment, hook, e));
        }
    }
    let scope = hook.scope()?;
    service(&s.frag.dst, 0, proto::ICMPV6, scope)?;
    Some(Verdict::drop(Reason::SvcFragment))
}
