//! RFC 6146 state: bindings (BIB) and sessions, both directions per entry pair (see
//! `sixlane_common::nat64::maps`). Creating a binding reserves an (address, port) of the pool
//! atomically (`BPF_NOEXIST` on the IPv4-side entry); sessions record the peer and, for TCP,
//! the connection state. Expiry is the agent's garbage collector's job: the datapath only
//! stamps `last_seen_ns`. Keys and values are built in the scratch area.

// Map helpers take keys and values by `Borrow`; passing the scratch-resident ones by value
// would copy them onto the 512-byte BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::bpf_ktime_get_coarse_ns,
};
use sixlane_common::{
    metrics::Reason,
    nat64::{
        maps::{
            Bib, BibKey, Config, DIR_IN, DIR_OUT, MAX_POOL_ADDRS, PortRange, Session, SessionKey,
        },
        pool,
        tcp::{self, Side, State},
    },
    net::{proto, tcp_flags},
};

use super::maps::{BIB, SESSIONS, SOURCES, STATIC};

/// Whether `src` is in a pod CIDR allowed to use the translator (no open relay).
#[inline(always)]
pub fn source_allowed(src: &[u8; 16]) -> bool {
    let key = aya_ebpf::maps::lpm_trie::Key::new(128, *src);
    SOURCES.get(&key).is_some()
}

/// `last_seen_ns` is refreshed at most this often per entry: timeouts are minutes, and writing
/// a shared cache line on every packet would cost more than it tells.
const REFRESH_NS: u64 = 1_000_000_000;

