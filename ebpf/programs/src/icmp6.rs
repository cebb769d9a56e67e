//! ICMPv6 messages the datapath originates (NAT64's errors, services' port unreachable,
//! Neighbor Advertisements): the header written after an IPv6 header already in place, with the
//! checksum over the whole message; and the quoted segment's own checksum made verifiable.

use aya_ebpf::programs::TcContext;
use sixlane_common::{
    metrics::Reason,
    nat64::csum,
    net::{ETH_HLEN, ICMP_HLEN, IPV6_HLEN, proto},
};

use crate::{
    checksum::{self, Chunk},
    packet,
    verdict::Res,
};

/// Chunks covering the largest ICMPv6 error (1240 bytes after the header).
pub const CHUNKS: usize = 20;

/// The ICMPv6 header of a message whose IPv6 header is in place.
pub struct Icmp6 {
    pub ty: u8,
    pub code: u8,
    /// The 32-bit field after the checksum: an MTU, a pointer, flags or unused.
    pub info: u32,
    /// The ICMPv6 message's length (header and body), as in the IPv6 payload length.
    pub len: u16,
}

impl Icmp6 {
    /// Writes the header right after the IPv6 header and checksums the message up to the end
    /// of the packet; a message longer than [`CHUNKS`] chunks is refused as `too_long`.
    #[inline(always)]
    pub fn write(
        &self,
        ctx: &TcContext,
        chunk: &mut Chunk,
        (src, dst): (&[u8; 16], &[u8; 16]),
        too_long: Reason,
    ) -> Res<()> {
        let off = ETH_HLEN + IPV6_HLEN;
        let i = self.info.to_be_bytes();
        packet::store(
            ctx,
            off,
            &[self.ty, self.code, 0, 0, i[0], i[1], i[2], i[3]],
        )?;
        let seed = checksum::native(csum::pseudo6(src, dst, u32::from(self.len), proto::ICMPV6));
        let end = ctx.len() as usize;
        let acc = checksum::sum_range::<CHUNKS>(ctx, chunk, (off, end), seed, too_long)?;
        packet::store(ctx, off + 2, &checksum::field(acc))
    }
}

/// Where an originated error's quote starts: the offending packet's IPv6 header.
const QUOTE_OFF: usize = ETH_HLEN + IPV6_HLEN + ICMP_HLEN;

/// Rewrites the checksum of the TCP or UDP segment quoted by an error being built (the quote at
/// [`QUOTE_OFF`], from `src` to `dst`) to the full one, when the whole segment is quoted.
///
/// A pod's segment usually leaves its stack with checksum offload pending (CHECKSUM_PARTIAL):
/// its checksum field holds only the pseudo-header sum, which the device would have completed.
/// tc cannot read `skb->ip_summed`, and computing the checksum is right in both cases (an
/// already complete checksum is rewritten with itself), so it is always computed: the receiver
/// can verify the quote it matches to its socket. Quotes cut short keep what they carried.
#[inline(always)]
pub fn complete_quote(
    ctx: &TcContext,
    chunk: &mut Chunk,
    (src, dst): (&[u8; 16], &[u8; 16]),
    too_long: Reason,
) -> Res<()> {
    let h: [u8; 8] = packet::load(ctx, QUOTE_OFF)?;
    let (plen, next) = (u16::from_be_bytes([h[4], h[5]]), h[6]);
    let field = match next {
        proto::TCP => 16,
        proto::UDP => 6,
        _ => return Ok(()),
    };
    let l4 = QUOTE_OFF + IPV6_HLEN;
    let end = l4 + usize::from(plen);
    if end > ctx.len() as usize || usize::from(plen) < field + 2 {
        return Ok(());
    }
    packet::store(ctx, l4 + field, &[0u8, 0])?;
    let seed = checksum::native(csum::pseudo6(src, dst, u32::from(plen), next));
    let acc = checksum::sum_range::<CHUNKS>(ctx, chunk, (l4, end), seed, too_long)?;
    let mut c = checksum::field(acc);
    if next == proto::UDP && c == [0, 0] {
        c = [0xff, 0xff];
    }
    packet::store(ctx, l4 + field, &c)
}
