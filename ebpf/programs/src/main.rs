//! sixlane's eBPF object. Entry points only: each one picks its direction/hook and hands the packet
//! to the module that owns the concern.
#![no_std]
#![no_main]

mod checksum;
mod config;
mod forward;
mod icmp6;
mod mem;
mod metrics;
mod nat64;
mod ndp;
mod packet;
mod parse;
mod pipeline;
mod scratch;
mod services;
mod source;
mod verdict;

use aya_ebpf::{macros::classifier, programs::TcContext};
use sixlane_common::metrics::Direction;

/// tc ingress on the host side of a pod's veth (`layout::PROG_FROM_POD`).
#[classifier]
pub fn sl_from_pod(ctx: TcContext) -> i32 {
    pipeline::from_pod(&ctx)
}

/// tc egress on the host side of a pod's veth (`layout::PROG_TO_POD`).
#[classifier]
pub fn sl_to_pod(ctx: TcContext) -> i32 {
    pipeline::to_pod(&ctx)
}

/// tc ingress on the node's uplink (`layout::PROG_FROM_UPLINK`).
#[classifier]
pub fn sl_from_uplink(ctx: TcContext) -> i32 {
    pipeline::from_uplink(&ctx)
}

/// NAT64's half of `sl_from_pod`, tail-called through `SL_STAGES`
/// (`layout::PROG_NAT64_FROM_POD`).
#[classifier]
pub fn sl_nat64_from_pod(ctx: TcContext) -> i32 {
    pipeline::nat64_from_pod(&ctx)
}

/// NAT64's half of `sl_from_uplink`, tail-called through `SL_STAGES`
/// (`layout::PROG_NAT64_FROM_UPLINK`).
#[classifier]
pub fn sl_nat64_from_uplink(ctx: TcContext) -> i32 {
    pipeline::nat64_from_uplink(&ctx)
}

/// NAT64 hairpinning, tail-called through `SL_STAGES` by the two NAT64 programs
/// (`layout::PROG_NAT64_HAIRPIN`).
#[classifier]
pub fn sl_nat64_hairpin(ctx: TcContext) -> i32 {
    pipeline::nat64_hairpin(&ctx)
}

/// tc egress on the node's uplink (`layout::PROG_TO_UPLINK`).
#[classifier]
pub fn sl_to_uplink(ctx: TcContext) -> i32 {
    pipeline::to_uplink(&ctx)
}

/// Counts every packet on the ingress side of the interface it is attached to, then lets the next
/// TCX program (or the stack) have it.
#[classifier]
pub fn sl_count_ingress(ctx: TcContext) -> i32 {
    metrics::observe(&ctx, Direction::Ingress)
}

/// Egress twin of [`sl_count_ingress`].
#[classifier]
pub fn sl_count_egress(ctx: TcContext) -> i32 {
    metrics::observe(&ctx, Direction::Egress)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

// GPL-compatible: the datapath needs GPL-only helpers (fib lookup, redirect_neigh, ...).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
