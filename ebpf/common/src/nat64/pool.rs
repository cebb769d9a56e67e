//! Choosing the IPv4 transport address (T, t) for a new binding: RFC 6056 algorithm 3 style, a
//! keyed hash picks where to start and successive candidates are probed until a free one is
//! found. The address is chosen from the pod address alone ("paired" pooling, RFC 6146 §3.5.1.1:
//! one pod keeps one IPv4 address while it has free ports), the port from the pod's transport
//! address.

use super::{
    hash::{fmix, hash},
    maps::PortRange,
};

/// How many candidates a new binding probes before the pool counts as exhausted (Jool's
/// `max-iterations` idea: bounded work per packet under attack or exhaustion).
pub const MAX_PROBES: u32 = 64;

/// The first candidate index for pod transport address (X', x): the pod's own address slot,
/// then a port position from the whole transport address.
#[inline(always)]
pub fn start(
    key: &[u32; 4],
    n_addrs: u32,
    range: &PortRange,
    addr: &[u8; 16],
    port: u16,
    proto: u8,
) -> u32 {
    let len = range.len();
    if n_addrs == 0 || len == 0 {
        return 0;
    }
    let a = hash(key, addr, 0, 0) % n_addrs;
    let p = hash(key, addr, port, proto) % len;
    a * len + p
}

/// Candidates of a large pool that stay on the pod's own address before the rest move to the
/// next address (with more than one).
pub const PAIRED_PROBES: u32 = MAX_PROBES / 2;

/// Candidate number `i` from `start`: (pool address index, port). `None` for an empty pool or
/// range.
///
/// - A pool of at most [`MAX_PROBES`] candidates is walked in order from `start`: every
///   candidate once.
/// - In a larger one, candidate 0 is `start` and the others are spread over the whole range by a
///   hash of `start` and `i` (the first [`PAIRED_PROBES`] on the pod's address): consecutive
///   ports would probe into the runs of taken ports that consecutive probing itself builds, and
///   from about 70% occupancy 64 probes would find no free port a few times in a thousand (29%
///   of attempts at 90%); spread ones fail about as often as occupancy to the 64th power.
#[inline(always)]
pub fn candidate(start: u32, i: u32, n_addrs: u32, range: &PortRange) -> Option<(u32, u16)> {
    let len = range.len();
    let total = n_addrs.wrapping_mul(len);
    if n_addrs == 0 || len == 0 || total == 0 {
        return None;
    }
    if total <= MAX_PROBES {
        let idx = start.wrapping_add(i) % total;
        return Some((idx / len, (u32::from(range.lo) + idx % len) as u16));
    }
    let start = start % total;
    let (a, p) = (start / len, start % len);
    if i == 0 {
        return Some((a, (u32::from(range.lo) + p) as u16));
    }
    // The next address for the second half; wrapped by a comparison, not `%`: the compiler
    // would take `x % n < n` as the bound of the caller's pool-array index and drop the check
    // the eBPF verifier needs to see.
    let mut a = a + u32::from(i >= PAIRED_PROBES);
    if a >= n_addrs {
        a -= n_addrs;
    }
    let mut p = p + fmix(start ^ i.wrapping_mul(0x9e37_79b9)) % len;
    if p >= len {
        p -= len;
    }
    Some((a, (u32::from(range.lo) + p) as u16))
}