#[inline(always)]
pub fn now() -> u64 {
    // CLOCK_MONOTONIC_COARSE: the agent's CLOCK_MONOTONIC epoch, at most a tick behind it.
    // Timeouts are seconds; the fine clock costs a clocksource read on every packet.
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Writes IPv4 address `a` into a 16-byte field (first 4 bytes, the rest zero).
#[inline(always)]
pub fn set_v4(out: &mut [u8; 16], a: [u8; 4]) {
    out[0] = a[0];
    out[1] = a[1];
    out[2] = a[2];
    out[3] = a[3];
    crate::mem::zero_tail(out, 4);
}

#[inline(always)]
pub fn first4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

/// The IPv6-side session key (X', x, Y, y).
#[inline(always)]
fn out_key(k: &mut SessionKey, proto: u8, x_addr: &[u8; 16], x_port: u16, y: [u8; 4], y_port: u16) {
    k.proto = proto;
    k.dir = DIR_OUT;
    k._pad = 0;
    k.port = x_port;
    k.remote_port = y_port;
    k.addr.copy_from_slice(x_addr);
    k.remote = y;
}

/// The IPv4-side session key (T, t, Z, z).
#[inline(always)]
fn in_key(k: &mut SessionKey, proto: u8, t_addr: [u8; 4], t_port: u16, z: [u8; 4], z_port: u16) {
    k.proto = proto;
    k.dir = DIR_IN;
    k._pad = 0;
    k.port = t_port;
    k.remote_port = z_port;
    set_v4(&mut k.addr, t_addr);
    k.remote = z;
}

/// A session value pointing at the pod (X', x) behind veth `ifindex` (0: unknown).
#[inline(always)]
fn value6(v: &mut Session, addr: &[u8; 16], port: u16, ifindex: u32, t: u64) {
    crate::mem::copy(&mut v.addr, addr);
    v.port = port;
    v.state = 0;
    v.flags = 0;
    v.ifindex = ifindex;
    v.last_seen_ns = t;
}

/// A session value pointing at the pool address (T, t), with the TCP state.
#[inline(always)]
fn value4(v: &mut Session, addr: [u8; 4], port: u16, state: u8, t: u64) {
    set_v4(&mut v.addr, addr);
    v.port = port;
    v.state = state;
    v.flags = 0;
    v.ifindex = 0;
    v.last_seen_ns = t;
}

/// The IPv4 transport address (T, t) an outbound packet leaves with.
#[derive(Clone, Copy, Default)]
pub struct Mapping {
    pub t_addr: [u8; 4],
    pub t_port: u16,
    /// The session was created or refreshed by this packet (at most once a second): a moment
    /// to (re)learn its pod's link (`forward::learn_pod_link`), which heals an evicted one.
    pub learn: bool,
    /// `now()` when the packet's session was looked up (one clock read per packet).
    pub now: u64,
}

/// An IPv6-side packet's flow: (X', x) → (Y, y), and its TCP flags (0 for UDP and ICMP).
#[derive(Clone, Copy, Default)]
pub struct Flow {
    pub proto: u8,
    pub tcp_flags: u8,
    /// Transport header length (TCP data offset; 8 for UDP).
    pub l4_hlen: u16,
    pub x_port: u16,
    pub y_port: u16,
    pub y: [u8; 4],
    pub x_addr: [u8; 16],
    /// The pod's host-side veth when the packet came from a local pod, else 0.
    pub pod_if: u32,
    /// An ICMPv6 Echo Reply: it answers a request an IPv4 host sent through a static binding,
    /// so it needs that session and never opens one.
    pub echo_reply: bool,
}

/// Map keys and values under construction (part of the scratch area).
pub struct Keys {
    pub skey: SessionKey,
    pub sval: Session,
    pub bkey: BibKey,
    pub bval: Bib,
}

/// Finds or creates the session of `f` and applies the TCP state machine, writing the mapping
/// to `m`. Returns [`Reason::Pass`] on success, else [`Reason::Nat64SrcDenied`] (a source
/// outside the pod CIDRs), [`Reason::Nat64NoSession`] (TCP non-SYN without a session),
/// [`Reason::Nat64PoolExhausted`] or [`Reason::Nat64Error`].
#[inline(never)]
pub fn outbound(cfg: &Config, s: &mut Keys, f: &Flow, m: &mut Mapping) -> Reason {
    let t = now();
    m.now = t;
    out_key(&mut s.skey, f.proto, &f.x_addr, f.x_port, f.y, f.y_port);
    if let Some(e) = SESSIONS.get_ptr_mut(&s.skey) {
        // SAFETY: pointer into the map value; concurrent writers only race on these plain
        // fields, which is benign (a stale state or timestamp).
        let e = unsafe { &mut *e };
        m.t_addr = first4(&e.addr);
        m.t_port = e.port;
        m.learn = false;
        if f.proto == proto::TCP {
            let next = tcp::next(State::from_u8(e.state), Side::V6, f.tcp_flags) as u8;
            if next != e.state {
                e.state = next;
            }
        }
        if t.wrapping_sub(e.last_seen_ns) > REFRESH_NS {
            e.last_seen_ns = t;
            m.learn = true;
            // Re-assert the IPv4-side entry: it heals an LRU eviction of that half.
            in_key(&mut s.skey, f.proto, m.t_addr, m.t_port, f.y, f.y_port);
            value6(&mut s.sval, &f.x_addr, f.x_port, f.pod_if, t);
            let _ = SESSIONS.insert(&s.skey, &s.sval, u64::from(BPF_ANY));
        }
        return Reason::Pass;
    }

    if f.echo_reply {
        return Reason::Nat64NoSession;
    }
    // No session. Only pods may open one (RFC 6146 leaves the filtering policy to the
    // operator; sixlane translates the configured pod CIDRs and nothing else).
    if !source_allowed(&f.x_addr) {
        return Reason::Nat64SrcDenied;
    }
    // TCP opens only with a SYN from the IPv6 side (RFC 6146 §3.5.2.2).
    let state = if f.proto == proto::TCP {
        let st = tcp::next(State::Closed, Side::V6, f.tcp_flags);
        if st == State::Closed {
            return Reason::Nat64NoSession;
        }
        st as u8
    } else {
        0
    };
    let r = bind(cfg, s, f, m, t);
    if r != Reason::Pass {
        return r;
    }
    in_key(&mut s.skey, f.proto, m.t_addr, m.t_port, f.y, f.y_port);
    value6(&mut s.sval, &f.x_addr, f.x_port, f.pod_if, t);
    if SESSIONS
        .insert(&s.skey, &s.sval, u64::from(BPF_ANY))
        .is_err()
    {
        return Reason::Nat64Error;
    }
    out_key(&mut s.skey, f.proto, &f.x_addr, f.x_port, f.y, f.y_port);
    value4(&mut s.sval, m.t_addr, m.t_port, state, t);
    if SESSIONS
        .insert(&s.skey, &s.sval, u64::from(BPF_ANY))
        .is_err()
    {
        return Reason::Nat64Error;
    }
    m.learn = true;
    Reason::Pass
}

/// The port (or ICMP identifier) range of `proto` in the pool.
#[inline(always)]
pub fn range_of(cfg: &Config, proto: u8) -> PortRange {
    match proto {
        proto::TCP => cfg.ports[0],
        proto::UDP => cfg.ports[1],
        _ => cfg.ports[2],
    }
}

/// The binding of (X', x): existing (endpoint-independent mapping), static, or a new one
/// reserved in the pool.
#[inline(always)]
fn bind(cfg: &Config, s: &mut Keys, f: &Flow, m: &mut Mapping, t: u64) -> Reason {
    s.bkey.proto = f.proto;
    s.bkey.dir = DIR_OUT;
    s.bkey.port = f.x_port;
    s.bkey.addr.copy_from_slice(&f.x_addr);
    if let Some(b) = BIB.get_ptr(&s.bkey) {
        // SAFETY: pointer into the map value, read once.
        let b = unsafe { &*b };
        m.t_addr = first4(&b.addr);
        m.t_port = b.port;
        return Reason::Pass;
    }
    // A pod's transport address with a static binding leaves through it, whoever it talks to
    // (endpoint-independent, like a dynamic binding).
    if cfg.statics != 0
        && let Some(b) = STATIC.get_ptr(&s.bkey)
    {
        // SAFETY: pointer into the map value, read once.
        let b = unsafe { &*b };
        m.t_addr = first4(&b.addr);
        m.t_port = b.port;
        return Reason::Pass;
    }
    let range = range_of(cfg, f.proto);
    let n = u32::from(cfg.n_addrs).min(MAX_POOL_ADDRS as u32);
    let probes = pool::probes(n, &range);
    let start = pool::start(&cfg.hash_key, n, &range, &f.x_addr, f.x_port, f.proto);
    // The IPv4-side entry points back at the pod.
    s.bval.addr.copy_from_slice(&f.x_addr);
    s.bval.port = f.x_port;
    s.bval._pad0 = 0;
    s.bval._pad1 = 0;
    s.bval.created_ns = t;
    s.bkey.dir = DIR_IN;
    for i in 0..pool::MAX_PROBES {
        if i >= probes {
            break;
        }
        let Some((ai, port)) = pool::candidate(start, i, n, &range) else {
            break;
        };
        let Some(addr) = cfg.addrs.get(ai as usize) else {
            break;
        };
        s.bkey.port = port;
        set_v4(&mut s.bkey.addr, *addr);
        // A port visibly taken is skipped with a lookup: a failed insert into an LRU map costs
        // a free-list round trip and, on a full map, an eviction.
        if BIB.get_ptr(&s.bkey).is_some() {
            continue;
        }
        // NOEXIST makes the reservation atomic between CPUs.
        if BIB.insert(&s.bkey, &s.bval, u64::from(BPF_NOEXIST)).is_ok() {
            m.t_addr = *addr;
            m.t_port = port;
            s.bkey.dir = DIR_OUT;
            s.bkey.port = f.x_port;
            s.bkey.addr.copy_from_slice(&f.x_addr);
            set_v4(&mut s.bval.addr, *addr);
            s.bval.port = port;
            if BIB.insert(&s.bkey, &s.bval, u64::from(BPF_ANY)).is_err() {
                return Reason::Nat64Error;
            }
            return Reason::Pass;
        }
    }
    Reason::Nat64PoolExhausted
}

/// The pod transport address (X', x) an IPv4-side packet goes to.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Reverse {
    pub x_addr: [u8; 16],
    pub x_port: u16,
    /// The pod's host-side veth, 0 = unknown (see `Session::ifindex`).
    pub pod_if: u32,
}

