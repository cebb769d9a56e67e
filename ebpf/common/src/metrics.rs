//! Datapath counters: one per-CPU array slot per (direction, reason).
//!
//! Programs never drop, pass or redirect a packet without counting why; userspace sums the
//! per-CPU values and exports them. Reasons are append-only: their numbers are part of the pinned
//! map's layout and must not change across upgrades.

/// Which side of the tc hook a packet was seen on.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    pub const fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// What a program did with a packet and why. The verdict follows from the reason.
///
/// Numbers are allocated by concern so features can grow without renumbering:
/// 0–15 generic, 16–63 service datapath, 64–111 NAT64, 112–127 spare.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not for sixlane (no frontend, no tracked flow): passed untouched.
    Pass = 0,
    /// Headers shorter than they claim or otherwise unparsable: passed to the kernel, which
    /// applies its own checks, and counted.
    Malformed = 1,
    /// Well-formed but beyond what the datapath parses (an extension-header chain longer than
    /// the programs walk): passed untouched and counted.
    Unsupported = 2,

    // 16–63: service datapath.
    /// A new flow to a service frontend: backend chosen, conntrack created, translated.
    SvcNew = 16,
    /// A packet of a tracked service flow translated towards its backend.
    SvcForward = 17,
    /// A reply translated back to the frontend (and client, for SNAT and hairpin flows).
    SvcReverse = 18,
    /// Hairpin: translated and sent straight back to the pod it came from.
    SvcHairpin = 19,
    /// No endpoint: answered with ICMPv6 destination unreachable (port unreachable).
    SvcNoBackend = 20,
    /// A `Local` traffic policy without a local endpoint: dropped, as kube-proxy does.
    SvcNoLocalBackend = 21,
    /// A new flow's conntrack entries could not be created.
    SvcCtFull = 22,
    /// No free SNAT port for a new external flow to a remote backend.
    SvcSnatExhausted = 23,
    /// An ICMPv6 error about a translated flow translated, inner packet included.
    SvcIcmpError = 24,
    /// An echo request to a frontend address answered.
    SvcEchoReply = 25,
    /// A packet rewrite (store, checksum or redirect helper) failed mid-way: dropped.
    SvcRewriteFailed = 26,
    /// A non-first fragment to a frontend whose first fragment was never seen: dropped.
    SvcFragment = 27,
    /// SCTP to a frontend whose port translation would need a CRC32c recomputation: dropped.
    SvcUnsupported = 28,
    /// No endpoint, but this CPU already sent its share of ICMPv6 errors (RFC 4443 §2.4 (f)
    /// rate limit): dropped without a reply.
    SvcRejectLimited = 29,
}

/// What the program returned to tc, as seen by an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    Redirect,
    Reply,
}

impl Verdict {
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::Redirect => "redirect",
            Verdict::Reply => "reply",
        }
    }
}

impl Reason {
    pub const ALL: [Reason; 17] = [
        Reason::Pass,
        Reason::Malformed,
        Reason::Unsupported,
        Reason::SvcNew,
        Reason::SvcForward,
        Reason::SvcReverse,
        Reason::SvcHairpin,
        Reason::SvcNoBackend,
        Reason::SvcNoLocalBackend,
        Reason::SvcCtFull,
        Reason::SvcSnatExhausted,
        Reason::SvcIcmpError,
        Reason::SvcEchoReply,
        Reason::SvcRewriteFailed,
        Reason::SvcFragment,
        Reason::SvcUnsupported,
        Reason::SvcRejectLimited,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Reason::Pass => "pass",
            Reason::Malformed => "malformed",
            Reason::Unsupported => "unsupported",
            Reason::SvcNew => "svc_new",
            Reason::SvcForward => "svc_forward",
            Reason::SvcReverse => "svc_reverse",
            Reason::SvcHairpin => "svc_hairpin",
            Reason::SvcNoBackend => "svc_no_backend",
            Reason::SvcNoLocalBackend => "svc_no_local_backend",
            Reason::SvcCtFull => "svc_ct_full",
            Reason::SvcSnatExhausted => "svc_snat_exhausted",
            Reason::SvcIcmpError => "svc_icmp_error",
            Reason::SvcEchoReply => "svc_echo_reply",
            Reason::SvcRewriteFailed => "svc_rewrite_failed",
            Reason::SvcFragment => "svc_fragment",
            Reason::SvcUnsupported => "svc_unsupported",
            Reason::SvcRejectLimited => "svc_reject_limited",
        }
    }

    pub const fn verdict(self) -> Verdict {
        match self {
            Reason::Pass
            | Reason::Malformed
            | Reason::Unsupported
            | Reason::SvcNew
            | Reason::SvcForward
            | Reason::SvcReverse
            | Reason::SvcIcmpError => Verdict::Pass,
            Reason::SvcHairpin => Verdict::Redirect,
            Reason::SvcNoBackend | Reason::SvcEchoReply => Verdict::Reply,
            Reason::SvcNoLocalBackend
            | Reason::SvcCtFull
            | Reason::SvcSnatExhausted
            | Reason::SvcRewriteFailed
            | Reason::SvcFragment
            | Reason::SvcUnsupported
            | Reason::SvcRejectLimited => Verdict::Drop,
        }
    }

    pub const fn from_u32(v: u32) -> Option<Reason> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u32 == v {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }
}

/// Slots reserved per direction. Larger than the number of reasons so reasons can be appended
/// without resizing (and so re-creating) the pinned map.
pub const REASON_SLOTS: u32 = 128;
/// Entries of the metrics map.
pub const METRICS_ENTRIES: u32 = REASON_SLOTS * Direction::ALL.len() as u32;

/// Index of the (direction, reason) counter in the metrics map.
#[inline(always)]
pub const fn slot(dir: Direction, reason: Reason) -> u32 {
    dir as u32 * REASON_SLOTS + reason as u32
}

/// One counter slot, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
crate::map_type!(Counter, 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_and_in_range() {
        let mut seen = [false; METRICS_ENTRIES as usize];
        for d in Direction::ALL {
            for r in Reason::ALL {
                let s = slot(d, r) as usize;
                assert!(s < METRICS_ENTRIES as usize);
                assert!(!seen[s], "slot {s} used twice");
                seen[s] = true;
            }
        }
        assert!((Reason::ALL.len() as u32) < REASON_SLOTS);
    }

    #[test]
    fn service_reasons_stay_in_their_range() {
        for r in Reason::ALL {
            let n = r as u32;
            assert_eq!(
                r.name().starts_with("svc_"),
                (16..64).contains(&n),
                "{}",
                r.name()
            );
        }
    }

    #[test]
    fn reason_numbers_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_u32(r as u32), Some(r));
        }
        assert_eq!(Reason::from_u32(REASON_SLOTS), None);
    }
}
