//! Unsolicited Neighbor Advertisements (RFC 4861 §7.2.6) when an address starts being answered
//! here: to all-nodes, Override set, Solicited clear, with the uplink's MAC as the target
//! link-layer address, so a router that cached another owner (a moved LoadBalancer IP, a pod
//! address reused) updates its entry at once. Sent [`REPEAT`] times, [`INTERVAL`] apart
//! (§7.2.6: MAX_NEIGHBOR_ADVERTISEMENT, a few, not one: the first may be lost). The frame is
//! written whole on a packet socket: it comes from the owned address, as the datapath's
//! answers do, and that address is not the node's.

use std::{
    net::Ipv6Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use sixlane_common::{
    nat64::csum,
    ndp::{
        ALL_NODES, HOP_LIMIT, ND_HLEN, NEIGHBOR_ADVERT, OPT_TARGET_LLA, OPT_UNIT, multicast_mac,
        na_flags,
    },
    net::{ETH_HLEN, ETH_P_IPV6, IPV6_HLEN, proto},
};

use super::owned::Uplink;
use crate::{Error, Result};

/// How many unsolicited advertisements an address gets, and how far apart.
pub const REPEAT: u32 = 3;
pub const INTERVAL: Duration = Duration::from_secs(1);

const NA_LEN: usize = ND_HLEN + OPT_UNIT;
pub const FRAME_LEN: usize = ETH_HLEN + IPV6_HLEN + NA_LEN;

/// The unsolicited advertisement of `target` on `uplink`.
pub fn frame(target: Ipv6Addr, uplink: Uplink) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[..6].copy_from_slice(&multicast_mac(&ALL_NODES));
    f[6..12].copy_from_slice(&uplink.mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let ip = &mut f[ETH_HLEN..];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(NA_LEN as u16).to_be_bytes());
    ip[6] = proto::ICMPV6;
    ip[7] = HOP_LIMIT;
    ip[8..24].copy_from_slice(&target.octets());
    ip[24..40].copy_from_slice(&ALL_NODES);
    let m = &mut ip[IPV6_HLEN..];
    m[0] = NEIGHBOR_ADVERT;
    m[4..8].copy_from_slice(&na_flags::OVERRIDE.to_be_bytes());
    m[8..24].copy_from_slice(&target.octets());
    m[24] = OPT_TARGET_LLA;
    m[25] = 1;
    m[26..32].copy_from_slice(&uplink.mac);
    let pseudo = csum::pseudo6(&target.octets(), &ALL_NODES, NA_LEN as u32, proto::ICMPV6);
    let mut body = [0u8; NA_LEN];
    body.copy_from_slice(m);
    let c = csum::finish(csum::sum(&body, pseudo));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

/// A packet socket bound to no interface; each frame names its own.
pub struct Sender {
    fd: OwnedFd,
}

impl Sender {
    pub fn new() -> Result<Self> {
        // SAFETY: socket(2) with constant arguments; the descriptor is owned by `fd` at once.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(Error::Ndp {
                what: "opening a packet socket for unsolicited advertisements",
                uplink: String::new(),
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: `raw` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    /// Sends the unsolicited advertisement of `target` out of `uplink` (named `name`).
    pub fn send(&self, name: &str, uplink: Uplink, target: Ipv6Addr) -> Result<()> {
        let f = frame(target, uplink);
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_IPV6.to_be();
        addr.sll_ifindex = uplink.ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&f[..6]);
        // SAFETY: `f` and `addr` are valid for the lengths passed.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != f.len() as isize {
            return Err(Error::Ndp {
                what: "sending an unsolicited advertisement",
                uplink: name.to_owned(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsolicited_advertisement_layout_and_checksum() {
        let up = Uplink {
            ifindex: 3,
            mac: [2, 0, 0, 0, 0, 0xee],
        };
        let t: Ipv6Addr = "2001:db8:1:2::a".parse().unwrap();
        let f = frame(t, up);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[6..12], &up.mac);
        let ip = &f[ETH_HLEN..];
        assert_eq!((ip[6], ip[7]), (58, 255));
        let m = &ip[IPV6_HLEN..];
        assert_eq!(m[0], 136);
        assert_eq!(u32::from_be_bytes([m[4], m[5], m[6], m[7]]), 1 << 29);
        assert_eq!(&m[8..24], &t.octets());
        assert_eq!(&m[24..32], &[2, 1, 2, 0, 0, 0, 0, 0xee]);
        // The message with its checksum sums to all ones (RFC 1071).
        let mut body = [0u8; NA_LEN];
        body.copy_from_slice(m);
        let pseudo = csum::pseudo6(&t.octets(), &ALL_NODES, NA_LEN as u32, 58);
        assert_eq!(csum::fold(csum::sum(&body, pseudo)), 0xffff);
    }
}
