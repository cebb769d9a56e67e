//! IPv4 SYNs the datapath holds for a simultaneous open (`nat64.unsolicitedTcp: hold`, RFC
//! 6146 §3.5.2.2; `SL_N64_HELD`). The datapath records and drops them, and forgets one when
//! the pod's own SYN for its tuple arrives; a program cannot send anything 6 s later, so the
//! agent [`answer`]s the ones left after [`HOLD_NS`]: ICMP Destination Unreachable, Port
//! Unreachable, from the pool address to the SYN's source, quoting the SYN; then removes them.

use std::{
    io,
    mem::size_of,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use aya::maps::{HashMap, MapData};
use sixlane_common::{
    layout,
    nat64::{
        csum,
        maps::{HELD_QUOTE_LEN, HOLD_NS, HeldKey, HeldSyn},
    },
    net::icmp4,
};

use crate::{Error, PinLayout, Result, pinned};

/// An ICMP Port Unreachable quoting a held SYN: the 8-byte ICMP header and the quote.
pub const MESSAGE_LEN: usize = 8 + HELD_QUOTE_LEN;

/// One held SYN for display.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HeldRow {
    pub pool: Ipv4Addr,
    pub pool_port: u16,
    pub peer: Ipv4Addr,
    pub peer_port: u16,
    pub age_ms: u64,
}

/// What an [`answer`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AnswerReport {
    /// Held SYNs answered with Port Unreachable and removed.
    pub answered: usize,
    /// Held SYNs whose answer could not be sent (removed all the same: a SYN is not held
    /// forever).
    pub failed: usize,
    /// Held SYNs still within their 6 s.
    pub waiting: usize,
}

/// Every held SYN.
pub fn read(layout: &PinLayout) -> Result<Vec<(HeldKey, HeldSyn)>> {
    let m: HashMap<MapData, HeldKey, HeldSyn> = pinned::open(layout, layout::MAP_NAT64_HELD)?;
    Ok(m.iter().filter_map(std::result::Result::ok).collect())
}

/// Held SYNs as rows, oldest first.
pub fn rows(held: &[(HeldKey, HeldSyn)], now_ns: u64) -> Vec<HeldRow> {
    let mut rows: Vec<(u64, HeldRow)> = held
        .iter()
        .map(|(k, v)| {
            let age = now_ns.saturating_sub(v.seen_ns) / 1_000_000;
            let row = HeldRow {
                pool: Ipv4Addr::from(k.t_addr),
                pool_port: k.t_port,
                peer: Ipv4Addr::from(k.z),
                peer_port: k.z_port,
                age_ms: age,
            };
            (v.seen_ns, row)
        })
        .collect();
    rows.sort_by(|a, b| (a.0, &a.1.peer, a.1.peer_port).cmp(&(b.0, &b.1.peer, b.1.peer_port)));
    rows.into_iter().map(|(_, r)| r).collect()
}

/// Whether a SYN held since `seen_ns` is due for its answer at `now_ns`.
pub fn due(seen_ns: u64, now_ns: u64) -> bool {
    now_ns.saturating_sub(seen_ns) >= HOLD_NS
}

