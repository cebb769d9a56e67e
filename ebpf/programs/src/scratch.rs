//! Per-CPU scratch areas: how a stage keeps its larger temporaries (headers, map keys and
//! values, FIB parameters, checksum chunks) off the 512-byte BPF stack, which holds a whole call
//! chain. Each stage declares one area, a struct of its own, as a map of this type
//! (`services::area`, `nat64::area`), not pinned: nothing in it outlives the programs.
//!
//! A tc program runs to completion on its CPU with bottom halves off, so one entry per CPU is
//! never shared by two packets: the running program has it to itself.

use aya_ebpf::maps::PerCpuArray;

/// A per-CPU scratch area of type `T`: a one-entry per-CPU array (declared with `#[map]`).
#[repr(transparent)]
pub struct Scratch<T>(PerCpuArray<T>);

impl<T> Scratch<T> {
    pub const fn new() -> Self {
        Self(PerCpuArray::with_max_entries(1, 0))
    }

    /// This CPU's area.
    #[inline(always)]
    pub fn get(&self) -> Option<&'static mut T> {
        let p = self.0.get_ptr_mut(0)?;
        // SAFETY: this CPU's entry, used by one program run at a time (see the module docs).
        Some(unsafe { crate::mem::scratch_mut(p) })
    }
}
