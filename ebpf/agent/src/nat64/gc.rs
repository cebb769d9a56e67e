//! Session and binding garbage collection (RFC 6146 §3.5 lifetimes). The datapath only stamps
//! `last_seen_ns`; this pass deletes sessions idle longer than their timeout (by protocol and
//! TCP state, from `Nat64Config::timeouts`), then bindings no session uses any more. Entries of
//! pool addresses that left the configuration go too.
//!
//! The decision ([`plan`]) is a pure function of the table contents, the configuration and the
//! time, tested without a kernel; [`collect`] reads the pinned maps, plans and deletes.

use std::collections::HashSet;

use sixlane_common::nat64::maps::{Bib, BibKey, DIR_IN, DIR_OUT, Session, SessionKey};

use super::{
    config::{Mode, Nat64Config},
    state,
};
use crate::{PinLayout, Result};

/// A binding younger than this is kept even without sessions: the datapath writes the binding
/// a moment before its first session.
pub const BIND_GRACE_NS: u64 = 10_000_000_000;

/// What a collection pass found and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Sessions (pairs of entries) kept.
    pub sessions: usize,
    /// Sessions removed for idleness (or because their pool address left the configuration).
    pub sessions_expired: usize,
    /// Half-sessions (one direction's entry without the other) removed.
    pub orphans: usize,
    /// Bindings kept.
    pub bindings: usize,
    /// Bindings removed (no session left).
    pub bindings_removed: usize,
}

/// Entries to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub sessions: Vec<SessionKey>,
    pub bindings: Vec<BibKey>,
    pub report: GcReport,
}

fn in_key_of(k: &SessionKey, v: &Session) -> SessionKey {
    SessionKey {
        dir: DIR_IN,
        port: v.port,
        addr: v.addr,
        ..*k
    }
}

/// Decides what to delete at time `now_ns` (CLOCK_MONOTONIC).
pub fn plan(
    cfg: &Nat64Config,
    sessions: &[(SessionKey, Session)],
    bindings: &[(BibKey, Bib)],
    now_ns: u64,
) -> Plan {
    let mut p = Plan::default();
    let pool: HashSet<[u8; 4]> = if cfg.mode == Mode::Translate {
        cfg.pool.iter().map(|a| a.octets()).collect()
    } else {
        HashSet::new()
    };
    let in_pool = |a: &[u8; 16]| pool.contains(&[a[0], a[1], a[2], a[3]]);
    let by_key: std::collections::HashMap<SessionKey, Session> = sessions.iter().copied().collect();
    // (proto, T, t) of every session kept.
    let mut used: HashSet<(u8, [u8; 16], u16)> = HashSet::new();
    let mut seen_in: HashSet<SessionKey> = HashSet::new();

    for (k, v) in sessions.iter().filter(|(k, _)| k.dir == DIR_OUT) {
        let ik = in_key_of(k, v);
        let twin = by_key.get(&ik);
        if twin.is_some() {
            seen_in.insert(ik);
        }
        let last = twin.map_or(v.last_seen_ns, |t| t.last_seen_ns.max(v.last_seen_ns));
        let timeout = cfg.timeout(k.proto, v.state).as_nanos() as u64;
        let idle = now_ns.saturating_sub(last);
        if idle > timeout || !in_pool(&v.addr) {
            p.sessions.push(*k);
            if twin.is_some() {
                p.sessions.push(ik);
            }
            p.report.sessions_expired += 1;
        } else {
            used.insert((k.proto, v.addr, v.port));
            p.report.sessions += 1;
        }
    }
    // IPv4-side entries whose IPv6 side is gone (LRU eviction): kept while they could still be
    // current (the datapath re-creates the pair on the next outbound packet), else removed.
    for (k, v) in sessions.iter().filter(|(k, _)| k.dir == DIR_IN) {
        if seen_in.contains(k) {
            continue;
        }
        let idle = now_ns.saturating_sub(v.last_seen_ns);
        let timeout = cfg.timeout(k.proto, 0).as_nanos() as u64;
        if idle > timeout || !in_pool(&k.addr) {
            p.sessions.push(*k);
            p.report.orphans += 1;
        } else {
            used.insert((k.proto, k.addr, k.port));
        }
    }

    // Bindings: the IPv4-side entry is the reservation; remove both halves once unused.
    for (k, v) in bindings.iter().filter(|(k, _)| k.dir == DIR_IN) {
        let young = now_ns.saturating_sub(v.created_ns) < BIND_GRACE_NS;
        if (used.contains(&(k.proto, k.addr, k.port)) || young) && in_pool(&k.addr) {
            p.report.bindings += 1;
            continue;
        }
        p.bindings.push(*k);
        let ok = BibKey {
            proto: k.proto,
            dir: DIR_OUT,
            port: v.port,
            addr: v.addr,
        };
        // Only if the IPv6 side still points here (it may have been re-bound already).
        if bindings
            .iter()
            .any(|(bk, bv)| *bk == ok && bv.addr == k.addr && bv.port == k.port)
        {
            p.bindings.push(ok);
        }
        p.report.bindings_removed += 1;
    }
    // IPv6-side binding entries whose reservation is gone.
    let reserved: HashSet<BibKey> = bindings
        .iter()
        .filter(|(k, _)| k.dir == DIR_IN)
        .map(|(k, _)| *k)
        .collect();
    for (k, v) in bindings.iter().filter(|(k, _)| k.dir == DIR_OUT) {
        let rk = BibKey {
            proto: k.proto,
            dir: DIR_IN,
            port: v.port,
            addr: v.addr,
        };
        if !reserved.contains(&rk) && now_ns.saturating_sub(v.created_ns) >= BIND_GRACE_NS {
            p.bindings.push(*k);
        }
    }
    p
}

