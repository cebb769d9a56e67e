//! ICMPv6 messages the datapath originates (NAT64's errors, Neighbor Advertisements): the
//! header written after an IPv6 header already in place, with the checksum over the whole
//! message.

use aya_ebpf::programs::TcContext;
use sixlane_common::{
    metrics::Reason,
    nat64::csum,
    net::{ETH_HLEN, IPV6_HLEN, proto},
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
