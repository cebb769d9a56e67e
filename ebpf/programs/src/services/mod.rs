//! Service load balancing: the service stage of every hook.
//!
//! | hook          | does                                                                    |
//! |---------------|-------------------------------------------------------------------------|
//! | `from_pod`    | new/known flows from a pod to a frontend → backend (DNAT; hairpin SNAT  |
//! |               | and redirect back); hairpin replies; echo to a frontend; no-endpoint    |
//! |               | rejects                                                                 |
//! | `to_pod`      | replies to a pod client → back to the frontend                          |
//! | `from_uplink` | external flows to NodePorts/external/LB IPs → backend (SNAT for remote  |
//! |               | backends with `externalTrafficPolicy: Cluster`); replies to SNATed flows |
//! | `to_uplink`   | replies of local backends to external clients → back to the frontend;   |
//! |               | flows of node processes to a frontend → backend, routed afresh          |
//!
//! Rewrites that decide where a packet goes (DNAT) happen on ingress, before routing; reverse
//! translations of replies happen on egress, after routing, so the kernel's own ICMPv6 errors
//! (Packet Too Big from forwarding) always quote the backend's view of the flow and can be
//! translated like any other error. IPv4 and anything not addressed to a frontend or tracked
//! passes untouched (`None`).
//!
//! - [`frontend`]: the hooks and the frontend table;
//! - [`lb`]: tracked flows, new flows (backend selection, both conntrack entries), fragments;
//! - [`conntrack`]: the connection table, lifetimes, TCP state, SNAT ports;
//! - [`rewrite`]: the tuple rewrite and the ways a translated packet is sent on;
//! - [`icmp`]: echo replies for frontends, translated ICMPv6 errors, no-endpoint rejects;
//! - [`area`]: the per-CPU scratch area.

mod area;
mod conntrack;
mod frontend;
mod icmp;
mod lb;
mod rewrite;

use aya_ebpf::programs::TcContext;
use sixlane_common::net::proto;

use self::frontend::Hook;
use crate::{
    parse::{Frag, L3},
    verdict::Verdict,
};

/// Service stage of `sl_from_pod`.
#[inline(always)]
pub fn from_pod(ctx: &TcContext, l3: &L3) -> Option<Verdict> {
    stage(ctx, l3, Hook::FromPod)
}

/// Service stage of `sl_to_pod`.
#[inline(always)]
pub fn to_pod(ctx: &TcContext, l3: &L3) -> Option<Verdict> {
    stage(ctx, l3, Hook::ToPod)
}

/// Service stage of `sl_from_uplink`.
#[inline(always)]
pub fn from_uplink(ctx: &TcContext, l3: &L3) -> Option<Verdict> {
    stage(ctx, l3, Hook::FromUplink)
}

/// Service stage of `sl_to_uplink`.
#[inline(always)]
pub fn to_uplink(ctx: &TcContext, l3: &L3) -> Option<Verdict> {
    stage(ctx, l3, Hook::ToUplink)
}

#[inline(always)]
fn stage(ctx: &TcContext, l3: &L3, hook: Hook) -> Option<Verdict> {
    if !l3.v6 {
        return None;
    }
    match l3.proto {
        proto::TCP | proto::UDP | proto::SCTP => {
            if l3.frag == Frag::Later {
                lb::later_fragment(ctx, l3, hook)
            } else {
                lb::flow(ctx, l3, hook)
            }
        }
        proto::ICMPV6 if l3.frag == Frag::No => icmp::stage(ctx, l3, hook),
        _ => None,
    }
}
