//! TCP session states of RFC 6146 §3.5.2 (the parts a NAT64 that drops externally initiated
//! connections needs) and which timeout applies in each.

use crate::net::tcp_flags as flags;

/// Session state, stored as a `u8` in the session entry.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    /// SYN seen from the IPv6 side, no answer yet.
    V6Init = 1,
    Established = 2,
    /// FIN seen from the IPv6 side only.
    V6FinRcv = 3,
    /// FIN seen from the IPv4 side only.
    V4FinRcv = 4,
    /// FINs seen from both sides.
    V6FinV4Fin = 5,
    /// RST seen (or the connection is otherwise winding down).
    Trans = 6,
    /// SYN seen from the IPv4 side, no answer yet: a connection opened through a static
    /// binding.
    V4Init = 7,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Closed,
        State::V6Init,
        State::Established,
        State::V6FinRcv,
        State::V4FinRcv,
        State::V6FinV4Fin,
        State::Trans,
        State::V4Init,
    ];

    #[inline(always)]
    pub const fn from_u8(v: u8) -> State {
        match v {
            1 => State::V6Init,
            2 => State::Established,
            3 => State::V6FinRcv,
            4 => State::V4FinRcv,
            5 => State::V6FinV4Fin,
            6 => State::Trans,
            7 => State::V4Init,
            _ => State::Closed,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::V6Init => "v6-init",
            State::Established => "established",
            State::V6FinRcv => "v6-fin-rcv",
            State::V4FinRcv => "v4-fin-rcv",
            State::V6FinV4Fin => "v6-fin-v4-fin",
            State::Trans => "trans",
            State::V4Init => "v4-init",
        }
    }

    /// Whether the session lives by the long "established" timeout (2 h by default) rather
    /// than the transitory one (4 min). Half-closed connections keep the long one (RFC 6146:
    /// the FIN-received states do not change the lifetime).
    #[inline(always)]
    pub const fn is_established(self) -> bool {
        matches!(self, State::Established | State::V6FinRcv | State::V4FinRcv)
    }
}

/// Which side a segment came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    V6,
    V4,
}

