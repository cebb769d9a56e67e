//! Headers that disagree with themselves are not translated (RFC 1812 §5.2.2 for IPv4 headers,
//! RFC 7915's "drop the packet" cases): the kernel would never have forwarded them. Each check
//! fails with `Nat64Malformed`.
//!
//! Quoted packets inside ICMP errors are truncated by nature (RFC 792 quotes 8 bytes of the
//! transport header, RFC 4443 as much as fits), so their lengths cannot be held against the
//! quote. What a truncated quote still lets us verify: the IPv4 header checksum and IHL (the
//! whole header is quoted), a TCP data offset of at least 5 (when the quote reaches it) and a
//! UDP length of at least 8 (always quoted).

use aya_ebpf::programs::TcContext;
use sixlane_common::{
    metrics::Reason,
    nat64::{csum, header},
    net::{IPV4_HLEN, proto},
};

use crate::{packet, verdict::Res};

/// Longest IPv4 options area (IHL 15 → 40 bytes), in 32-bit words.
const MAX_OPT_WORDS: usize = 10;

/// The IPv4 header at `off` (fixed part `h`, `ihl` bytes in all) has a valid checksum.
#[inline(always)]
pub fn ipv4(ctx: &TcContext, off: usize, h: &[u8; IPV4_HLEN], ihl: u8) -> Res<()> {
    let (mut at, end) = (off + IPV4_HLEN, off + usize::from(ihl));
    let mut opts = 0;
    for _ in 0..MAX_OPT_WORDS {
        if at >= end {
            break;
        }
        let w: [u8; 4] = packet::load(ctx, at)?;
        opts = csum::sum(&w, opts);
        at += 4;
    }
    ok(header::v4_checksum_ok(h, opts))
}

/// The TCP data offset or UDP length of the whole segment at `l4` (`l4_len` bytes, as the IP
/// header says) agrees with it. Other protocols have nothing to check here.
#[inline(always)]
pub fn transport(ctx: &TcContext, l4_proto: u8, l4: usize, l4_len: u16) -> Res<()> {
    match l4_proto {
        proto::TCP => {
            let b: [u8; 1] = packet::load(ctx, l4 + 12)?;
            ok(header::tcp_hlen_ok(u16::from(b[0] >> 4) * 4, l4_len))
        }
        proto::UDP => {
            let b: [u8; 2] = packet::load(ctx, l4 + 4)?;
            ok(header::udp_len_ok(u16::from_be_bytes(b), l4_len))
        }
        _ => Ok(()),
    }
}

/// The checks a quoted (truncated) TCP or UDP header allows: data offset ≥ 5 if the quote
/// reaches it, UDP length ≥ 8.
#[inline(always)]
pub fn quoted_transport(ctx: &TcContext, l4_proto: u8, l4: usize) -> Res<()> {
    match l4_proto {
        proto::TCP => match packet::load::<[u8; 1]>(ctx, l4 + 12) {
            Ok(b) => ok(b[0] >> 4 >= 5),
            Err(_) => Ok(()),
        },
        proto::UDP => {
            let b: [u8; 2] = packet::load(ctx, l4 + 4)?;
            ok(u16::from_be_bytes(b) >= 8)
        }
        _ => Ok(()),
    }
}

#[inline(always)]
fn ok(good: bool) -> Res<()> {
    if good {
        Ok(())
    } else {
        Err(Reason::Nat64Malformed)
    }
}
