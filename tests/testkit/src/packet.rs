//! Packets for tests: builders for the common shapes (via etherparse) and a checksum verifier
//! written from the RFCs, independent of both etherparse and the datapath under test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{PacketBuilder, SlicedPacket};

/// MAC addresses used by fixtures (locally administered).
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

pub const ETH_HLEN: usize = 14;
pub const IPV6_HLEN: usize = 40;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// TCP flags for [`tcp`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

impl TcpFlags {
    pub const SYN: Self = Self {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
        psh: false,
    };
    pub const SYN_ACK: Self = Self {
        syn: true,
        ack: true,
        ..Self::NONE
    };
    pub const ACK: Self = Self {
        ack: true,
        ..Self::NONE
    };
    pub const PSH_ACK: Self = Self {
        ack: true,
        psh: true,
        ..Self::NONE
    };
    pub const FIN_ACK: Self = Self {
        fin: true,
        ack: true,
        ..Self::NONE
    };
    pub const RST: Self = Self {
        rst: true,
        ..Self::NONE
    };
    pub const NONE: Self = Self {
        syn: false,
        ack: false,
        fin: false,
        rst: false,
        psh: false,
    };
}

fn ip_step(
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let hdr = etherparse::Ipv6Header {
                traffic_class: 0,
                flow_label: Default::default(),
                payload_length: 0,
                next_header: etherparse::IpNumber(0),
                hop_limit: ttl,
                source: s.octets(),
                destination: d.octets(),
            };
            eth.ip(etherparse::IpHeaders::Ipv6(hdr, Default::default()))
        }
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut hdr = etherparse::Ipv4Header::new(
                0,
                ttl,
                etherparse::IpNumber(0),
                s.octets(),
                d.octets(),
            )
            .expect("valid IPv4 header");
            hdr.dont_fragment = true;
            eth.ip(etherparse::IpHeaders::Ipv4(hdr, Default::default()))
        }
        _ => panic!("mixed address families: {src} -> {dst}"),
    }
}

/// Ethernet + IPv6/IPv4 + TCP with valid checksums. Sequence 1000, ack 2000 when ACK is set.
pub fn tcp(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    flags: TcpFlags,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = ip_step(src, dst, 64).tcp(sport, dport, 1000, 64240);
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(2000);
    }
    if flags.fin {
        b = b.fin();
    }
    if flags.rst {
        b = b.rst();
    }
    if flags.psh {
        b = b.psh();
    }
    let mut out = Vec::new();
    b.write_to_vec(&mut out, payload).expect("build tcp");
    out
}

/// Ethernet + IPv6/IPv4 + UDP with a valid checksum.
pub fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ip_step(src, dst, 64)
        .udp(sport, dport)
        .write_to_vec(&mut out, payload)
        .expect("build udp");
    out
}

/// Ethernet + IPv6 + ICMPv6 echo request.
pub fn icmp6_echo(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ip_step(src.into(), dst.into(), 64)
        .icmpv6_echo_request(id, seq)
        .write_to_vec(&mut out, payload)
        .expect("build icmpv6");
    out
}

/// Ethernet + IPv4 + ICMP echo request.
pub fn icmp4_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ip_step(src.into(), dst.into(), 64)
        .icmpv4_echo_request(id, seq)
        .write_to_vec(&mut out, payload)
        .expect("build icmpv4");
    out
}