/// The ICMP Destination Unreachable / Port Unreachable message (RFC 792) quoting `quote` (the
/// SYN's IPv4 header and first 8 bytes of TCP), checksum included.
pub fn port_unreachable(quote: &[u8; HELD_QUOTE_LEN]) -> [u8; MESSAGE_LEN] {
    let mut m = [0u8; MESSAGE_LEN];
    m[0] = icmp4::DEST_UNREACH;
    m[1] = icmp4::PORT_UNREACH;
    m[8..].copy_from_slice(quote);
    let c = csum::finish(csum::sum(&m, 0));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Answers the held SYNs older than [`HOLD_NS`] at `now_ns` (CLOCK_MONOTONIC) and removes them.
pub fn answer_at(layout: &PinLayout, now_ns: u64) -> Result<AnswerReport> {
    let name = layout::MAP_NAT64_HELD;
    let mut m: HashMap<MapData, HeldKey, HeldSyn> = pinned::open(layout, name)?;
    let held: Vec<(HeldKey, HeldSyn)> = m.iter().filter_map(std::result::Result::ok).collect();
    let mut r = AnswerReport::default();
    for (k, v) in held {
        if !due(v.seen_ns, now_ns) {
            r.waiting += 1;
            continue;
        }
        // Removed first: a SYN the pod's SYN completed in the meantime is not answered.
        if m.remove(&k).is_err() {
            continue;
        }
        match send(Ipv4Addr::from(k.t_addr), Ipv4Addr::from(k.z), &v.quote) {
            Ok(()) => r.answered += 1,
            Err(e) => {
                tracing::debug!(error = %e, pool = %Ipv4Addr::from(k.t_addr), "NAT64 port unreachable");
                r.failed += 1;
            }
        }
    }
    Ok(r)
}

/// [`answer_at`] now.
pub fn answer(layout: &PinLayout) -> Result<AnswerReport> {
    answer_at(layout, super::state::monotonic_ns())
}

/// Sends the Port Unreachable for `quote` from pool address `from` to `to` through a raw ICMP
/// socket (the kernel writes the IPv4 header and routes it like the node's own traffic).
fn send(from: Ipv4Addr, to: Ipv4Addr, quote: &[u8; HELD_QUOTE_LEN]) -> Result<()> {
    let msg = port_unreachable(quote);
    let io_err =
        |what| move |e: io::Error| Error::io(what, format!("raw ICMP socket from {from}"), e);
    // SAFETY: plain socket(2) call; the descriptor is owned from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if fd < 0 {
        return Err(io_err("opening")(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // A pool address need not be assigned to the node: bind it anyway (IP_FREEBIND).
    // SAFETY: valid descriptor, option value and length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_FREEBIND,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io_err("configuring")(io::Error::last_os_error()));
    }
    let sa = |a: Ipv4Addr| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    };
    let (src, dst) = (sa(from), sa(to));
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: valid descriptor and address.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const src).cast(), len) } != 0 {
        return Err(io_err("binding")(io::Error::last_os_error()));
    }
    // SAFETY: valid descriptor, buffer and address.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&raw const dst).cast(),
            len,
        )
    };
    if n < 0 {
        return Err(io_err("sending on")(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN 198.18.1.10:40000 → 198.18.0.1:61001 as the datapath stores it.
    fn quote() -> [u8; HELD_QUOTE_LEN] {
        let mut q = [0u8; HELD_QUOTE_LEN];
        q[..20].copy_from_slice(&[
            0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 198, 18, 1, 10, 198, 18, 0, 1,
        ]);
        q[20..28].copy_from_slice(&[0x9c, 0x40, 0xee, 0x49, 1, 2, 3, 4]);
        q
    }

    #[test]
    fn port_unreachable_quotes_the_syn_with_a_valid_checksum() {
        let q = quote();
        let m = port_unreachable(&q);
        assert_eq!((m[0], m[1]), (3, 3));
        assert_eq!(&m[4..8], &[0; 4]);
        assert_eq!(&m[8..], &q);
        // The one's complement sum over a message with its checksum is all ones.
        assert_eq!(csum::fold(csum::sum(&m, 0)), 0xffff);
        assert_ne!(port_unreachable(&[0; HELD_QUOTE_LEN])[2..4], m[2..4]);
    }

    #[test]
    fn answered_after_six_seconds_not_before() {
        let s = 1_000_000_000;
        assert!(!due(10 * s, 10 * s));
        assert!(!due(10 * s, 16 * s - 1));
        assert!(due(10 * s, 16 * s));
        assert!(!due(10 * s, 5 * s), "a clock behind the stamp is no age");
    }

    #[test]
    fn rows_oldest_first() {
        let k = |z: u8, port| HeldKey {
            t_addr: [198, 18, 0, 1],
            z: [198, 18, 1, z],
            t_port: 61001,
            z_port: port,
        };
        let v = |seen| HeldSyn {
            seen_ns: seen,
            ..HeldSyn::default()
        };
        let r = rows(
            &[(k(2, 2), v(3_000_000_000)), (k(1, 1), v(1_000_000_000))],
            4_000_000_000,
        );
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].peer, r[0].peer_port, r[0].age_ms),
            (Ipv4Addr::new(198, 18, 1, 1), 1, 3000)
        );
        assert_eq!((r[1].pool_port, r[1].age_ms), (61001, 1000));
    }
}