/// The state after a segment with `tcp_flags` from `side`.
#[inline(always)]
pub const fn next(state: State, side: Side, tcp_flags: u8) -> State {
    let syn = tcp_flags & flags::SYN != 0;
    let fin = tcp_flags & flags::FIN != 0;
    let rst = tcp_flags & flags::RST != 0;
    let ack = tcp_flags & flags::ACK != 0;
    if rst {
        // Any RST: wind down, but keep the mapping for the transitory time so a late segment
        // of either side still finds it.
        return match state {
            State::Closed => State::Closed,
            _ => State::Trans,
        };
    }
    match (state, side) {
        // A new connection (or a SYN reusing the tuple of one that ended, the way a client
        // reuses a port still in TIME_WAIT).
        (State::Closed | State::V6FinV4Fin | State::Trans, Side::V6) if syn => State::V6Init,
        (State::V6Init, Side::V4) if syn => State::Established,
        // An IPv4 host opening (a SYN without ACK: never an answer), which only a static
        // binding lets reach the pod; the pod's SYN-ACK establishes it.
        (State::Closed | State::V6FinV4Fin | State::Trans, Side::V4) if syn && !ack => {
            State::V4Init
        }
        (State::V4Init, Side::V6) if syn => State::Established,
        // RFC 6146: a non-RST segment revives a session in TRANS.
        (State::Trans, _) => State::Established,
        (State::Established, Side::V6) if fin => State::V6FinRcv,
        (State::Established, Side::V4) if fin => State::V4FinRcv,
        (State::V6FinRcv, Side::V4) if fin => State::V6FinV4Fin,
        (State::V4FinRcv, Side::V6) if fin => State::V6FinV4Fin,
        (s, _) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flags::*;

    fn run(steps: &[(Side, u8)]) -> State {
        steps
            .iter()
            .fold(State::Closed, |s, (side, f)| next(s, *side, *f))
    }

    #[test]
    fn handshake_and_orderly_close() {
        use Side::*;
        assert_eq!(run(&[(V6, SYN)]), State::V6Init);
        assert_eq!(run(&[(V6, SYN), (V4, SYN | ACK)]), State::Established);
        let est = [(V6, SYN), (V4, SYN | ACK), (V6, ACK)];
        assert_eq!(run(&est), State::Established);
        let mut c = est.to_vec();
        c.push((V6, FIN | ACK));
        assert_eq!(run(&c), State::V6FinRcv);
        c.push((V4, ACK));
        assert_eq!(run(&c), State::V6FinRcv);
        c.push((V4, FIN | ACK));
        assert_eq!(run(&c), State::V6FinV4Fin);
        // The server closing first.
        let mut s = est.to_vec();
        s.push((V4, FIN | ACK));
        assert_eq!(run(&s), State::V4FinRcv);
        s.push((V6, FIN | ACK));
        assert_eq!(run(&s), State::V6FinV4Fin);
    }

    #[test]
    fn reset_and_reuse() {
        use Side::*;
        let est = [(V6, SYN), (V4, SYN | ACK), (V6, ACK)];
        let mut r = est.to_vec();
        r.push((V4, RST));
        assert_eq!(run(&r), State::Trans);
        // A late ACK revives it (RFC 6146 TRANS rule).
        r.push((V6, ACK));
        assert_eq!(run(&r), State::Established);
        // A fresh SYN on a finished tuple starts over.
        let mut f = est.to_vec();
        f.extend([(V6, FIN), (V4, FIN | ACK), (V6, SYN)]);
        assert_eq!(run(&f), State::V6Init);
        // RST on nothing stays nothing; a v4 SYN-ACK on nothing is no opening.
        assert_eq!(run(&[(V6, RST)]), State::Closed);
        assert_eq!(run(&[(V4, SYN | ACK)]), State::Closed);
    }

    #[test]
    fn opened_from_the_ipv4_side() {
        use Side::*;
        // Through a static binding: the IPv4 client's SYN, the pod's SYN-ACK.
        assert_eq!(run(&[(V4, SYN)]), State::V4Init);
        assert_eq!(run(&[(V4, SYN), (V4, SYN)]), State::V4Init);
        let est = [(V4, SYN), (V6, SYN | ACK), (V4, ACK)];
        assert_eq!(run(&est), State::Established);
        let mut c = est.to_vec();
        c.extend([(V4, FIN | ACK), (V6, FIN | ACK)]);
        assert_eq!(run(&c), State::V6FinV4Fin);
        // The client reusing its port (TIME_WAIT) opens again.
        c.push((V4, SYN));
        assert_eq!(run(&c), State::V4Init);
        assert!(!State::V4Init.is_established());
    }

    #[test]
    fn timeouts_by_state() {
        let long: [State; 3] = [State::Established, State::V6FinRcv, State::V4FinRcv];
        for s in State::ALL {
            assert_eq!(s.is_established(), long.contains(&s), "{s:?}");
            assert_eq!(State::from_u8(s as u8), s);
            assert!(!s.name().is_empty());
        }
        assert_eq!(State::from_u8(200), State::Closed);
    }

    /// Every (state, side, flags) combination lands on a defined state, and nothing but a SYN
    /// from the IPv6 side or a SYN without ACK from the IPv4 side leaves Closed.
    #[test]
    fn exhaustive_transitions_are_closed() {
        for s in State::ALL {
            for side in [Side::V6, Side::V4] {
                for f in 0..=u8::MAX {
                    let n = next(s, side, f);
                    assert!(State::ALL.contains(&n));
                    if s == State::Closed && n != State::Closed {
                        let opening = match side {
                            Side::V6 => f & (SYN | RST) == SYN,
                            Side::V4 => f & (SYN | RST | ACK) == SYN,
                        };
                        assert!(opening, "{side:?} {f:#x}");
                    }
                }
            }
        }
    }
}