impl Reverse {
    /// Writes every field into `slot` (the caller's stack; no zeroing first, which the BPF
    /// backend would turn into a `memset` call) and returns it initialised.
    #[inline(always)]
    fn write_in<'a>(
        slot: &'a mut core::mem::MaybeUninit<Self>,
        x_addr: &[u8; 16],
        x_port: u16,
        pod_if: u32,
    ) -> &'a Self {
        let r = slot.as_mut_ptr();
        // SAFETY: `r` is valid for writes of a Reverse; each field is written once, through
        // raw places (nothing is read or dropped), so the value is initialised afterwards.
        unsafe {
            // Not `write(*x_addr)`: that became a `memmove` call (see `crate::mem`).
            core::ptr::copy_nonoverlapping(x_addr, core::ptr::addr_of_mut!((*r).x_addr), 1);
            core::ptr::addr_of_mut!((*r).x_port).write(x_port);
            core::ptr::addr_of_mut!((*r).pod_if).write(pod_if);
            &*r
        }
    }
}

/// An IPv4-side packet's flow: (Z, z) → (T, t).
pub struct InFlow {
    pub proto: u8,
    pub tcp_flags: u8,
    /// Endpoint-independent filtering: a new peer may reach an existing binding (UDP).
    pub eif: bool,
    /// t is outside the dynamic range and static bindings exist: (T, t) is NAT64's only if it
    /// has a static binding.
    pub static_only: bool,
    /// The packet may open a session through a static binding (UDP, a TCP SYN, an echo
    /// request; not an echo reply).
    pub opens: bool,
    /// Set by [`inbound`]: this packet opened its session through a static binding.
    pub opened: bool,
    pub t_port: u16,
    pub z_port: u16,
    pub t_addr: [u8; 4],
    pub z: [u8; 4],
}

