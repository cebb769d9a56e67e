//! The NAT64 stage's scratch area (`crate::scratch`): headers, map keys and values, the route
//! and checksum chunks of the packet being translated, off the BPF stack; and what this CPU
//! keeps between packets (its route cache and IPv4 Identification generator).

use aya_ebpf::{bindings::bpf_fib_lookup, helpers::bpf_get_prandom_u32, macros::map};
use sixlane_common::{
    nat64::{
        header::{self, Ip4, Ip6},
        icmp,
        maps::{HeldKey, HeldSyn},
    },
    net::{IPV4_HLEN, IPV6_HLEN},
};

use super::state::{Flow, InFlow, Keys, Mapping};
use crate::{
    checksum::Chunk,
    forward::{ROUTE_SLOTS, RouteSlot},
    scratch::Scratch,
};

/// Ethernet + IPv4 header of a translated packet, and the ports of a TCP or UDP one: written
/// to the packet in one store (`forward::send_frame`).
#[repr(C)]
pub struct Frame4 {
    pub eth: [u8; 14],
    pub ip: [u8; IPV4_HLEN],
    pub ports: [u8; PORTS_LEN],
}

/// Ethernet + IPv6 header of a translated packet, and the ports of a TCP or UDP one: written
/// to the packet in one store (`forward::send_frame`).
#[repr(C)]
pub struct Frame6 {
    pub eth: [u8; 14],
    pub ip: [u8; IPV6_HLEN],
    pub ports: [u8; PORTS_LEN],
}

/// Source and destination port: the first bytes of TCP and UDP headers, right after the IP
/// header, so a translated port goes out with the headers instead of in a store of its own.
pub const PORTS_LEN: usize = 4;
const _: () = assert!(core::mem::size_of::<Frame4>() == 14 + IPV4_HLEN + PORTS_LEN);
const _: () = assert!(core::mem::size_of::<Frame6>() == 14 + IPV6_HLEN + PORTS_LEN);

/// How much of frame `F` ([`Frame4`] or [`Frame6`]) a translated packet takes: all of it with
/// `ports` (TCP and UDP), else up to the ports.
#[inline(always)]
pub const fn frame_len<F>(ports: bool) -> usize {
    core::mem::size_of::<F>() - if ports { 0 } else { PORTS_LEN }
}

impl AsMut<[u8; 14]> for Frame4 {
    fn as_mut(&mut self) -> &mut [u8; 14] {
        &mut self.eth
    }
}

impl AsMut<[u8; 14]> for Frame6 {
    fn as_mut(&mut self) -> &mut [u8; 14] {
        &mut self.eth
    }
}

/// What an ICMP error translation found before rewriting anything: the session the quoted
/// packet belongs to and how its transport header changes. (`icmp_error`)
pub struct Plan {
    /// Translated ICMP type and code, and how to fill the rest of the header.
    pub m: icmp::Mapped,
    /// The original 32-bit field after the checksum (MTU or pointer).
    pub rest: u32,
    /// The quoted packet's transport protocol (ICMP for echo in either family).
    pub proto: u8,
    /// ICMP type the quoted echo message becomes (0 for TCP/UDP; may be 0 for Echo Reply).
    pub inner_ty: u8,
    /// Offset in the quoted transport header of the port or identifier that changes.
    pub port_off: u8,
    pub new_port: u16,
    /// Length the quoted packet had: IPv4 total length, or IPv6 payload length.
    pub inner_len: u16,
    /// One's complement sums (big-endian words) of what the quoted checksum covered before
    /// and covers after.
    pub old_sum: u32,
    pub new_sum: u32,
    /// IPv4 side of the session: T, and the peer Z.
    pub t_addr: [u8; 4],
    pub z: [u8; 4],
    /// IPv6 side: the pod X'.
    pub x_addr: [u8; 16],
}

/// What the hairpin stage (`hairpin::run`) is to do with the packet, set by the NAT64 program
/// that hands it over ([`Area::hairpin`]).
pub mod hairpin {
    /// Nothing handed over.
    pub const NONE: u8 = 0;
    /// TCP or UDP: `Area::flow` bound to `Area::map`.
    pub const TRANSPORT: u8 = 1;
    /// An ICMPv6 echo message: `Area::flow`.
    pub const ECHO: u8 = 2;
    /// An ICMPv6 error: `Area::plan` and `Area::inner6` from `icmp_error`'s plan.
    pub const ERROR: u8 = 3;
}

pub struct Area {
    /// FIB lookup parameters and result (route, MACs) until the packet is sent.
    pub fib: bpf_fib_lookup,
    /// Checksum chunks.
    pub chunk: Chunk,
    /// An IPv6 header being loaded or written.
    pub hdr6: [u8; IPV6_HLEN],
    /// An IPv4 header being loaded or written.
    pub hdr4: [u8; IPV4_HLEN],
    /// Headers of translated packets.
    pub f4: Frame4,
    pub f6: Frame6,
    /// Map keys and values being built.
    pub keys: Keys,
    /// IPv6 addresses being built (embedded addresses, error sources).
    pub a6: [u8; 16],
    pub b6: [u8; 16],
    /// The packet's outer header as it arrived (IPv6 or IPv4 side).
    pub ip6: Ip6,
    pub ip4: Ip4,
    /// The header quoted by an ICMP error.
    pub inner6: Ip6,
    pub inner4: Ip4,
    /// ICMP error translation plan.
    pub plan: Plan,
    /// The IPv6-side flow being translated and its binding.
    pub flow: Flow,
    pub map: Mapping,
    /// The IPv4-side flow being translated (here, not on the stack: the uplink program's call
    /// chain is close to the verifier's 512-byte limit).
    pub inflow: InFlow,
    /// A held SYN's key and entry (`super::hold`).
    pub held_key: HeldKey,
    pub held: HeldSyn,
    /// Recently looked-up routes of translated packets (`forward::lookup4_cached`).
    pub routes: [RouteSlot; ROUTE_SLOTS],
    /// This CPU's IPv4 Identification generator ([`Area::ipv4_id`]): key (0 until the first
    /// packet) and sequence number.
    pub id_key: u32,
    pub id_seq: u32,
    /// A packet handed to the hairpin stage ([`hairpin`]), with `ip6` its header.
    pub hairpin: u8,
}

impl Area {
    /// The Identification of the next IPv4 packet this CPU sends
    /// (`sixlane_common::nat64::header::ipv4_id`). The key comes from the kernel's PRNG once per
    /// CPU and load; a PRNG call per packet cost a helper call on every translated packet.
    #[inline(always)]
    pub fn ipv4_id(&mut self) -> u16 {
        if self.id_key == 0 {
            // SAFETY: plain helper call.
            self.id_key = unsafe { bpf_get_prandom_u32() } | 1;
        }
        self.id_seq = self.id_seq.wrapping_add(1);
        header::ipv4_id(self.id_key, self.id_seq)
    }
}

#[map(name = "SL_N64_SCRATCH")]
static AREA: Scratch<Area> = Scratch::new();

/// This CPU's area.
#[inline(always)]
pub fn get() -> Option<&'static mut Area> {
    AREA.get()
}
