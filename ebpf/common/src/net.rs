//! Wire constants: EtherTypes, header lengths, IANA protocol numbers, ICMP and ICMPv6 message
//! types, TCP flags. One place, so the parser, the service datapath, NAT64 and userspace read the
//! same numbers.

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;

/// Ethernet header.
pub const ETH_HLEN: usize = 14;
/// IPv4 header without options.
pub const IPV4_HLEN: usize = 20;
/// IPv6 fixed header.
pub const IPV6_HLEN: usize = 40;
/// IPv6 Fragment Header.
pub const FRAG_HLEN: usize = 8;
/// IPv6 header length minus IPv4 header length.
pub const HDR_DIFF: usize = IPV6_HLEN - IPV4_HLEN;
/// ICMP and ICMPv6 header: type, code, checksum and the 4-byte field after it.
pub const ICMP_HLEN: usize = 8;

/// Offsets of the source and destination addresses in the IPv6 header.
pub const IPV6_SRC_OFF: usize = 8;
pub const IPV6_DST_OFF: usize = 24;

/// Hop limit (TTL) of the packets the datapath originates: Linux's default.
pub const HOP_LIMIT: u8 = 64;

/// IPv6 minimum link MTU (RFC 8200 §5): an ICMPv6 error must fit it (RFC 4443 §2.4 (c)).
pub const IPV6_MIN_MTU: u32 = 1280;

/// IANA protocol numbers (IPv4 protocol, IPv6 next header).
pub mod proto {
    pub const HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const DSTOPTS: u8 = 60;
    pub const SCTP: u8 = 132;
}

/// ICMPv4 types and codes (RFC 792 and successors).
pub mod icmp4 {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACH: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;

    /// Destination Unreachable codes.
    pub const NET_UNREACH: u8 = 0;
    pub const HOST_UNREACH: u8 = 1;
    pub const PROTO_UNREACH: u8 = 2;
    pub const PORT_UNREACH: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    pub const HOST_ADMIN_PROHIBITED: u8 = 10;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// ICMPv6 types and codes (RFC 4443).
pub mod icmp6 {
    pub const DEST_UNREACH: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;

    /// Destination Unreachable codes.
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const ADDR_UNREACH: u8 = 3;
    pub const PORT_UNREACH: u8 = 4;
    /// Parameter Problem codes.
    pub const ERRONEOUS_HEADER: u8 = 0;
    pub const UNRECOGNIZED_NEXT_HEADER: u8 = 1;
}

/// TCP flag bits as they sit in byte 13 of the header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}
