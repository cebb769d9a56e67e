//! Neighbor Discovery responder of the uplink (RFC 4861): a Neighbor Solicitation arriving on
//! the uplink for an address this node owns (`SL_NDP_OWNED`, kept by the agent: its local pods,
//! and the LoadBalancer IPs it announces in L2 mode) is answered here with a Neighbor
//! Advertisement out of the same uplink, and never reaches the kernel. Everything else goes on
//! through the pipeline untouched: solicitations for other addresses (the gateway's, other
//! hosts', free ones: this is no prefix-wide proxy) and invalid ones (RFC 4861 §7.1.1), which
//! the kernel discards too; both are counted.
//!
//! The table is pinned and the program stays attached while the agent restarts, so answering
//! never stops.
//!
//! - [`validate`]: the §7.1.1 checks;
//! - [`advert`]: the advertisement written in place of the solicitation;
//! - [`area`]: the per-CPU scratch area.

mod advert;
mod area;
mod validate;

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap},
    programs::TcContext,
};
use sixlane_common::{
    metrics::Reason,
    ndp::{LEASE_KEY, NEIGHBOR_SOLICIT, OWNED_ENTRIES, Owned, kind},
    net::{ETH_HLEN, IPV6_HLEN, proto},
};

use crate::{
    packet,
    parse::{Frag, L3},
    verdict::Verdict,
};

// Pinned: a restarted agent finds the addresses it owns, and the datapath answers for them
// meanwhile.
#[map(name = "SL_NDP_OWNED")]
static OWNED: HashMap<[u8; 16], Owned> = HashMap::pinned(OWNED_ENTRIES, 0);

// Pinned: the lease a restarted agent renews (`ndp::LEASE_KEY`).
#[map(name = "SL_NDP_LEASE")]
static LEASE: Array<u64> = Array::pinned(1, 0);

/// Whether the agent's lease on this node's LoadBalancer IPs still runs.
#[inline(always)]
fn leased() -> bool {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    LEASE.get(LEASE_KEY).is_some_and(|until| now < *until)
}

/// The NDP stage of `sl_from_uplink`: `None` for anything but a Neighbor Solicitation without
/// extension headers (a solicitation with them is left to the kernel).
#[inline(always)]
pub fn from_uplink(ctx: &TcContext, l3: &L3) -> Option<Verdict> {
    if !l3.v6
        || l3.proto != proto::ICMPV6
        || l3.frag != Frag::No
        || l3.l4_off != ETH_HLEN + IPV6_HLEN
    {
        return None;
    }
    let h: [u8; 2] = packet::read(ctx, ETH_HLEN + IPV6_HLEN)?;
    if h[0] != NEIGHBOR_SOLICIT {
        return None;
    }
    Some(solicitation(ctx))
}

/// Validates the solicitation and answers it if its target is owned here, on this uplink.
#[inline(never)]
fn solicitation(ctx: &TcContext) -> Verdict {
    let Some(s) = area::get() else {
        return Verdict::drop(Reason::NdpFailed);
    };
    let dad = match validate::solicitation(ctx, s) {
        Ok(dad) => dad,
        Err(r) => return Verdict::pass(r),
    };
    // SAFETY: the value is copied out at once.
    let owned = unsafe { OWNED.get(s.ns.target) }.copied();
    let Some(owned) = owned.filter(|o| o.ifindex == packet::ifindex(ctx)) else {
        return Verdict::pass(Reason::NdpNotOwned);
    };
    if owned.kind == kind::LB && !leased() {
        return Verdict::pass(Reason::NdpLapsed);
    }
    let reason = if dad {
        Reason::NdpDadDefended
    } else {
        Reason::NdpAnswered
    };
    match advert::answer(ctx, s, &owned, dad) {
        Ok(action) => Verdict::new(reason, action),
        Err(_) => Verdict::drop(Reason::NdpFailed),
    }
}
