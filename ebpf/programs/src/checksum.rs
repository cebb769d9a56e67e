// The service and NAT64 stages are the users; the counters do not rewrite packets.
#![expect(
    dead_code,
    reason = "shared helpers; their users land with the service and NAT64 stages"
)]

//! Checksum updates. Rewrites are incremental (RFC 1624) through the kernel's csum helpers, which
//! also keep `skb->csum` right for CHECKSUM_COMPLETE packets and the pseudo-header seed right for
//! CHECKSUM_PARTIAL (GSO) ones; nothing here ever zeroes an IPv6 UDP checksum.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    helpers::bpf_csum_diff,
    programs::TcContext,
};

use sixlane_common::net::proto;

/// Offset of the checksum field within an upper-layer header, if the protocol has one we
/// maintain (SCTP uses CRC32c over the payload, which address rewrites do not touch).
#[inline(always)]
pub const fn l4_csum_offset(l4_proto: u8) -> Option<usize> {
    match l4_proto {
        proto::TCP => Some(16),
        proto::UDP => Some(6),
        proto::ICMPV6 | proto::ICMP => Some(2),
        _ => None,
    }
}

/// Flags for `bpf_l4_csum_replace` on `l4_proto`: UDP's 0 means "no checksum" (IPv4 only) and a
/// computed 0 must be sent as 0xffff, which `BPF_F_MARK_MANGLED_0` does.
#[inline(always)]
pub const fn l4_flags(l4_proto: u8) -> u64 {
    if l4_proto == proto::UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    }
}

/// Folds a 32-bit one's complement sum to 16 bits.
#[inline(always)]
pub const fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// One's complement difference between two buffers of equal, 4-byte-multiple length (as
/// `bpf_csum_diff` computes it), to feed `l4_csum_replace(.., 0, diff, ..)`.
#[inline(always)]
pub fn diff<const N: usize>(from: &[u8; N], to: &[u8; N], seed: u32) -> Result<u32, i64> {
    // SAFETY: both pointers cover N bytes; the helper only reads them. N is a multiple of 4 for
    // every caller (addresses, port pairs padded to 4).
    let r = unsafe {
        bpf_csum_diff(
            from.as_ptr() as *mut u32,
            N as u32,
            to.as_ptr() as *mut u32,
            N as u32,
            seed,
        )
    };
    if r < 0 { Err(r) } else { Ok(r as u32) }
}

/// Rewrites a 16-byte IPv6 address at `addr_off` and updates the upper-layer checksum at
/// `csum_off` (the address is part of its pseudo-header). IPv6 has no header checksum.
#[inline(always)]
pub fn set_addr6(
    ctx: &TcContext,
    addr_off: usize,
    old: &[u8; 16],
    new: &[u8; 16],
    csum_off: Option<usize>,
    l4_proto: u8,
) -> Result<(), i64> {
    if let Some(csum_off) = csum_off {
        let d = diff(old, new, 0)?;
        ctx.l4_csum_replace(
            csum_off,
            0,
            u64::from(d),
            u64::from(BPF_F_PSEUDO_HDR) | l4_flags(l4_proto),
        )?;
    }
    ctx.store(addr_off, new, 0)
}

/// Rewrites a 16-bit field (a port, an ICMP identifier) at `off` and updates the upper-layer
/// checksum at `csum_off`. `old`/`new` are in network byte order as they sit in the packet.
#[inline(always)]
pub fn set_u16(
    ctx: &TcContext,
    off: usize,
    old_be: u16,
    new_be: u16,
    csum_off: Option<usize>,
    l4_proto: u8,
) -> Result<(), i64> {
    if let Some(csum_off) = csum_off {
        ctx.l4_csum_replace(
            csum_off,
            u64::from(old_be),
            u64::from(new_be),
            2 | l4_flags(l4_proto),
        )?;
    }
    ctx.store(off, &new_be, 0)
}

/// Rewrites a 4-byte IPv4 address at `addr_off`, updating the IPv4 header checksum and the
/// upper-layer checksum (pseudo-header) at `csum_off`. Pass `csum_off` only for TCP and UDP:
/// ICMPv4 has no pseudo-header.
#[inline(always)]
pub fn set_addr4(
    ctx: &TcContext,
    addr_off: usize,
    ip_csum_off: usize,
    old_be: u32,
    new_be: u32,
    csum_off: Option<usize>,
    l4_proto: u8,
) -> Result<(), i64> {
    ctx.l3_csum_replace(ip_csum_off, u64::from(old_be), u64::from(new_be), 4)?;
    if let Some(csum_off) = csum_off {
        ctx.l4_csum_replace(
            csum_off,
            u64::from(old_be),
            u64::from(new_be),
            4 | u64::from(BPF_F_PSEUDO_HDR) | l4_flags(l4_proto),
        )?;
    }
    ctx.store(addr_off, &new_be, 0)
}
