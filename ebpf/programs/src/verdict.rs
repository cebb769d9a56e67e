//! What the datapath decides about a packet, and the one error convention of its steps.
//!
//! A step that can fail returns [`Res`], whose error is the [`Reason`] the packet is counted
//! under. A stage that takes a packet returns a [`Verdict`]: that reason with the tc action;
//! the pipeline counts it (`metrics::finish`) and returns the action.

use sixlane_common::metrics::Reason;

/// The result of a step: the value, or why the packet is dropped.
pub type Res<T> = Result<T, Reason>;

/// tc actions as the programs return them (the bindings' type differs between the BPF and host
/// builds).
pub const TC_ACT_UNSPEC: i32 = -1;
pub const TC_ACT_SHOT: i32 = 2;
pub const TC_ACT_REDIRECT: i32 = 7;

/// Why a shared step (packet access, checksums, forwarding) failed, as the NAT64 stage counts
/// it: the reasons were NAT64's before the steps were shared, and their numbers are fixed by
/// the pinned counters. The service stage counts any failure as `SvcRewriteFailed`.
pub mod fail {
    use sixlane_common::metrics::Reason;

    /// A load ran past the end of the packet.
    pub const MALFORMED: Reason = Reason::Nat64Malformed;
    /// A kernel helper refused: a store, checksum update, resize or redirect.
    pub const HELPER: Reason = Reason::Nat64Error;
    /// No usable route for the packet.
    pub const NO_ROUTE: Reason = Reason::Nat64NoRoute;
}

/// The high word of [`Verdict::tail_call`]s: no reason has this number.
const TAIL_CALL: u64 = 0xffff_fffe << 32;

/// A stage's decision about a packet it took: the reason it is counted under and the tc
/// action. Packed in one scalar because it crosses BPF-to-BPF calls, which return a single
/// register.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Verdict(u64);

impl Verdict {
    /// Sentinel for "not this stage's packet after all": it goes on through the pipeline.
    pub const NOT_OURS: Verdict = Verdict(u64::MAX);

    /// The packet goes on to the stage program in slot `slot` of the stage array (a tail call
    /// the pipeline makes from the entry program's own frame; what the stage needs is in its
    /// scratch area). Not counted here: the stage counts it.
    #[inline(always)]
    pub const fn tail_call(slot: u32) -> Self {
        Self(TAIL_CALL | slot as u64)
    }

    /// The slot of a [`Verdict::tail_call`].
    #[inline(always)]
    pub fn tail_slot(self) -> Option<u32> {
        (self.0 >> 32 == TAIL_CALL >> 32).then_some(self.0 as u32)
    }

    #[inline(always)]
    pub const fn new(reason: Reason, action: i32) -> Self {
        Self(((reason as u32 as u64) << 32) | action as u32 as u64)
    }

    /// Dropped, counted under `reason`.
    #[inline(always)]
    pub const fn drop(reason: Reason) -> Self {
        Self::new(reason, TC_ACT_SHOT)
    }

    /// Handed on to the next program or the stack, counted under `reason`.
    #[inline(always)]
    pub const fn pass(reason: Reason) -> Self {
        Self::new(reason, TC_ACT_UNSPEC)
    }

    #[inline(always)]
    pub fn is_ours(self) -> bool {
        self.0 != u64::MAX
    }

    /// The reason's number (`Reason as u32`): counted as is, since converting it back to a
    /// `Reason` is a function call per packet in eBPF.
    #[inline(always)]
    pub fn reason_code(self) -> u32 {
        (self.0 >> 32) as u32
    }

    #[inline(always)]
    pub fn action(self) -> i32 {
        self.0 as u32 as i32
    }
}
