//! Bounds-checked access to packet headers.

use aya_ebpf::programs::TcContext;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// Pointer to a `T` at `offset` in the linear packet data, if the whole `T` is inside it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// What kind of network layer a frame carries, as far as its first header tells.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    Ipv6,
    Ipv4,
    /// Not IP (ARP, LLDP, ...): never ours.
    Other,
    /// Claims to be IP but the header is truncated or inconsistent.
    Malformed,
}

/// Classifies the frame by its EtherType and checks that the IP header it announces is present
/// and has the right version (and, for IPv4, a sane header length).
#[inline(always)]
pub fn l3(ctx: &TcContext) -> L3 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return L3::Malformed;
    };
    // SAFETY: bounds-checked by ptr_at.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    match ether_type {
        ETH_P_IPV6 => match ptr_at::<Ipv6Hdr>(ctx, EthHdr::LEN) {
            // SAFETY: bounds-checked by ptr_at.
            Some(ip) if unsafe { (*ip).version() } == 6 => L3::Ipv6,
            _ => L3::Malformed,
        },
        ETH_P_IPV4 => match ptr_at::<Ipv4Hdr>(ctx, EthHdr::LEN) {
            // SAFETY: bounds-checked by ptr_at.
            Some(ip) if unsafe { (*ip).version() == 4 && (*ip).ihl() >= 20 } => L3::Ipv4,
            _ => L3::Malformed,
        },
        _ => L3::Other,
    }
}
