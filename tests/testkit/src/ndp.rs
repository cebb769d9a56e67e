//! Neighbor Discovery messages for tests (RFC 4861), built and parsed here from the RFC,
//! independently of the datapath under test: solicitations with every field a test may want
//! wrong, and the advertisements a responder sends back.

use std::net::Ipv6Addr;

use crate::packet::{ETH_HLEN, IPPROTO_ICMPV6, IPV6_HLEN, checksum};

pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;
pub const OPT_SOURCE_LLA: u8 = 1;
pub const OPT_TARGET_LLA: u8 = 2;
/// RFC 7527's nonce option, which Linux puts in its DAD probes.
pub const OPT_NONCE: u8 = 14;

/// NA flags as the 32-bit field after the checksum.
pub const FLAG_ROUTER: u32 = 1 << 31;
pub const FLAG_SOLICITED: u32 = 1 << 30;
pub const FLAG_OVERRIDE: u32 = 1 << 29;

/// The solicited-node multicast group of `a` (RFC 4291 §2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address of multicast group `g` (RFC 2464 §7).
pub fn multicast_mac(g: Ipv6Addr) -> [u8; 6] {
    let o = g.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// A Neighbor Solicitation, valid unless a field is changed: from `src` (unspecified for a DAD
/// probe) to `dst` (the target's solicited-node group, or the target for unicast NUD).
#[derive(Clone, Debug)]
pub struct Solicitation {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub target: Ipv6Addr,
    pub hop_limit: u8,
    pub code: u8,
    /// Options as (type, body): the length byte is computed unless `raw_options` is set.
    pub options: Vec<(u8, Vec<u8>)>,
    /// Bytes appended after the options as they are (a truncated or zero-length option).
    pub raw_options: Vec<u8>,
    /// Added to the correct checksum (0: correct).
    pub checksum_delta: u16,
}

impl Solicitation {
    /// A multicast solicitation for `target` from `src` with a source link-layer address option.
    pub fn multicast(src_mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Self {
        let dst = solicited_node(target);
        Self {
            src_mac,
            dst_mac: multicast_mac(dst),
            src,
            dst,
            target,
            hop_limit: 255,
            code: 0,
            options: vec![(OPT_SOURCE_LLA, src_mac.to_vec())],
            raw_options: Vec::new(),
            checksum_delta: 0,
        }
    }

    /// A unicast (NUD) solicitation for `target`, sent to `target_mac`.
    pub fn unicast(src_mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr, target_mac: [u8; 6]) -> Self {
        Self {
            dst_mac: target_mac,
            dst: target,
            ..Self::multicast(src_mac, src, target)
        }
    }

    /// A Duplicate Address Detection probe for `target`, with a nonce as Linux sends it.
    pub fn dad(src_mac: [u8; 6], target: Ipv6Addr) -> Self {
        Self {
            src: Ipv6Addr::UNSPECIFIED,
            options: vec![(OPT_NONCE, vec![1, 2, 3, 4, 5, 6])],
            ..Self::multicast(src_mac, Ipv6Addr::UNSPECIFIED, target)
        }
    }

    /// The ICMPv6 message (checksum included).
    pub fn icmp(&self) -> Vec<u8> {
        let mut m = vec![NEIGHBOR_SOLICIT, self.code, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&self.target.octets());
        for (ty, body) in &self.options {
            let len = (2 + body.len()).div_ceil(8);
            m.push(*ty);
            m.push(len as u8);
            m.extend_from_slice(body);
            m.resize(m.len() + len * 8 - 2 - body.len(), 0);
        }
        m.extend_from_slice(&self.raw_options);
        let pseudo = checksum::pseudo_v6(
            &self.src.octets(),
            &self.dst.octets(),
            m.len() as u32,
            IPPROTO_ICMPV6,
        );
        let c = checksum::compute(&m, pseudo).wrapping_add(self.checksum_delta);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    /// The Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let icmp = self.icmp();
        let mut p = Vec::with_capacity(ETH_HLEN + IPV6_HLEN + icmp.len());
        p.extend_from_slice(&self.dst_mac);
        p.extend_from_slice(&self.src_mac);
        p.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        p.extend_from_slice(&[IPPROTO_ICMPV6, self.hop_limit]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend_from_slice(&icmp);
        p
    }
}

/// The parts of a Neighbor Advertisement a test checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertisement {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub flags: u32,
    pub target: Ipv6Addr,
    /// The Target Link-Layer Address option, if present.
    pub tlla: Option<[u8; 6]>,
}

impl Advertisement {
    /// The frame of this advertisement, built as RFC 4861 §4.4 lays it out (TLLA as its only
    /// option).
    pub fn frame(&self) -> Vec<u8> {
        let f = self.flags.to_be_bytes();
        let mut m = vec![NEIGHBOR_ADVERT, 0, 0, 0, f[0], f[1], f[2], f[3]];
        m.extend_from_slice(&self.target.octets());
        if let Some(mac) = self.tlla {
            m.extend_from_slice(&[OPT_TARGET_LLA, 1]);
            m.extend_from_slice(&mac);
        }
        let pseudo = checksum::pseudo_v6(
            &self.src.octets(),
            &self.dst.octets(),
            m.len() as u32,
            IPPROTO_ICMPV6,
        );
        let c = checksum::compute(&m, pseudo);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        let mut p = Vec::new();
        p.extend_from_slice(&self.dst_mac);
        p.extend_from_slice(&self.src_mac);
        p.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        p.extend_from_slice(&(m.len() as u16).to_be_bytes());
        p.extend_from_slice(&[IPPROTO_ICMPV6, self.hop_limit]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend_from_slice(&m);
        p
    }

    /// Parses `frame` as an advertisement without extension headers; `None` for anything else.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let ip = frame.get(ETH_HLEN..)?;
        if frame[12..14] != [0x86, 0xdd] || ip.len() < IPV6_HLEN + 24 || ip[6] != IPPROTO_ICMPV6 {
            return None;
        }
        let m = &ip[IPV6_HLEN..];
        if m[0] != NEIGHBOR_ADVERT {
            return None;
        }
        let addr = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
        let mut tlla = None;
        let mut off = 24;
        while off + 2 <= m.len() && m[off + 1] != 0 {
            let len = usize::from(m[off + 1]) * 8;
            if m[off] == OPT_TARGET_LLA && off + 8 <= m.len() {
                tlla = Some(m[off + 2..off + 8].try_into().expect("6 bytes"));
            }
            off += len;
        }
        Some(Self {
            dst_mac: frame[..6].try_into().expect("6 bytes"),
            src_mac: frame[6..12].try_into().expect("6 bytes"),
            src: addr(&ip[8..24]),
            dst: addr(&ip[24..40]),
            hop_limit: ip[7],
            flags: u32::from_be_bytes([m[4], m[5], m[6], m[7]]),
            target: addr(&m[8..24]),
            tlla,
        })
    }
}

/// An AF_PACKET socket bound to `ifname` seeing every protocol, in the calling thread's
/// network namespace: what [`Capture`] reads, and what a caller adding socket options (kernel
/// timestamps) starts from.
pub fn packet_socket(ifname: &str) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)?;
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the fd is owned (and closed) by `fd`.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = all;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is valid for the length passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Every frame arriving on (or leaving) one interface, from the moment it is opened: an
/// AF_PACKET socket, created in the calling thread's network namespace (open it inside
/// `NetNs::enter`; it stays in that namespace).
pub struct Capture {
    fd: std::os::fd::OwnedFd,
}

impl Capture {
    pub fn open(ifname: &str) -> std::io::Result<Self> {
        Ok(Self {
            fd: packet_socket(ifname)?,
        })
    }

    /// The advertisements that `want` accepts, seen within `window`.
    pub fn adverts(
        &self,
        window: std::time::Duration,
        want: impl Fn(&Advertisement) -> bool,
    ) -> Vec<Advertisement> {
        let end = std::time::Instant::now() + window;
        std::iter::from_fn(|| self.next_advert(end, &want)).collect()
    }

    /// The next advertisement that `want` accepts, if one arrives before `end`.
    pub fn next_advert(
        &self,
        end: std::time::Instant,
        want: impl Fn(&Advertisement) -> bool,
    ) -> Option<Advertisement> {
        use std::os::fd::AsRawFd as _;
        let mut buf = [0u8; 2048];
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().max(1) as i32;
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
                continue;
            }
            // SAFETY: `buf` is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0
                && let Some(a) = Advertisement::parse(&buf[..n as usize])
                && want(&a)
            {
                return Some(a);
            }
        }
        None
    }
}
