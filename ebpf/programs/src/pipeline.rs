//! Per-hook pipelines: which concern sees a packet, in which order. Each stage returns a verdict
//! or lets the packet continue; whatever no stage claims passes untouched (and is counted).

use aya_ebpf::programs::TcContext;
use sixlane_common::metrics::Direction;

use crate::{metrics, nat64, parse};

/// Packets a pod sends.
#[inline(always)]
pub fn from_pod(ctx: &TcContext) -> i32 {
    if let Ok(parse::Frame::Ip(l3)) = parse::frame(ctx)
        && let Some(v) = nat64::from_pod(ctx, &l3)
    {
        return v;
    }
    metrics::observe(ctx, Direction::Ingress)
}

/// Packets on their way into a pod.
#[inline(always)]
pub fn to_pod(ctx: &TcContext) -> i32 {
    metrics::observe(ctx, Direction::Egress)
}

/// Packets arriving on the node's uplink.
#[inline(always)]
pub fn from_uplink(ctx: &TcContext) -> i32 {
    if let Ok(parse::Frame::Ip(l3)) = parse::frame(ctx)
        && let Some(v) = nat64::from_uplink(ctx, &l3)
    {
        return v;
    }
    metrics::observe(ctx, Direction::Ingress)
}

/// Packets leaving through the node's uplink.
#[inline(always)]
pub fn to_uplink(ctx: &TcContext) -> i32 {
    metrics::observe(ctx, Direction::Egress)
}
