//! Per-CPU scratch space for the service datapath's larger temporaries (keys and entries), so
//! the 512-byte BPF stack holds only small values across the whole call chain. A tc program
//! runs to completion on its CPU with bottom halves off, so one slot per CPU is exclusive to
//! the running program.

use aya_ebpf::{bindings::bpf_fib_lookup, macros::map, maps::PerCpuArray};
use sixlane_common::services::{CtEntry, CtKey, FragKey, Service};

use crate::checksum::Chunk;

#[repr(C)]
pub struct Scratch {
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
    /// The route of a packet delivered straight into a local pod (`nat::peer_route`).
    pub fib: bpf_fib_lookup,
    /// Checksum chunks of a generated ICMPv6 error (`icmp::reject`).
    pub chunk: Chunk,
}
const _: () = assert!(core::mem::size_of::<Scratch>() == 3 * 40 + 2 * 72 + 24 + 40 + 64 + 64);

// Not pinned: nothing in it outlives a program run.
#[map(name = "SL_SCRATCH")]
static SL_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch space.
#[inline(always)]
pub fn get() -> Option<&'static mut Scratch> {
    let p = SL_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, used by one program run at a time (see the module docs).
    Some(unsafe { crate::mem::scratch_mut(p) })
}
