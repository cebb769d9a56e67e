//! Per-hook pipelines: which concern sees a packet, in which order. The frame is parsed once;
//! each stage returns a verdict (having counted why) or lets the packet continue; whatever no
//! stage claims passes untouched and is counted.

use aya_ebpf::programs::TcContext;
use sixlane_common::metrics::Direction;

use crate::{
    lb, metrics,
    parse::{self, L3},
};

/// The parsed IP packet, or the verdict for a frame no stage looks at (not IP, unparsable).
#[inline(always)]
fn ip(ctx: &TcContext, dir: Direction) -> Result<L3, i32> {
    match parse::frame(ctx) {
        Ok(parse::Frame::Ip(l3)) => Ok(l3),
        Ok(parse::Frame::Other) => Err(metrics::observe_other(ctx, dir)),
        Err(e) => Err(metrics::observe_error(ctx, dir, e)),
    }
}

/// Packets a pod sends.
#[inline(always)]
pub fn from_pod(ctx: &TcContext) -> i32 {
    let l3 = match ip(ctx, Direction::Ingress) {
        Ok(l3) => l3,
        Err(v) => return v,
    };
    if let Some(v) = lb::from_pod(ctx, &l3) {
        return v;
    }
    metrics::observe_ip(ctx, Direction::Ingress, &l3)
}

/// Packets on their way into a pod.
#[inline(always)]
pub fn to_pod(ctx: &TcContext) -> i32 {
    let l3 = match ip(ctx, Direction::Egress) {
        Ok(l3) => l3,
        Err(v) => return v,
    };
    if let Some(v) = lb::to_pod(ctx, &l3) {
        return v;
    }
    metrics::observe_ip(ctx, Direction::Egress, &l3)
}

/// Packets arriving on the node's uplink.
#[inline(always)]
pub fn from_uplink(ctx: &TcContext) -> i32 {
    let l3 = match ip(ctx, Direction::Ingress) {
        Ok(l3) => l3,
        Err(v) => return v,
    };
    if let Some(v) = lb::from_uplink(ctx, &l3) {
        return v;
    }
    metrics::observe_ip(ctx, Direction::Ingress, &l3)
}

/// Packets leaving through the node's uplink.
#[inline(always)]
pub fn to_uplink(ctx: &TcContext) -> i32 {
    let l3 = match ip(ctx, Direction::Egress) {
        Ok(l3) => l3,
        Err(v) => return v,
    };
    if let Some(v) = lb::to_uplink(ctx, &l3) {
        return v;
    }
    metrics::observe_ip(ctx, Direction::Egress, &l3)
}
