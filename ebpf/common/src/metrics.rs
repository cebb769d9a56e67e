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
/// 0–15 generic, 16–63 service datapath, 64–111 NAT64, 112–127 Neighbor Discovery.
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
    /// A stage program the entry point tail-calls is not installed (a datapath half-loaded by
    /// an interrupted upgrade): the packet passed untouched.
    StageMissing = 3,
    /// A pod sent from an address that is not its own (nor link-local): dropped at the pod's
    /// veth, before services, NAT64 and forwarding (`source`).
    SrcSpoofed = 4,

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
    /// A packet of a tracked service flow translated and delivered straight into the local pod
    /// at the other end (`bpf_redirect_peer`: no node forwarding, no veth egress hop).
    SvcPeer = 30,
    // NAT64 (64–111). Redirect: translated and forwarded. Reply: an ICMP error was sent back
    // in place of the packet. Drop: discarded.
    /// IPv6 → IPv4 translated and forwarded out of the IPv4 side.
    Nat64Out = 64,
    /// IPv4 → IPv6 translated and forwarded towards the pod.
    Nat64In = 65,
    /// ICMPv6 error translated to ICMPv4, inner packet included.
    Nat64IcmpErrOut = 66,
    /// ICMPv4 error translated to ICMPv6, inner packet included.
    Nat64IcmpErrIn = 67,
    /// Source outside the pod CIDRs allowed to use NAT64 (no open relay).
    Nat64SrcDenied = 68,
    /// Well-Known Prefix with a non-global IPv4 destination (RFC 6052 §3.1): ICMPv6
    /// administratively prohibited sent.
    Nat64DstRefused = 69,
    /// Destination in the prefix but not a canonical RFC 6052 address (u-octet or suffix set).
    Nat64BadAddr = 70,
    /// No free IPv4 address and port for a new binding: ICMPv6 address unreachable sent.
    Nat64PoolExhausted = 71,
    /// IPv4 packet to a NAT64 port without a session (or binding, with endpoint-independent
    /// filtering); or a pod's packet hairpinned to a pool port nothing holds.
    Nat64Unsolicited = 72,
    /// TCP segment other than a SYN from the IPv6 side without a session (RFC 6146).
    Nat64NoSession = 73,
    /// Hop limit exhausted at the translator: ICMPv6 Time Exceeded sent.
    Nat64HopLimit = 74,
    /// TTL exhausted at the translator: ICMPv4 Time Exceeded sent.
    Nat64TtlExceeded = 75,
    /// Translated packet larger than the next hop's MTU: ICMPv6 Packet Too Big or ICMPv4
    /// Fragmentation Needed sent.
    Nat64TooBig = 76,
    /// Fragment that cannot be translated (see docs/nat64.md, "Fragments").
    Nat64Fragment = 77,
    /// IPv6 extension headers the translator does not carry over.
    Nat64ExtHeader = 78,
    /// UDP checksum unusable: zero over IPv6, or zero over IPv4 on a fragment or a datagram too
    /// long to checksum in the datapath.
    Nat64UdpChecksum = 79,
    /// ICMP type/code RFC 7915 says to drop, or an ICMP query other than echo.
    Nat64IcmpDropped = 80,
    /// ICMP error whose inner packet matches no session.
    Nat64IcmpNoSession = 81,
    /// No route for the translated packet.
    Nat64NoRoute = 82,
    /// Too short or inconsistent to translate.
    Nat64Malformed = 83,
    /// A kernel helper failed while rewriting the packet.
    Nat64Error = 84,
    /// Transport protocol other than TCP, UDP and ICMP.
    Nat64Proto = 85,
    /// IPv4 → IPv6 translated and delivered straight into the local pod that opened the
    /// session (`bpf_redirect_peer`: no veth egress hop).
    Nat64InPeer = 86,
    /// IPv4 → IPv6: the first packet of a session an IPv4 host opened through a static binding
    /// (a TCP SYN, a UDP datagram, an echo request), translated and sent to the pod.
    Nat64InStatic = 87,
    /// An IPv4 SYN to the dynamic range without a session, held for a simultaneous open
    /// (`nat64.unsolicitedTcp: hold`, RFC 6146 §3.5.2.2) and dropped: answered with ICMP Port
    /// Unreachable by the agent unless the pod's SYN comes within 6 s. Retransmissions of a
    /// held SYN count here too.
    Nat64SynHeld = 88,
    /// An IPv4 SYN that would be held, but the held SYN table is full: dropped unanswered.
    Nat64SynHoldFull = 89,
    /// IPv6 → IPv4: a pod's SYN that met a held IPv4 SYN of the same tuple (a simultaneous
    /// open), translated and sent; the held SYN is forgotten.
    Nat64SimultaneousOpen = 90,
    /// Hairpinned (RFC 6146 §3.8): a packet to Pref64::<pool address> and a port of another
    /// session or a static binding, translated through both sessions and delivered to the pod
    /// behind that port without leaving IPv6 (also ICMPv6 errors about such a flow).
    Nat64Hairpin = 91,
    /// An ICMPv6 echo request to Pref64::<pool address> answered by the translator for the
    /// node (the IPv4 stack owning that address would).
    Nat64HairpinEcho = 92,

    // 112–127: Neighbor Discovery on the uplink. Invalid solicitations (RFC 4861 §7.1.1) are
    // passed to the kernel untouched, which discards them too; never answered.
    /// A Neighbor Solicitation for an owned address answered with a solicited advertisement.
    NdpAnswered = 112,
    /// A Duplicate Address Detection probe for an owned address answered (to all-nodes).
    NdpDadDefended = 113,
    /// A valid solicitation for an address this node does not own: the kernel's business.
    NdpNotOwned = 114,
    /// Invalid: hop limit other than 255 (it did not come from this link).
    NdpBadHopLimit = 115,
    /// Invalid: ICMPv6 code other than 0.
    NdpBadCode = 116,
    /// Invalid: ICMPv6 checksum wrong.
    NdpBadChecksum = 117,
    /// Invalid: shorter than a solicitation (24 bytes).
    NdpTooShort = 118,
    /// Invalid: the target is a multicast address.
    NdpMulticastTarget = 119,
    /// Invalid: an option of length 0, or running past the end of the message.
    NdpBadOption = 120,
    /// Invalid: unspecified source (DAD) to something other than a solicited-node group.
    NdpDadNotSolicitedNode = 121,
    /// Invalid: unspecified source (DAD) with a source link-layer address option.
    NdpDadSourceLla = 122,
    /// The advertisement could not be written (a helper failed mid-way): dropped.
    NdpFailed = 123,
    /// A solicitation for a LoadBalancer IP this node held while its agent's lease ran: the
    /// agent stopped renewing it (crashed, stopped), so another node answers now; not answered.
    NdpLapsed = 124,
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
    pub const ALL: [Reason; 62] = [
        Reason::Pass,
        Reason::Malformed,
        Reason::Unsupported,
        Reason::StageMissing,
        Reason::SrcSpoofed,
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
        Reason::SvcPeer,
        Reason::Nat64Out,
        Reason::Nat64In,
        Reason::Nat64IcmpErrOut,
        Reason::Nat64IcmpErrIn,
        Reason::Nat64SrcDenied,
        Reason::Nat64DstRefused,
        Reason::Nat64BadAddr,
        Reason::Nat64PoolExhausted,
        Reason::Nat64Unsolicited,
        Reason::Nat64NoSession,
        Reason::Nat64HopLimit,
        Reason::Nat64TtlExceeded,
        Reason::Nat64TooBig,
        Reason::Nat64Fragment,
        Reason::Nat64ExtHeader,
        Reason::Nat64UdpChecksum,
        Reason::Nat64IcmpDropped,
        Reason::Nat64IcmpNoSession,
        Reason::Nat64NoRoute,
        Reason::Nat64Malformed,
        Reason::Nat64Error,
        Reason::Nat64Proto,
        Reason::Nat64InPeer,
        Reason::Nat64InStatic,
        Reason::Nat64SynHeld,
        Reason::Nat64SynHoldFull,
        Reason::Nat64SimultaneousOpen,
        Reason::Nat64Hairpin,
        Reason::Nat64HairpinEcho,
        Reason::NdpAnswered,
        Reason::NdpDadDefended,
        Reason::NdpNotOwned,
        Reason::NdpBadHopLimit,
        Reason::NdpBadCode,
        Reason::NdpBadChecksum,
        Reason::NdpTooShort,
        Reason::NdpMulticastTarget,
        Reason::NdpBadOption,
        Reason::NdpDadNotSolicitedNode,
        Reason::NdpDadSourceLla,
        Reason::NdpFailed,
        Reason::NdpLapsed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Reason::Pass => "pass",
            Reason::Malformed => "malformed",
            Reason::Unsupported => "unsupported",
            Reason::StageMissing => "stage_missing",
            Reason::SrcSpoofed => "src_spoofed",
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
            Reason::SvcPeer => "svc_peer",
            Reason::Nat64Out => "nat64_out",
            Reason::Nat64In => "nat64_in",
            Reason::Nat64IcmpErrOut => "nat64_icmp_err_out",
            Reason::Nat64IcmpErrIn => "nat64_icmp_err_in",
            Reason::Nat64SrcDenied => "nat64_src_denied",
            Reason::Nat64DstRefused => "nat64_dst_refused",
            Reason::Nat64BadAddr => "nat64_bad_addr",
            Reason::Nat64PoolExhausted => "nat64_pool_exhausted",
            Reason::Nat64Unsolicited => "nat64_unsolicited",
            Reason::Nat64NoSession => "nat64_no_session",
            Reason::Nat64HopLimit => "nat64_hop_limit",
            Reason::Nat64TtlExceeded => "nat64_ttl_exceeded",
            Reason::Nat64TooBig => "nat64_too_big",
            Reason::Nat64Fragment => "nat64_fragment",
            Reason::Nat64ExtHeader => "nat64_ext_header",
            Reason::Nat64UdpChecksum => "nat64_udp_checksum",
            Reason::Nat64IcmpDropped => "nat64_icmp_dropped",
            Reason::Nat64IcmpNoSession => "nat64_icmp_no_session",
            Reason::Nat64NoRoute => "nat64_no_route",
            Reason::Nat64Malformed => "nat64_malformed",
            Reason::Nat64Error => "nat64_error",
            Reason::Nat64Proto => "nat64_proto",
            Reason::Nat64InPeer => "nat64_in_peer",
            Reason::Nat64InStatic => "nat64_in_static",
            Reason::Nat64SynHeld => "nat64_syn_held",
            Reason::Nat64SynHoldFull => "nat64_syn_hold_full",
            Reason::Nat64SimultaneousOpen => "nat64_simultaneous_open",
            Reason::Nat64Hairpin => "nat64_hairpin",
            Reason::Nat64HairpinEcho => "nat64_hairpin_echo",
            Reason::NdpAnswered => "ndp_answered",
            Reason::NdpDadDefended => "ndp_dad_defended",
            Reason::NdpNotOwned => "ndp_not_owned",
            Reason::NdpBadHopLimit => "ndp_bad_hop_limit",
            Reason::NdpBadCode => "ndp_bad_code",
            Reason::NdpBadChecksum => "ndp_bad_checksum",
            Reason::NdpTooShort => "ndp_too_short",
            Reason::NdpMulticastTarget => "ndp_multicast_target",
            Reason::NdpBadOption => "ndp_bad_option",
            Reason::NdpDadNotSolicitedNode => "ndp_dad_not_solicited_node",
            Reason::NdpDadSourceLla => "ndp_dad_source_lla",
            Reason::NdpFailed => "ndp_failed",
            Reason::NdpLapsed => "ndp_lapsed",
        }
    }

    pub const fn verdict(self) -> Verdict {
        match self {
            Reason::Pass
            | Reason::Malformed
            | Reason::Unsupported
            | Reason::StageMissing
            | Reason::SvcNew
            | Reason::SvcForward
            | Reason::SvcReverse
            | Reason::SvcIcmpError
            | Reason::NdpNotOwned
            | Reason::NdpBadHopLimit
            | Reason::NdpBadCode
            | Reason::NdpBadChecksum
            | Reason::NdpTooShort
            | Reason::NdpMulticastTarget
            | Reason::NdpBadOption
            | Reason::NdpDadNotSolicitedNode
            | Reason::NdpDadSourceLla
            | Reason::NdpLapsed => Verdict::Pass,
            Reason::NdpAnswered | Reason::NdpDadDefended => Verdict::Reply,
            Reason::SvcHairpin | Reason::SvcPeer => Verdict::Redirect,
            Reason::SvcNoBackend | Reason::SvcEchoReply => Verdict::Reply,
            Reason::SvcNoLocalBackend
            | Reason::SvcCtFull
            | Reason::SvcSnatExhausted
            | Reason::SvcRewriteFailed
            | Reason::SvcFragment
            | Reason::SvcUnsupported
            | Reason::SvcRejectLimited => Verdict::Drop,
            Reason::Nat64Out
            | Reason::Nat64In
            | Reason::Nat64IcmpErrOut
            | Reason::Nat64IcmpErrIn
            | Reason::Nat64InPeer
            | Reason::Nat64InStatic
            | Reason::Nat64SimultaneousOpen
            | Reason::Nat64Hairpin => Verdict::Redirect,
            Reason::Nat64DstRefused
            | Reason::Nat64PoolExhausted
            | Reason::Nat64HopLimit
            | Reason::Nat64TtlExceeded
            | Reason::Nat64TooBig
            | Reason::Nat64HairpinEcho => Verdict::Reply,
            Reason::Nat64SrcDenied
            | Reason::Nat64BadAddr
            | Reason::Nat64Unsolicited
            | Reason::Nat64SynHeld
            | Reason::Nat64SynHoldFull
            | Reason::Nat64NoSession
            | Reason::Nat64Fragment
            | Reason::Nat64ExtHeader
            | Reason::Nat64UdpChecksum
            | Reason::Nat64IcmpDropped
            | Reason::Nat64IcmpNoSession
            | Reason::Nat64NoRoute
            | Reason::Nat64Malformed
            | Reason::Nat64Error
            | Reason::Nat64Proto
            | Reason::NdpFailed
            | Reason::SrcSpoofed => Verdict::Drop,
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
    slot_code(dir, reason as u32)
}

/// [`slot`] for a reason's number (`Reason as u32`), as the datapath carries it in verdicts.
#[inline(always)]
pub const fn slot_code(dir: Direction, code: u32) -> u32 {
    dir as u32 * REASON_SLOTS + code
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
    fn nat64_reasons_stay_in_their_range_with_unique_names() {
        let mut names = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(names.insert(r.name()), "{} twice", r.name());
            if r.name().starts_with("nat64_") {
                assert!((64..=111).contains(&(r as u32)), "{r:?}");
            }
        }
    }

    #[test]
    fn ndp_reasons_stay_in_their_range() {
        for r in Reason::ALL {
            assert_eq!(
                r.name().starts_with("ndp_"),
                (112..128).contains(&(r as u32)),
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