/// Sends `frame` `n` times out of interface `ifname` (in the calling thread's network
/// namespace) through an AF_PACKET socket: no stack checks, so truncated or bogus frames reach
/// the other end's tc hooks as they are (`BPF_PROG_TEST_RUN` refuses some of them).
pub fn send_raw(ifname: &str, frame: &[u8], n: usize) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)?;
    // SAFETY: socket(2) with constant arguments; the fd is owned (and closed) by `fd`.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    for _ in 0..n {
        // SAFETY: `frame` and `addr` are valid for the lengths passed.
        let rc = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != frame.len() as isize {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One-line human description of a packet (for fixture diffs).
pub fn describe(pkt: &[u8]) -> String {
    match SlicedPacket::from_ethernet(pkt) {
        Ok(p) => {
            let net = match &p.net {
                Some(etherparse::NetSlice::Ipv6(v6)) => {
                    let h = v6.header();
                    format!(
                        "IPv6 {} -> {} hl={} tc={} plen={}",
                        h.source_addr(),
                        h.destination_addr(),
                        h.hop_limit(),
                        h.traffic_class(),
                        h.payload_length()
                    )
                }
                Some(etherparse::NetSlice::Ipv4(v4)) => {
                    let h = v4.header();
                    format!(
                        "IPv4 {} -> {} ttl={} tos={} len={} id={} df={}",
                        h.source_addr(),
                        h.destination_addr(),
                        h.ttl(),
                        (h.dcp().value() << 2) | h.ecn().value(),
                        h.total_len(),
                        h.identification(),
                        h.dont_fragment()
                    )
                }
                Some(other) => format!("{other:?}"),
                None => "no IP".into(),
            };
            let l4 = match &p.transport {
                Some(etherparse::TransportSlice::Tcp(t)) => format!(
                    "TCP {}->{} seq={} ack={} flags={}{}{}{}{} csum={:#06x}",
                    t.source_port(),
                    t.destination_port(),
                    t.sequence_number(),
                    t.acknowledgment_number(),
                    if t.syn() { "S" } else { "" },
                    if t.ack() { "A" } else { "" },
                    if t.fin() { "F" } else { "" },
                    if t.rst() { "R" } else { "" },
                    if t.psh() { "P" } else { "" },
                    t.checksum()
                ),
                Some(etherparse::TransportSlice::Udp(u)) => format!(
                    "UDP {}->{} len={} csum={:#06x}",
                    u.source_port(),
                    u.destination_port(),
                    u.length(),
                    u.checksum()
                ),
                Some(etherparse::TransportSlice::Icmpv6(i)) => {
                    format!("ICMPv6 {:?} csum={:#06x}", i.icmp_type(), i.checksum())
                }
                Some(etherparse::TransportSlice::Icmpv4(i)) => {
                    format!("ICMPv4 {:?} csum={:#06x}", i.icmp_type(), i.checksum())
                }
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            format!("{net} {l4} ({} bytes)", pkt.len())
        }
        Err(e) => format!("unparsable ({e}; {} bytes)", pkt.len()),
    }
}

/// Internet checksum arithmetic (RFC 1071), kept apart from any code under test.
pub mod checksum {
    /// Ones-complement sum of `data` folded to 16 bits (not inverted).
    pub fn sum(data: &[u8], mut acc: u32) -> u32 {
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            acc += u32::from(*last) << 8;
        }
        acc
    }

    pub fn fold(mut acc: u32) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// The checksum field value for `data` (with its checksum field zeroed) plus `acc`.
    pub fn compute(data: &[u8], acc: u32) -> u16 {
        !fold(sum(data, acc))
    }

    /// Whether `data` (checksum field included) plus pseudo-header `acc` verifies.
    pub fn verifies(data: &[u8], acc: u32) -> bool {
        fold(sum(data, acc)) == 0xffff
    }

    pub fn pseudo_v6(src: &[u8], dst: &[u8], len: u32, proto: u8) -> u32 {
        let mut acc = sum(src, 0);
        acc = sum(dst, acc);
        acc += len >> 16;
        acc += len & 0xffff;
        acc + u32::from(proto)
    }

    pub fn pseudo_v4(src: &[u8], dst: &[u8], len: u16, proto: u8) -> u32 {
        let mut acc = sum(src, 0);
        acc = sum(dst, acc);
        acc + u32::from(len) + u32::from(proto)
    }
}

/// Verifies every checksum of an Ethernet frame: the IPv4 header checksum, and the TCP, UDP,
/// ICMP or ICMPv6 checksum over the L4 payload (with the pseudo-header where the protocol has
/// one). IPv6 UDP with a zero checksum is an error (RFC 8200 §8.1); IPv4 UDP zero means "none".
/// Packets that are not IP, or fragments after the first, pass.
pub fn verify_checksums(pkt: &[u8]) -> Result<(), String> {
    if pkt.len() < ETH_HLEN {
        return Err(format!(
            "frame of {} bytes has no Ethernet header",
            pkt.len()
        ));
    }
    let ethertype = u16::from_be_bytes([pkt[12], pkt[13]]);
    let l3 = &pkt[ETH_HLEN..];
    match ethertype {
        0x86dd => verify_v6(l3),
        0x0800 => verify_v4(l3),
        _ => Ok(()),
    }
}

fn verify_v4(ip: &[u8]) -> Result<(), String> {
    if ip.len() < 20 {
        return Err("truncated IPv4 header".into());
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || ip.len() < ihl || total < ihl || ip.len() < total {
        return Err(format!(
            "bad IPv4 lengths: ihl={ihl} total={total} have={}",
            ip.len()
        ));
    }
    if !checksum::verifies(&ip[..ihl], 0) {
        return Err(format!(
            "IPv4 header checksum {:#06x} wrong (want {:#06x})",
            u16::from_be_bytes([ip[10], ip[11]]),
            {
                let mut h = ip[..ihl].to_vec();
                h[10] = 0;
                h[11] = 0;
                checksum::compute(&h, 0)
            }
        ));
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    let more = frag & 0x2000 != 0;
    let offset = frag & 0x1fff;
    if offset != 0 || more {
        // Only a whole datagram's L4 checksum can be checked.
        return Ok(());
    }
    let proto = ip[9];
    let l4 = &ip[ihl..total];
    let (src, dst) = (&ip[12..16], &ip[16..20]);
    let len = l4.len() as u16;
    match proto {
        IPPROTO_TCP => check_l4("TCP", l4, 16, checksum::pseudo_v4(src, dst, len, proto)),
        IPPROTO_UDP => {
            if l4.len() >= 8 && l4[6] == 0 && l4[7] == 0 {
                return Ok(());
            }
            check_l4("UDP", l4, 6, checksum::pseudo_v4(src, dst, len, proto))
        }
        IPPROTO_ICMP => check_l4("ICMP", l4, 2, 0),
        _ => Ok(()),
    }
}

fn verify_v6(ip: &[u8]) -> Result<(), String> {
    if ip.len() < IPV6_HLEN {
        return Err("truncated IPv6 header".into());
    }
    let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if ip.len() < IPV6_HLEN + plen {
        return Err(format!(
            "IPv6 payload length {plen} exceeds the {} bytes present",
            ip.len() - IPV6_HLEN
        ));
    }
    let (src, dst) = (&ip[8..24], &ip[24..40]);
    let mut next = ip[6];
    let mut off = IPV6_HLEN;
    let end = IPV6_HLEN + plen;
    // Walk extension headers to the upper layer.
    loop {
        match next {
            0 | 43 | 60 => {
                if off + 8 > end {
                    return Err("truncated extension header".into());
                }
                let len = (usize::from(ip[off + 1]) + 1) * 8;
                next = ip[off];
                off += len;
            }
            44 => {
                if off + 8 > end {
                    return Err("truncated fragment header".into());
                }
                let frag = u16::from_be_bytes([ip[off + 2], ip[off + 3]]);
                if frag & 0xfff8 != 0 || frag & 1 != 0 {
                    return Ok(());
                }
                next = ip[off];
                off += 8;
            }
            _ => break,
        }
    }
    if off > end {
        return Err("extension headers overrun the payload".into());
    }
    let l4 = &ip[off..end];
    let pseudo = checksum::pseudo_v6(src, dst, l4.len() as u32, next);
    match next {
        IPPROTO_TCP => check_l4("TCP", l4, 16, pseudo),
        IPPROTO_UDP => {
            if l4.len() >= 8 && l4[6] == 0 && l4[7] == 0 {
                return Err("IPv6 UDP checksum is zero (forbidden by RFC 8200)".into());
            }
            check_l4("UDP", l4, 6, pseudo)
        }
        IPPROTO_ICMPV6 => check_l4("ICMPv6", l4, 2, pseudo),
        _ => Ok(()),
    }
}

fn check_l4(what: &str, l4: &[u8], csum_off: usize, pseudo: u32) -> Result<(), String> {
    if l4.len() < csum_off + 2 {
        return Err(format!("truncated {what} header ({} bytes)", l4.len()));
    }
    if checksum::verifies(l4, pseudo) {
        return Ok(());
    }
    let mut z = l4.to_vec();
    z[csum_off] = 0;
    z[csum_off + 1] = 0;
    Err(format!(
        "{what} checksum {:#06x} wrong (want {:#06x})",
        u16::from_be_bytes([l4[csum_off], l4[csum_off + 1]]),
        checksum::compute(&z, pseudo)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn built_packets_verify() {
        for p in [
            tcp(v6("fd00::1"), 1234, v6("fd00::2"), 80, TcpFlags::SYN, b""),
            tcp(
                v6("fd00::1"),
                1234,
                v6("fd00::2"),
                80,
                TcpFlags::PSH_ACK,
                b"hello",
            ),
            udp(v6("fd00::1"), 53, v6("fd00::2"), 5353, b"odd"),
            icmp6_echo(
                "fd00::1".parse().unwrap(),
                "fd00::2".parse().unwrap(),
                7,
                1,
                b"ping",
            ),
            tcp(
                v6("198.18.0.1"),
                1,
                v6("198.18.0.2"),
                2,
                TcpFlags::ACK,
                b"x",
            ),
            udp(v6("198.18.0.1"), 1, v6("198.18.0.2"), 2, b""),
            icmp4_echo(
                "198.18.0.1".parse().unwrap(),
                "198.18.0.2".parse().unwrap(),
                1,
                2,
                b"p",
            ),
        ] {
            verify_checksums(&p).unwrap_or_else(|e| panic!("{}: {e}", describe(&p)));
        }
    }

    #[test]
    fn corruption_is_detected_at_every_layer() {
        let mut p = tcp(v6("fd00::1"), 1234, v6("fd00::2"), 80, TcpFlags::SYN, b"");
        p[ETH_HLEN + 8] ^= 1; // source address: pseudo-header mismatch
        assert!(verify_checksums(&p).unwrap_err().contains("TCP checksum"));

        let mut p = icmp4_echo(
            "198.18.0.1".parse().unwrap(),
            "198.18.0.2".parse().unwrap(),
            1,
            2,
            b"",
        );
        p[ETH_HLEN + 8] ^= 1; // TTL: IPv4 header checksum
        assert!(verify_checksums(&p).unwrap_err().contains("IPv4 header"));

        let mut p = udp(v6("fd00::1"), 1, v6("fd00::2"), 2, b"abc");
        let c = ETH_HLEN + IPV6_HLEN + 6;
        p[c] = 0;
        p[c + 1] = 0;
        assert!(verify_checksums(&p).unwrap_err().contains("zero"));
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum::fold(checksum::sum(&data, 0)), 0xddf2);
        assert_eq!(checksum::compute(&data, 0), !0xddf2);
    }
}
