//! The NDP stage's scratch area (`crate::scratch`): the solicitation's headers as loaded and
//! the advertisement's as written, off the BPF stack.

use aya_ebpf::macros::map;
use sixlane_common::ndp::ND_HLEN;

use crate::{checksum::Chunk, scratch::Scratch};

/// Ethernet, IPv6 and the fixed Neighbor Discovery part of a message (NS or NA alike): one
/// load or store.
#[repr(C)]
pub struct Head {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub ether_type: [u8; 2],
    /// Version, class, flow label, payload length, next header, hop limit.
    pub ip: [u8; 8],
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Type, code, checksum, and the 32-bit reserved (NS) or flags (NA) field.
    pub icmp: [u8; 8],
    pub target: [u8; 16],
}
pub const HEAD_LEN: usize = 14 + 40 + ND_HLEN;
const _: () = assert!(core::mem::size_of::<Head>() == HEAD_LEN);

#[repr(C)]
pub struct Area {
    /// The solicitation.
    pub ns: Head,
    /// The advertisement, then its Target Link-Layer Address option.
    pub na: Head,
    pub tlla: [u8; 8],
    pub chunk: Chunk,
}

#[map(name = "SL_NDP_SCRATCH")]
static AREA: Scratch<Area> = Scratch::new();

/// This CPU's area.
#[inline(always)]
pub fn get() -> Option<&'static mut Area> {
    AREA.get()
}
