//! Per-CPU counters by (direction, reason); see `sixlane_common::metrics`.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::TcContext};
use sixlane_common::metrics::{
    Counter, Direction, METRICS_ENTRIES, REASON_SLOTS, Reason, slot_code,
};

use crate::{
    parse,
    verdict::{Res, TC_ACT_UNSPEC, Verdict},
};

// Pinned by name so counters survive an agent restart; userspace reads it as
// `sixlane_common::layout::MAP_METRICS`.
#[map(name = "SL_METRICS")]
static SL_METRICS: PerCpuArray<Counter> = PerCpuArray::pinned(METRICS_ENTRIES, 0);

/// Adds one packet of `len` bytes to the (direction, reason) counter of this CPU.
#[inline(always)]
pub fn count(dir: Direction, reason: Reason, len: u32) {
    count_code(dir, reason as u32, len);
}

/// [`count`] for a reason's number (`Reason as u32`); out-of-range numbers are not counted.
#[inline(always)]
pub fn count_code(dir: Direction, code: u32, len: u32) {
    if code >= REASON_SLOTS {
        return;
    }
    if let Some(c) = SL_METRICS.get_ptr_mut(slot_code(dir, code)) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array; nothing else writes it
        // concurrently (tc programs do not preempt each other on one CPU).
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(len);
        }
    }
}

/// Counts a stage's verdict on a packet of `len` bytes; the action to return.
#[inline(always)]
pub fn finish(dir: Direction, v: Verdict, len: u32) -> i32 {
    count_code(dir, v.reason_code(), len);
    v.action()
}

/// Counts a frame that is not IP (never ours) as passed; hands it on.
#[inline(always)]
pub fn observe_other(ctx: &TcContext, dir: Direction) -> i32 {
    count(dir, Reason::Pass, ctx.len());
    TC_ACT_UNSPEC
}

/// The reason for a parse result; malformed packets are also logged (rare by nature, so cheap
/// to log; the agent forwards the record at debug level, and a test uses it to prove aya-log
/// forwarding works).
#[inline(always)]
fn reason_of(ctx: &TcContext, parsed: Res<()>) -> Reason {
    match parsed {
        Ok(()) => Reason::Pass,
        Err(Reason::Malformed) => {
            aya_log_ebpf::debug!(ctx, "malformed packet, {} bytes", ctx.len());
            Reason::Malformed
        }
        Err(r) => r,
    }
}

/// Counts a frame the parser rejected; hands it on (the kernel applies its own checks).
#[inline(always)]
pub fn observe_error(ctx: &TcContext, dir: Direction, e: Reason) -> i32 {
    count(dir, reason_of(ctx, Err(e)), ctx.len());
    TC_ACT_UNSPEC
}

/// Counts an IP packet no stage claimed: passed, or malformed if its upper-layer header is cut
/// short; hands it on unchanged.
#[inline(always)]
pub fn observe_ip(ctx: &TcContext, dir: Direction, l3: &parse::L3) -> i32 {
    count(dir, reason_of(ctx, parse::check_l4(ctx, l3)), ctx.len());
    TC_ACT_UNSPEC
}

/// The counting program: parses the packet down to its upper-layer header, counts it as passed,
/// malformed or unsupported, and hands it on unchanged (`TC_ACT_UNSPEC` = TCX "next").
#[inline(always)]
pub fn observe(ctx: &TcContext, dir: Direction) -> i32 {
    let parsed = parse::frame(ctx).and_then(|f| match f {
        parse::Frame::Ip(l3) => parse::check_l4(ctx, &l3),
        parse::Frame::Other => Ok(()),
    });
    count(dir, reason_of(ctx, parsed), ctx.len());
    TC_ACT_UNSPEC
}