/// Probes to make: every candidate for a small pool, at most [`MAX_PROBES`].
#[inline(always)]
pub fn probes(n_addrs: u32, range: &PortRange) -> u32 {
    let total = n_addrs.saturating_mul(range.len());
    if total < MAX_PROBES {
        total
    } else {
        MAX_PROBES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::HashSet, vec, vec::Vec};

    const KEY: [u32; 4] = [1, 2, 3, 4];
    /// The default NAT64 range: 64,512 ports.
    const WIDE: PortRange = PortRange {
        lo: 1024,
        hi: 65535,
    };

    #[test]
    fn candidates_cover_a_small_pool_exactly_once() {
        let r = PortRange {
            lo: 40000,
            hi: 40003,
        };
        let s = start(&KEY, 2, &r, &[0xfd; 16], 1234, 6);
        let n = probes(2, &r);
        assert_eq!(n, 8);
        let all: HashSet<_> = (0..n).map(|i| candidate(s, i, 2, &r).unwrap()).collect();
        assert_eq!(all.len(), 8);
        for (a, p) in all {
            assert!(a < 2 && r.contains(p));
        }
    }

    #[test]
    fn one_pod_stays_on_one_address_and_ports_spread() {
        let r = WIDE;
        let pod = [0xfd, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a];
        let mut addrs = HashSet::new();
        let mut ports = HashSet::new();
        for x in 0..200u16 {
            let s = start(&KEY, 4, &r, &pod, 30000 + x, 6);
            let (a, p) = candidate(s, 0, 4, &r).unwrap();
            addrs.insert(a);
            ports.insert(p);
        }
        assert_eq!(addrs.len(), 1, "paired pooling");
        assert!(ports.len() > 190, "ports spread: {}", ports.len());
        // Another key gives other ports (the mapping is not predictable without the key).
        let s1 = start(&KEY, 1, &r, &pod, 5000, 6);
        let s2 = start(&[9, 9, 9, 9], 1, &r, &pod, 5000, 6);
        assert_ne!(s1, s2);
    }

    #[test]
    fn empty_pools_give_nothing() {
        let r = PortRange { lo: 10, hi: 9 };
        assert_eq!(candidate(0, 0, 1, &r), None);
        assert_eq!(candidate(0, 0, 0, &PortRange { lo: 1, hi: 2 }), None);
        assert_eq!(probes(0, &PortRange { lo: 1, hi: 2 }), 0);
        assert_eq!(probes(16, &PortRange { lo: 0, hi: 65535 }), MAX_PROBES);
        // The full 16-bit range: the last port is a start, and no candidate leaves the range.
        let full = PortRange { lo: 0, hi: 65535 };
        assert_eq!(candidate(65535, 0, 1, &full), Some((0, 65535)));
        for i in 0..MAX_PROBES {
            assert_eq!(candidate(65535, i, 1, &full).map(|c| c.0), Some(0));
        }
    }

    #[test]
    fn large_pools_probe_spread_ports_on_the_pods_address_first() {
        let r = WIDE;
        let s = start(&KEY, 3, &r, &[0xfd; 16], 40000, 6);
        let (a0, _) = candidate(s, 0, 3, &r).unwrap();
        let c: Vec<_> = (0..MAX_PROBES)
            .map(|i| candidate(s, i, 3, &r).unwrap())
            .collect();
        assert!(c[..PAIRED_PROBES as usize].iter().all(|&(a, _)| a == a0));
        assert!(
            c[PAIRED_PROBES as usize..]
                .iter()
                .all(|&(a, _)| a == (a0 + 1) % 3)
        );
        assert!(c.iter().all(|&(_, p)| r.contains(p)));
        let distinct: HashSet<_> = c.iter().collect();
        assert!(distinct.len() >= 60, "{} distinct", distinct.len());
        // Not a run of neighbours: the probes span most of the range.
        let (lo, hi) = c
            .iter()
            .fold((u16::MAX, 0), |(l, h), &(_, p)| (l.min(p), h.max(p)));
        assert!(hi - lo > 32768, "{lo}..{hi}");
        // One address: every probe on it.
        let s1 = start(&KEY, 1, &r, &[0xfd; 16], 40000, 6);
        assert!((0..MAX_PROBES).all(|i| candidate(s1, i, 1, &r).unwrap().0 == 0));
    }

    /// Fills one address's 64,512 ports the way the datapath does (first free candidate of up
    /// to `MAX_PROBES`, pods' ports in the order a client's kernel hands them out): no binding
    /// is refused before 85% of the ports are taken (consecutive probing refused 212).
    #[test]
    fn a_pool_fills_to_85_percent_without_refusals() {
        let r = WIDE;
        let len = r.len() as usize;
        let mut used = vec![false; len];
        let (mut taken, mut refused_below_85) = (0usize, 0);
        let pods: [[u8; 16]; 4] = core::array::from_fn(|k| {
            let mut a = [0u8; 16];
            a[0] = 0xfd;
            a[15] = k as u8 + 2;
            a
        });
        'fill: for port in (1024u16..=65535)
            .step_by(2)
            .chain((1025u16..=65535).step_by(2))
        {
            for pod in &pods {
                if taken * 100 >= len * 85 {
                    break 'fill;
                }
                let s = start(&KEY, 1, &r, pod, port, 6);
                let free = (0..probes(1, &r))
                    .map(|i| candidate(s, i, 1, &r).unwrap().1)
                    .find(|&p| !used[usize::from(p - r.lo)]);
                match free {
                    Some(p) => {
                        used[usize::from(p - r.lo)] = true;
                        taken += 1;
                    }
                    None => refused_below_85 += 1,
                }
            }
        }
        assert!(taken * 100 >= len * 85);
        assert_eq!(refused_below_85, 0);
    }
}
