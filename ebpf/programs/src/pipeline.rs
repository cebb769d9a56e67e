//! Per-hook pipelines: which concern sees a packet, in which order. The frame is parsed once;
//! each stage returns a verdict (why, and the tc action) or lets the packet continue; the verdict,
//! or the pass of a packet no stage claims, is counted here.
//!
//! NAT64's packets (to the NAT64 prefix from pods; IPv4 on the uplink) are never service
//! traffic, so the entry point classifies them first and tail-calls the NAT64 program
//! (`layout::STAGES`): each program is then verified on its own, where NAT64 and the service
//! stage in one program exceed the verifier's complexity budget.

use aya_ebpf::{macros::map, maps::ProgramArray, programs::TcContext};
use sixlane_common::{
    layout::{STAGE_NAT64_FROM_POD, STAGE_NAT64_FROM_UPLINK, STAGE_SLOTS},
    metrics::{Direction, Reason},
};

use crate::{
    metrics, nat64, ndp,
    parse::{self, L3},
    services, source,
    verdict::{TC_ACT_UNSPEC, Verdict},
};

// Pinned so a restarted agent's new programs replace the entries in place.
#[map(name = "SL_STAGES")]
static SL_STAGES: ProgramArray = ProgramArray::pinned(STAGE_SLOTS, 0);

/// Tail-calls stage `slot`; returns only if the stage is missing, and then passes the packet.
#[inline(always)]
fn stage(ctx: &TcContext, slot: u32, dir: Direction) -> i32 {
    // SAFETY: `ctx` is this program's context; on success the call does not return.
    unsafe { SL_STAGES.tail_call(ctx, slot) };
    metrics::count(dir, Reason::StageMissing, ctx.len());
    TC_ACT_UNSPEC
}

/// The parsed IP packet, or the verdict for a frame no stage looks at (not IP, unparsable).
#[inline(always)]
fn ip(ctx: &TcContext, dir: Direction) -> Result<L3, i32> {
    match parse::frame(ctx) {
        Ok(parse::Frame::Ip(l3)) => Ok(l3),
        Ok(parse::Frame::Other) => Err(metrics::observe_other(ctx, dir)),
        Err(e) => Err(metrics::observe_error(ctx, dir, e)),
    }
}

/// Counts the service stage's verdict on the packet as it leaves (a rejected packet was rebuilt
/// into the error), or the packet no stage claimed as passed; the action to return.
#[inline(always)]
fn settle(ctx: &TcContext, dir: Direction, l3: &L3, v: Option<Verdict>) -> i32 {
    match v {
        Some(v) => metrics::finish(dir, v, ctx.len()),
        None => metrics::observe_ip(ctx, dir, l3),
    }
}

/// Counts the NAT64 stage's verdict on the frame as it arrived (`len` bytes: translation changes
/// the size), or the packet it left alone as passed; the action to return.
#[inline(always)]
fn settle_nat64(ctx: &TcContext, l3: &L3, len: u32, v: Option<Verdict>) -> i32 {
    match v {
        Some(v) => match v.tail_slot() {
            // The packet is unchanged: the next stage counts it at its length.
            Some(slot) => stage(ctx, slot, Direction::Ingress),
            None => metrics::finish(Direction::Ingress, v, len),
        },
        None => metrics::observe_ip(ctx, Direction::Ingress, l3),
    }
}

/// Packets a pod sends: their source is validated first, so no later stage sees a spoofed one.
#[inline(always)]
pub fn from_pod(ctx: &TcContext) -> i32 {
    if !source::allowed(ctx) {
        let v = Verdict::drop(Reason::SrcSpoofed);
        return metrics::finish(Direction::Ingress, v, ctx.len());
    }
    let l3 = match ip(ctx, Direction::Ingress) {
        Ok(l3) => l3,
        Err(v) => return v,
    };
    if nat64::claims_from_pod(ctx, &l3) {
        return stage(ctx, STAGE_NAT64_FROM_POD, Direction::Ingress);
    }
    let v = services::from_pod(ctx, &l3);
    settle(ctx, Direction::Ingress, &l3, v)
}

/// Packets on their way into a pod.
#[inline(always)]
pub fn to_pod(ctx: &TcContext) -> i32 {
    let l3 = match ip(ctx, Direction::Egress) {
        Ok(l3) => l3,
        Err(v) => return v,
    };
    let v = services::to_pod(ctx, &l3);
    settle(ctx, Direction::Egress, &l3, v)
}

/// Packets arriving on the node's uplink. Neighbor Solicitations are the NDP stage's (answered
/// or passed, counted as they arrived); the rest goes on.
#[inline(always)]
pub fn from_uplink(ctx: &TcContext) -> i32 {
    let l3 = match ip(ctx, Direction::Ingress) {
        Ok(l3) => l3,
        Err(v) => return v,
    };
    let len = ctx.len();
    if let Some(v) = ndp::from_uplink(ctx, &l3) {
        return metrics::finish(Direction::Ingress, v, len);
    }
    if nat64::claims_from_uplink(ctx, &l3) {
        return stage(ctx, STAGE_NAT64_FROM_UPLINK, Direction::Ingress);
    }
    let v = services::from_uplink(ctx, &l3);
    settle(ctx, Direction::Ingress, &l3, v)
}

/// Packets leaving through the node's uplink.
#[inline(always)]
pub fn to_uplink(ctx: &TcContext) -> i32 {
    let l3 = match ip(ctx, Direction::Egress) {
        Ok(l3) => l3,
        Err(v) => return v,
    };
    let v = services::to_uplink(ctx, &l3);
    settle(ctx, Direction::Egress, &l3, v)
}

/// NAT64's half of `from_pod` (tail-called).
#[inline(always)]
pub fn nat64_from_pod(ctx: &TcContext) -> i32 {
    let l3 = match ip(ctx, Direction::Ingress) {
        Ok(l3) => l3,
        Err(v) => return v,
    };
    let len = ctx.len();
    let v = nat64::from_pod(ctx, &l3);
    settle_nat64(ctx, &l3, len, v)
}

/// NAT64's half of `from_uplink` (tail-called). IPv4 that is not NAT64's passes: the service
/// stage has nothing for IPv4 either.
#[inline(always)]
pub fn nat64_from_uplink(ctx: &TcContext) -> i32 {
    let l3 = match ip(ctx, Direction::Ingress) {
        Ok(l3) => l3,
        Err(v) => return v,
    };
    let len = ctx.len();
    let v = nat64::from_uplink(ctx, &l3);
    settle_nat64(ctx, &l3, len, v)
}

/// NAT64 hairpinning (tail-called by the two NAT64 programs, the packet as it arrived).
#[inline(always)]
pub fn nat64_hairpin(ctx: &TcContext) -> i32 {
    let len = ctx.len();
    let v = nat64::hairpin(ctx);
    metrics::finish(Direction::Ingress, v, len)
}