/// What [`inbound`] found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A session (found, or opened): the slot holds the pod's transport address.
    Session,
    /// NAT64's (T, t) without a session it may use or open.
    Unsolicited,
    /// Not NAT64's: a port outside the dynamic range without a static binding.
    NotOurs,
}

/// Finds the session of `f`, refreshing it (and opening one under endpoint-independent
/// filtering or through a static binding), writing the pod's transport address to `slot`
/// (untouched unless [`Inbound::Session`]).
#[inline(never)]
pub fn inbound(
    s: &mut Keys,
    f: &mut InFlow,
    slot: &mut core::mem::MaybeUninit<Reverse>,
) -> Inbound {
    let t = now();
    if f.static_only {
        s.bkey.proto = f.proto;
        s.bkey.dir = DIR_IN;
        s.bkey.port = f.t_port;
        set_v4(&mut s.bkey.addr, f.t_addr);
        if STATIC.get_ptr(&s.bkey).is_none() {
            return Inbound::NotOurs;
        }
    }
    in_key(&mut s.skey, f.proto, f.t_addr, f.t_port, f.z, f.z_port);
    if let Some(e) = SESSIONS.get_ptr_mut(&s.skey) {
        // SAFETY: see `outbound`.
        let e = unsafe { &mut *e };
        let r = Reverse::write_in(slot, &e.addr, e.port, e.ifindex);
        if t.wrapping_sub(e.last_seen_ns) > REFRESH_NS {
            e.last_seen_ns = t;
        }
        if f.proto == proto::TCP
            && f.tcp_flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0
        {
            // The state lives in the IPv6-side entry.
            out_key(&mut s.skey, f.proto, &r.x_addr, r.x_port, f.z, f.z_port);
            if let Some(o) = SESSIONS.get_ptr_mut(&s.skey) {
                // SAFETY: as above.
                let o = unsafe { &mut *o };
                o.state = tcp::next(State::from_u8(o.state), Side::V4, f.tcp_flags) as u8;
            }
        }
        return Inbound::Session;
    }
    if f.static_only {
        return open_static(s, f, slot, t);
    }
    if !f.eif || f.proto != proto::UDP {
        return Inbound::Unsolicited;
    }
    s.bkey.proto = f.proto;
    s.bkey.dir = DIR_IN;
    s.bkey.port = f.t_port;
    set_v4(&mut s.bkey.addr, f.t_addr);
    let Some(b) = BIB.get_ptr(&s.bkey) else {
        return Inbound::Unsolicited;
    };
    // SAFETY: pointer into the map value, read once.
    let b = unsafe { &*b };
    // Opened from the IPv4 side: no pod veth known.
    let r = Reverse::write_in(slot, &b.addr, b.port, 0);
    value6(&mut s.sval, &b.addr, b.port, 0, t);
    let _ = SESSIONS.insert(&s.skey, &s.sval, u64::from(BPF_ANY));
    out_key(&mut s.skey, f.proto, &r.x_addr, r.x_port, f.z, f.z_port);
    value4(&mut s.sval, f.t_addr, f.t_port, 0, t);
    let _ = SESSIONS.insert(&s.skey, &s.sval, u64::from(BPF_ANY));
    Inbound::Session
}