/// One garbage collection pass over the pinned tables.
pub fn collect(layout: &PinLayout, cfg: &Nat64Config) -> Result<GcReport> {
    collect_at(layout, cfg, state::monotonic_ns())
}

/// [`collect`] as if the time (CLOCK_MONOTONIC, ns) were `now_ns`.
pub fn collect_at(layout: &PinLayout, cfg: &Nat64Config, now_ns: u64) -> Result<GcReport> {
    let sessions = state::sessions(layout)?;
    let bindings = state::bindings(layout)?;
    let p = plan(cfg, &sessions, &bindings, now_ns);
    state::remove(layout, &p.sessions, &p.bindings)?;
    Ok(p.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixlane_common::nat64::tcp::State;

    const S: u64 = 1_000_000_000;
    const X: [u8; 16] = [0xfd, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa];
    const T: [u8; 4] = [198, 18, 0, 1];
    const Y: [u8; 4] = [198, 18, 1, 10];

    fn t16(a: [u8; 4]) -> [u8; 16] {
        let mut o = [0; 16];
        o[..4].copy_from_slice(&a);
        o
    }

    fn cfg() -> Nat64Config {
        Nat64Config {
            mode: Mode::Translate,
            prefix: "fd00:6464::/96".parse().unwrap(),
            pool: vec![T.into()],
            pod_cidrs: vec!["fd00:10::/64".parse().unwrap()],
            ..Default::default()
        }
    }

    type Tables = (Vec<(SessionKey, Session)>, Vec<(BibKey, Bib)>);

    /// A session pair and its binding pair, as the datapath writes them.
    fn flow(proto: u8, x: u16, t: u16, state: State, seen_out: u64, seen_in: u64) -> Tables {
        let ok = SessionKey {
            proto,
            dir: DIR_OUT,
            _pad: 0,
            port: x,
            remote_port: 80,
            addr: X,
            remote: Y,
        };
        let ov = Session {
            addr: t16(T),
            port: t,
            state: state as u8,
            last_seen_ns: seen_out,
            ..Default::default()
        };
        let ik = SessionKey {
            dir: DIR_IN,
            port: t,
            addr: t16(T),
            ..ok
        };
        let iv = Session {
            addr: X,
            port: x,
            last_seen_ns: seen_in,
            ..Default::default()
        };
        let bo = BibKey {
            proto,
            dir: DIR_OUT,
            port: x,
            addr: X,
        };
        let bi = BibKey {
            proto,
            dir: DIR_IN,
            port: t,
            addr: t16(T),
        };
        let bov = Bib {
            addr: t16(T),
            port: t,
            created_ns: 0,
            ..Default::default()
        };
        let biv = Bib {
            addr: X,
            port: x,
            created_ns: 0,
            ..Default::default()
        };
        (vec![(ok, ov), (ik, iv)], vec![(bo, bov), (bi, biv)])
    }

    #[test]
    fn idle_sessions_expire_by_protocol_and_state() {
        let now = 10_000 * S;
        let cases = [
            (17, State::Closed, 299, false),
            (17, State::Closed, 301, true),
            (1, State::Closed, 59, false),
            (1, State::Closed, 61, true),
            (6, State::Established, 7199, false),
            (6, State::Established, 7201, true),
            (6, State::V6FinRcv, 7000, false),
            (6, State::V6Init, 239, false),
            (6, State::V6Init, 241, true),
            (6, State::V4Init, 239, false),
            (6, State::V4Init, 241, true),
            (6, State::Trans, 241, true),
            (6, State::V6FinV4Fin, 241, true),
        ];
        for (proto, state, idle, expired) in cases {
            let (s, b) = flow(proto, 40000, 61001, state, now - idle * S, now - idle * S);
            let p = plan(&cfg(), &s, &b, now);
            assert_eq!(
                p.report.sessions_expired,
                usize::from(expired),
                "{proto} {state:?} {idle}"
            );
            assert_eq!(p.sessions.len(), if expired { 2 } else { 0 });
            // The binding goes with its last session.
            assert_eq!(p.report.bindings_removed, usize::from(expired));
            assert_eq!(p.bindings.len(), if expired { 2 } else { 0 });
        }
    }

    #[test]
    fn the_most_recent_direction_counts() {
        let now = 10_000 * S;
        // Outbound silent for an hour, replies a second ago: UDP session alive.
        let (s, b) = flow(17, 1, 61001, State::Closed, now - 3600 * S, now - S);
        let p = plan(&cfg(), &s, &b, now);
        assert_eq!(
            p.report,
            GcReport {
                sessions: 1,
                bindings: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn shared_bindings_live_while_any_session_does() {
        let now = 10_000 * S;
        let (mut s, b) = flow(17, 1, 61001, State::Closed, now - 1000 * S, now - 1000 * S);
        // A second session of the same binding, to another peer, still active.
        let (mut s2, _) = flow(17, 1, 61001, State::Closed, now - S, now - S);
        for (k, _) in &mut s2 {
            k.remote = [198, 18, 1, 11];
        }
        s.extend(s2);
        let p = plan(&cfg(), &s, &b, now);
        assert_eq!(p.report.sessions_expired, 1);
        assert_eq!(p.report.sessions, 1);
        assert_eq!(p.report.bindings_removed, 0);
    }

    #[test]
    fn young_bindings_survive_without_sessions() {
        let now = 10_000 * S;
        let (_, mut b) = flow(6, 1, 61001, State::V6Init, 0, 0);
        for (_, v) in &mut b {
            v.created_ns = now - S;
        }
        let p = plan(&cfg(), &[], &b, now);
        assert!(p.bindings.is_empty());
        for (_, v) in &mut b {
            v.created_ns = now - 11 * S;
        }
        assert_eq!(plan(&cfg(), &[], &b, now).bindings.len(), 2);
    }

    #[test]
    fn orphans_and_removed_pool_addresses() {
        let now = 10_000 * S;
        let (s, b) = flow(17, 1, 61001, State::Closed, now - S, now - S);
        // Only the IPv4 side left, idle past the timeout: removed.
        let orphan: Vec<_> = s
            .iter()
            .filter(|(k, _)| k.dir == DIR_IN)
            .map(|(k, v)| {
                (
                    *k,
                    Session {
                        last_seen_ns: now - 400 * S,
                        ..*v
                    },
                )
            })
            .collect();
        let p = plan(&cfg(), &orphan, &b, now);
        assert_eq!(p.report.orphans, 1);
        // The pool address left the configuration: everything of it goes, fresh or not.
        let mut c = cfg();
        c.pool = vec!["198.18.0.2".parse().unwrap()];
        let p = plan(&c, &s, &b, now);
        assert_eq!(p.report.sessions_expired, 1);
        assert_eq!(p.sessions.len(), 2);
        assert_eq!(p.bindings.len(), 2);
    }
}
