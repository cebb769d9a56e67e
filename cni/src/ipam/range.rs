//! IPv6 ranges and range sets with host-local's canonicalisation rules (`range.go`,
//! `range_set.go`): gateway defaults to network+1, `rangeStart` to network+1 (the gateway is skipped
//! while iterating), `rangeEnd` to the all-ones address, both inclusive and inside the subnet; no
//! host bits; `/127` and `/128` are too small; ranges must not overlap.

use std::{fmt, net::Ipv6Addr};

use ipnet::Ipv6Net;

/// One canonical range: `start..=end` inside `subnet`, with its gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub subnet: Ipv6Net,
    pub start: Ipv6Addr,
    pub end: Ipv6Addr,
    pub gateway: Ipv6Addr,
}

/// A range as written in the configuration (all but `subnet` optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSpec {
    pub subnet: Ipv6Net,
    pub start: Option<Ipv6Addr>,
    pub end: Option<Ipv6Addr>,
    pub gateway: Option<Ipv6Addr>,
}

pub fn next(ip: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(ip).wrapping_add(1))
}

impl Range {
    /// Canonicalises `spec`; the error says what is wrong (the caller names the field).
    pub fn canonicalize(spec: &RangeSpec) -> Result<Self, (&'static str, String)> {
        let subnet = spec.subnet;
        if subnet.prefix_len() > 126 {
            return Err((
                "subnet",
                format!("network {subnet} is too small to allocate from (at most /126)"),
            ));
        }
        if subnet.addr() != subnet.network() {
            return Err((
                "subnet",
                format!(
                    "network has host bits set: for a prefix length of {} the network address is {}",
                    subnet.prefix_len(),
                    subnet.network()
                ),
            ));
        }
        let gateway = spec.gateway.unwrap_or_else(|| next(subnet.network()));
        let start = match spec.start {
            Some(s) if !subnet.contains(&s) => {
                return Err(("rangeStart", format!("{s} is not in network {subnet}")));
            }
            Some(s) => s,
            None => next(subnet.network()),
        };
        let end = match spec.end {
            Some(e) if !subnet.contains(&e) => {
                return Err(("rangeEnd", format!("{e} is not in network {subnet}")));
            }
            Some(e) => e,
            None => subnet.broadcast(),
        };
        if start > end {
            return Err(("rangeStart", format!("{start} is after rangeEnd {end}")));
        }
        Ok(Self {
            subnet,
            start,
            end,
            gateway,
        })
    }

    /// Whether `ip` is an allocatable position of this range (gateway included, as in Go).
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        self.subnet.contains(&ip) && ip >= self.start && ip <= self.end
    }

    pub fn overlaps(&self, other: &Self) -> bool {
        self.contains(other.start)
            || self.contains(other.end)
            || other.contains(self.start)
            || other.contains(self.end)
    }

    /// Addresses that can be handed out (the gateway excluded when it lies in the range).
    pub fn capacity(&self) -> u128 {
        let n = (u128::from(self.end) - u128::from(self.start)).saturating_add(1);
        n - u128::from(self.contains(self.gateway))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Ranges whose addresses are handed out as one pool; each set yields one address per ADD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// Canonicalises every range and checks the set is non-empty and overlap-free. Errors carry
    /// the offending range's index and field.
    pub fn canonicalize(
        specs: &[RangeSpec],
    ) -> Result<Self, (Option<usize>, &'static str, String)> {
        if specs.is_empty() {
            return Err((None, "", "empty range set".into()));
        }
        let mut ranges = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            ranges.push(Range::canonicalize(s).map_err(|(f, m)| (Some(i), f, m))?);
        }
        for (i, a) in ranges.iter().enumerate() {
            for (j, b) in ranges.iter().enumerate().skip(i + 1) {
                if a.overlaps(b) {
                    return Err((
                        Some(j),
                        "subnet",
                        format!("ranges {a} (#{i}) and {b} (#{j}) overlap"),
                    ));
                }
            }
        }
        Ok(Self(ranges))
    }

    pub fn range_for(&self, ip: Ipv6Addr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn overlaps(&self, other: &Self) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    pub fn capacity(&self) -> u128 {
        self.0
            .iter()
            .fold(0u128, |acc, r| acc.saturating_add(r.capacity()))
    }

    /// host-local's round-robin iterator: starts after `last` when `last` is in the set, else at
    /// the first range's start; walks the ranges cyclically, skips gateways, and ends when it
    /// comes back to where it started.
    pub fn iter_from(&self, last: Option<Ipv6Addr>) -> RangeIter<'_> {
        let resume =
            last.and_then(|ip| self.0.iter().position(|r| r.contains(ip)).map(|i| (i, ip)));
        match resume {
            Some((idx, ip)) => RangeIter {
                set: self,
                idx,
                cur: Some(ip),
                start: None,
                done: false,
            },
            None => RangeIter {
                set: self,
                idx: 0,
                cur: None,
                start: None,
                done: false,
            },
        }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// See [`RangeSet::iter_from`]. Yields `(address, range)`.
pub struct RangeIter<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<Ipv6Addr>,
    start: Option<Ipv6Addr>,
    done: bool,
}

