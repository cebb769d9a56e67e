//! The service stage's scratch area (`crate::scratch`): the keys, entries and route of the
//! packet being handled, off the BPF stack.

use aya_ebpf::{bindings::bpf_fib_lookup, macros::map};
use sixlane_common::services::{CtEntry, CtKey, FragKey, Service};

use crate::{checksum::Chunk, scratch::Scratch};

#[repr(C)]
pub struct Area {
    /// The packet's tuple (or, for ICMPv6 errors, the reversed quoted tuple).
    pub key: CtKey,
    /// What the packet is rewritten to.
    pub to: CtKey,
    /// A second key: a sibling entry's, a reply entry's, a SNAT probe.
    pub other: CtKey,
    pub fwd: CtEntry,
    pub rev: CtEntry,
    pub svc: Service,
    pub frag: FragKey,
    /// The route of a packet routed afresh (`rewrite::reroute`) or delivered straight into a
    /// local pod (`rewrite::peer_route`).
    pub fib: bpf_fib_lookup,
    /// Checksum chunks of a generated ICMPv6 error (`icmp::reject`).
    pub chunk: Chunk,
}
const _: () = assert!(core::mem::size_of::<Area>() == 3 * 40 + 2 * 72 + 24 + 40 + 64 + 64);

#[map(name = "SL_SVC_SCRATCH")]
static AREA: Scratch<Area> = Scratch::new();

/// This CPU's area.
#[inline(always)]
pub fn get() -> Option<&'static mut Area> {
    AREA.get()
}