/// Opens the session of `f` through its static binding (`s.bkey`, found by [`inbound`]): any
/// IPv4 host may, with a packet that opens (TCP: a SYN, RFC 6146 §3.5.2.2's V4 INIT).
#[inline(always)]
fn open_static(
    s: &mut Keys,
    f: &mut InFlow,
    slot: &mut core::mem::MaybeUninit<Reverse>,
    t: u64,
) -> Inbound {
    let state = if f.proto == proto::TCP {
        let st = tcp::next(State::Closed, Side::V4, f.tcp_flags);
        if st == State::Closed {
            return Inbound::Unsolicited;
        }
        st as u8
    } else {
        0
    };
    if !f.opens {
        return Inbound::Unsolicited;
    }
    let Some(b) = STATIC.get_ptr(&s.bkey) else {
        return Inbound::NotOurs;
    };
    // SAFETY: pointer into the map value, read once.
    let b = unsafe { &*b };
    // The pod's veth is learned when the pod answers (`outbound` re-asserts this entry).
    let r = Reverse::write_in(slot, &b.addr, b.port, 0);
    value6(&mut s.sval, &b.addr, b.port, 0, t);
    if SESSIONS
        .insert(&s.skey, &s.sval, u64::from(BPF_ANY))
        .is_err()
    {
        return Inbound::Unsolicited;
    }
    out_key(&mut s.skey, f.proto, &r.x_addr, r.x_port, f.z, f.z_port);
    value4(&mut s.sval, f.t_addr, f.t_port, state, t);
    let _ = SESSIONS.insert(&s.skey, &s.sval, u64::from(BPF_ANY));
    f.opened = true;
    Inbound::Session
}

/// The mapping of an IPv6-side session, without refreshing it (ICMP errors name a session
/// without being part of it).
#[inline(always)]
pub fn peek_out(
    key: &mut SessionKey,
    proto: u8,
    x_addr: &[u8; 16],
    x_port: u16,
    y: [u8; 4],
    y_port: u16,
) -> Option<Mapping> {
    out_key(key, proto, x_addr, x_port, y, y_port);
    let e = SESSIONS.get_ptr(&*key)?;
    // SAFETY: pointer into the map value, read once.
    let e = unsafe { &*e };
    Some(Mapping {
        t_addr: first4(&e.addr),
        t_port: e.port,
        learn: false,
        now: 0,
    })
}

/// The pod of an IPv4-side session, without refreshing it: written to `x_addr`, its port
/// returned.
#[inline(always)]
pub fn peek_in(
    key: &mut SessionKey,
    proto: u8,
    t_addr: [u8; 4],
    t_port: u16,
    z: [u8; 4],
    z_port: u16,
    x_addr: &mut [u8; 16],
) -> Option<u16> {
    in_key(key, proto, t_addr, t_port, z, z_port);
    let e = SESSIONS.get_ptr(&*key)?;
    // SAFETY: as above.
    let e = unsafe { &*e };
    x_addr.copy_from_slice(&e.addr);
    Some(e.port)
}