impl<'a> Iterator for RangeIter<'a> {
    type Item = (Ipv6Addr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let ranges = &self.set.0;
            let mut r = &ranges[self.idx];
            let ip = match self.cur {
                None => {
                    // First step without a resume point: rangeStart itself is a candidate.
                    self.start = Some(r.start);
                    r.start
                }
                Some(cur) => {
                    let nxt = if cur == r.end {
                        self.idx = (self.idx + 1) % ranges.len();
                        r = &ranges[self.idx];
                        r.start
                    } else {
                        next(cur)
                    };
                    match self.start {
                        None => self.start = Some(nxt),
                        Some(s) if s == nxt => {
                            self.done = true;
                            return None;
                        }
                        Some(_) => {}
                    }
                    nxt
                }
            };
            self.cur = Some(ip);
            if ip == r.gateway {
                continue;
            }
            return Some((ip, r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subnet: &str) -> RangeSpec {
        RangeSpec {
            subnet: subnet.parse().unwrap(),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_match_host_local() {
        let r = Range::canonicalize(&spec("fd00:10::/64")).unwrap();
        assert_eq!(r.gateway, ip("fd00:10::1"));
        assert_eq!(r.start, ip("fd00:10::1"));
        assert_eq!(r.end, ip("fd00:10::ffff:ffff:ffff:ffff"));
        let r = Range::canonicalize(&spec("fd00::/126")).unwrap();
        assert_eq!(r.capacity(), 2); // ::1 is the gateway; ::2, ::3 remain
    }

    #[test]
    fn invalid_ranges_name_the_field() {
        let cases = [
            (spec("fd00::/127"), "subnet", "too small"),
            (spec("fd00::/128"), "subnet", "too small"),
            (spec("fd00::1/64"), "subnet", "host bits"),
            (
                RangeSpec {
                    start: Some(ip("fd01::5")),
                    ..spec("fd00::/64")
                },
                "rangeStart",
                "not in network",
            ),
            (
                RangeSpec {
                    end: Some(ip("fd01::5")),
                    ..spec("fd00::/64")
                },
                "rangeEnd",
                "not in network",
            ),
            (
                RangeSpec {
                    start: Some(ip("fd00::9")),
                    end: Some(ip("fd00::5")),
                    ..spec("fd00::/64")
                },
                "rangeStart",
                "after",
            ),
        ];
        for (s, field, msg) in cases {
            let (f, m) = Range::canonicalize(&s).unwrap_err();
            assert_eq!(f, field, "{s:?}");
            assert!(m.contains(msg), "{m}");
        }
        let (idx, _, m) =
            RangeSet::canonicalize(&[spec("fd00::/64"), spec("fd00::/80")]).unwrap_err();
        assert_eq!(idx, Some(1));
        assert!(m.contains("overlap"));
        assert!(RangeSet::canonicalize(&[]).is_err());
    }

    #[test]
    fn iteration_is_round_robin_and_wraps() {
        let set = RangeSet::canonicalize(&[
            RangeSpec {
                start: Some(ip("fd00::1")),
                end: Some(ip("fd00::3")),
                ..spec("fd00::/64")
            },
            RangeSpec {
                start: Some(ip("fd01::10")),
                end: Some(ip("fd01::11")),
                ..spec("fd01::/64")
            },
        ])
        .unwrap();
        let all: Vec<Ipv6Addr> = set.iter_from(None).map(|(a, _)| a).collect();
        // fd00::1 is the gateway of the first range: skipped.
        assert_eq!(
            all,
            [ip("fd00::2"), ip("fd00::3"), ip("fd01::10"), ip("fd01::11")]
        );
        let from: Vec<Ipv6Addr> = set.iter_from(Some(ip("fd00::3"))).map(|(a, _)| a).collect();
        assert_eq!(
            from,
            [ip("fd01::10"), ip("fd01::11"), ip("fd00::2"), ip("fd00::3")]
        );
        // A last-reserved address outside the set restarts at the first range.
        let restart: Vec<Ipv6Addr> = set.iter_from(Some(ip("fd99::1"))).map(|(a, _)| a).collect();
        assert_eq!(restart, all);
        assert_eq!(set.capacity(), 4);
    }
}
