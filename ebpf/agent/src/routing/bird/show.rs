//! BIRD 2's answers to `show protocols all` and `show route`, parsed from the reply lines
//! ([`Reply`]): one `1002` row per protocol (`Name Proto Table State Since Info`), followed by
//! its `1006` detail lines; routes are `1007` lines starting with the prefix.
//!
//! The parser is lenient: lines it does not know are skipped, so a BIRD that prints more keeps
//! working; what it reads is pinned by tests on replies captured from BIRD.

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::reply::Reply;

/// One protocol of `show protocols all`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    /// `BGP`, `Static`, `Kernel`, `Device`, ...
    pub proto: String,
    pub table: String,
    /// BIRD's protocol state: `up`, `start`, `stop`, `down`, `flush`.
    pub state: String,
    /// When the state last changed, as BIRD prints it (its `timeformat protocol`).
    pub since: String,
    /// The row's last column (for BGP: the session state and the last error).
    pub info: String,
    /// Set for BGP protocols.
    pub bgp: Option<BgpDetails>,
    pub channels: Vec<Channel>,
}

impl Protocol {
    /// `since` as Unix seconds, if BIRD printed a date and a time (`timeformat protocol iso
    /// long`, what the agent's configuration asks for) or Unix seconds.
    pub fn since_unix(&self) -> Option<u64> {
        unix_time(&self.since)
    }

    /// Routes over all channels.
    pub fn routes(&self) -> RouteCounts {
        self.channels
            .iter()
            .fold(RouteCounts::default(), |a, c| RouteCounts {
                imported: a.imported + c.routes.imported,
                filtered: a.filtered + c.routes.filtered,
                exported: a.exported + c.routes.exported,
                preferred: a.preferred + c.routes.preferred,
            })
    }
}

/// The BGP part of a protocol's details.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpDetails {
    /// `Established`, `Active`, `Connect`, `Idle`, `OpenSent`, `OpenConfirm`, `Passive`, `Down`.
    pub state: String,
    pub neighbor_address: Option<String>,
    pub neighbor_as: Option<u32>,
    pub local_as: Option<u32>,
    pub neighbor_id: Option<String>,
    /// `Received: Bad peer AS`, `Socket: Connection refused`, `Error: Hold timer expired`, ...
    /// (kept by BIRD after the session recovers).
    pub last_error: Option<String>,
    /// The neighbor is restarting and its routes are kept as stale (RFC 4724).
    pub graceful_restart_active: bool,
}

/// One channel (address family) of a protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    /// `UP`, `START`, `DOWN`, ...
    pub state: String,
    pub routes: RouteCounts,
}

/// A channel's `Routes:` line (absent, so zero, while the channel is down).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCounts {
    pub imported: u64,
    pub filtered: u64,
    pub exported: u64,
    pub preferred: u64,
}

/// Parses a `show protocols all` reply.
pub fn protocols(reply: &Reply) -> Vec<Protocol> {
    let mut out: Vec<Protocol> = Vec::new();
    for l in &reply.lines {
        match l.code {
            1002 => out.extend(row(&l.text)),
            1006 => {
                if let Some(p) = out.last_mut() {
                    detail(p, &l.text);
                }
            }
            _ => {}
        }
    }
    out
}

/// The distinct prefixes of a `show route` reply, sorted.
pub fn prefixes(reply: &Reply) -> Vec<Ipv6Net> {
    let mut out: Vec<Ipv6Net> = reply
        .texts(1007)
        // Further routes of the same network and next-hop lines start with blanks.
        .filter(|t| !t.starts_with(char::is_whitespace))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whitespace-separated words, with the rest of the line on demand.
struct Words<'a>(&'a str);

impl<'a> Words<'a> {
    fn word(&mut self) -> Option<&'a str> {
        let t = self.0.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        let (w, rest) = t.split_at(end);
        self.0 = rest;
        (!w.is_empty()).then_some(w)
    }
}

/// A protocol row: `name proto table state since info`, `since` being one word (a time, a date,
/// Unix seconds) or a date and a time (`iso long`).
fn row(text: &str) -> Option<Protocol> {
    let mut w = Words(text);
    let name = w.word()?.to_owned();
    let proto = w.word()?.to_owned();
    let table = w.word()?.to_owned();
    let state = w.word()?.to_owned();
    let mut since = w.word().unwrap_or_default().to_owned();
    if is_date(&since) {
        let before = w.0;
        match w.word() {
            Some(t) if is_time(t) => {
                since.push(' ');
                since.push_str(t);
            }
            _ => w.0 = before,
        }
    }
    Some(Protocol {
        bgp: (proto == "BGP").then(BgpDetails::default),
        name,
        proto,
        table,
        state,
        since,
        info: w.0.trim().to_owned(),
        channels: Vec::new(),
    })
}

/// `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// `HH:MM:SS` with optional fractions.
fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8
        && b[..8].iter().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` in BIRD's local time (BIRD formats with localtime(3); it runs
/// beside the agent, with the same zone) or Unix seconds, as Unix seconds.
fn unix_time(s: &str) -> Option<u64> {
    if let Ok(t) = s.parse() {
        return Some(t);
    }
    let (date, time) = s.split_once(' ')?;
    if !is_date(date) || !is_time(time) {
        return None;
    }
    let n = |s: &str| s.parse::<i32>().ok();
    let mut tm = libc::tm {
        tm_year: n(&date[..4])? - 1900,
        tm_mon: n(&date[5..7])? - 1,
        tm_mday: n(&date[8..10])?,
        tm_hour: n(&time[..2])?,
        tm_min: n(&time[3..5])?,
        tm_sec: n(&time[6..8])?,
        tm_wday: 0,
        tm_yday: 0,
        // Whether daylight saving applies: mktime finds out.
        tm_isdst: -1,
        tm_gmtoff: 0,
        tm_zone: std::ptr::null(),
    };
    // SAFETY: `tm` is a fully initialized struct tm that mktime(3) may normalize in place; it
    // reads nothing else of ours.
    let t = unsafe { libc::mktime(&mut tm) };
    u64::try_from(t).ok()
}

/// One detail line of protocol `p`.
fn detail(p: &mut Protocol, text: &str) {
    let t = text.trim();
    if let Some(name) = t.strip_prefix("Channel ") {
        p.channels.push(Channel {
            name: name.trim().to_owned(),
            ..Default::default()
        });
        return;
    }
    if t == "Neighbor graceful restart active" {
        if let Some(b) = p.bgp.as_mut() {
            b.graceful_restart_active = true;
        }
        return;
    }
    let Some((key, value)) = t.split_once(':') else {
        return;
    };
    let value = value.trim();
    if let Some(c) = p.channels.last_mut() {
        match key {
            "State" => c.state = value.to_owned(),
            "Routes" => c.routes = route_counts(value),
            _ => {}
        }
        return;
    }
    let Some(b) = p.bgp.as_mut() else {
        return;
    };
    match key {
        "BGP state" => b.state = value.to_owned(),
        "Neighbor address" => b.neighbor_address = Some(value.to_owned()),
        "Neighbor AS" => b.neighbor_as = value.parse().ok(),
        "Local AS" => b.local_as = value.parse().ok(),
        "Neighbor ID" => b.neighbor_id = Some(value.to_owned()),
        "Last error" => b.last_error = Some(value.to_owned()),
        _ => {}
    }
}

/// `1 imported, 0 filtered, 2 exported, 1 preferred` (`filtered` only with `import keep
/// filtered`).
fn route_counts(value: &str) -> RouteCounts {
    let mut c = RouteCounts::default();
    for part in value.split(',') {
        let mut w = part.split_whitespace();
        let (Some(n), Some(what)) = (w.next().and_then(|n| n.parse().ok()), w.next()) else {
            continue;
        };
        match what {
            "imported" => c.imported = n,
            "filtered" => c.filtered = n,
            "exported" => c.exported = n,
            "preferred" => c.preferred = n,
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::bird::reply::parse as reply;

    #[test]
    fn rows_with_every_since_format() {
        for (text, since, info) in [
            (
                "tor1       BGP        ---        start  12:00:01.123  Active        Socket: Connection refused",
                "12:00:01.123",
                "Active        Socket: Connection refused",
            ),
            (
                "tor1       BGP        ---        up     2024-05-06 07:08:09  Established   ",
                "2024-05-06 07:08:09",
                "Established",
            ),
            (
                "tor1       BGP        ---        up     2024-05-06    Established",
                "2024-05-06",
                "Established",
            ),
            (
                "tor1       BGP        ---        up     1715000000    Established",
                "1715000000",
                "Established",
            ),
            (
                "device1    Device     ---        up     1715000000    ",
                "1715000000",
                "",
            ),
        ] {
            let p = row(text).unwrap();
            assert_eq!((p.since.as_str(), p.info.as_str()), (since, info), "{text}");
            assert_eq!(
                p.state,
                if text.contains(" start ") {
                    "start"
                } else {
                    "up"
                }
            );
        }
        assert_eq!(
            row("tor1 BGP --- up 1715000000").unwrap().since_unix(),
            Some(1715000000)
        );
        // A time alone (BIRD's default format) is not a moment.
        assert_eq!(row("tor1 BGP --- up 12:00:00").unwrap().since_unix(), None);
        assert_eq!(
            row("tor1 BGP --- up 2024-05-06").unwrap().since_unix(),
            None
        );
        assert_eq!(row("tor1 BGP"), None);
    }

    #[test]
    fn local_dates_are_unix_seconds() {
        // Local time: within a day of UTC's answer, whatever this machine's zone.
        let t = unix_time("2024-05-06 07:08:09").unwrap();
        assert!(t.abs_diff(1_714_979_289) <= 14 * 3600, "{t}");
        assert_eq!(unix_time("2024-05-06 08:08:09.123"), Some(t + 3600));
        assert_eq!(unix_time("2024-05-06 07:08:10"), Some(t + 1));
        for bad in ["2024-05-06", "07:08:09", "2024-05-06 7:08:09", "yesterday"] {
            assert_eq!(unix_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn route_count_lines() {
        assert_eq!(
            route_counts("1 imported, 0 exported, 1 preferred"),
            RouteCounts {
                imported: 1,
                filtered: 0,
                exported: 0,
                preferred: 1
            }
        );
        assert_eq!(
            route_counts("3 imported, 2 filtered, 5 exported, 3 preferred"),
            RouteCounts {
                imported: 3,
                filtered: 2,
                exported: 5,
                preferred: 3
            }
        );
    }

    /// `show protocols all` captured from BIRD 2.0.12: a device and a static protocol, a
    /// session established, one refused (nothing listens), one refused by the peer for a wrong
    /// ASN, one still connecting to an address nobody has.
    fn captured() -> Vec<Protocol> {
        protocols(&reply(include_str!("testdata/replies/protocols.txt")))
    }

    #[test]
    fn every_protocol_with_its_row() {
        let ps = captured();
        let rows: Vec<(&str, &str, &str)> = ps
            .iter()
            .map(|p| (p.name.as_str(), p.proto.as_str(), p.state.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("sixlane_device", "Device", "up"),
                ("sixlane_announce", "Static", "up"),
                ("peer_tor1", "BGP", "up"),
                ("peer_down", "BGP", "start"),
                ("peer_badas", "BGP", "start"),
                ("peer_unreach", "BGP", "start"),
            ]
        );
        assert!(ps.iter().all(|p| p.since.starts_with("2026-12-07 15:3")));
        let st = &ps[1];
        assert_eq!(st.bgp, None);
        assert_eq!(st.channels.len(), 1);
        assert_eq!(
            (st.channels[0].name.as_str(), st.channels[0].state.as_str()),
            ("ipv6", "UP")
        );
        assert_eq!(st.routes().imported, 2);
    }

    #[test]
    fn an_established_peer() {
        let ps = captured();
        let p = &ps[2];
        assert_eq!(p.info, "Established");
        assert_eq!(p.since, "2026-12-07 15:31:51");
        let d = p.bgp.as_ref().unwrap();
        assert_eq!(d.state, "Established");
        assert_eq!(d.neighbor_address.as_deref(), Some("fd00:bb::2"));
        // Capability lines ("Restart time: 120") do not leak into the BGP part.
        assert_eq!((d.neighbor_as, d.local_as), (Some(65001), Some(64512)));
        assert_eq!(d.neighbor_id.as_deref(), Some("10.0.0.2"));
        assert_eq!(d.last_error, None);
        assert!(!d.graceful_restart_active);
        let routes = p.routes();
        assert_eq!((routes.imported, routes.exported), (1, 2));
    }

    #[test]
    fn peers_that_are_down_and_why() {
        let ps = captured();
        for (p, state, error) in [
            (&ps[3], "Active", Some("Socket: Connection refused")),
            (&ps[4], "Idle", Some("BGP Error: Bad peer AS")),
            (&ps[5], "Connect", None),
        ] {
            let d = p.bgp.as_ref().unwrap();
            assert_eq!(d.state, state, "{}", p.name);
            assert_eq!(d.last_error.as_deref(), error, "{}", p.name);
            assert_eq!(p.routes(), RouteCounts::default(), "{}", p.name);
            assert_eq!(p.channels[0].state, "DOWN");
        }
        assert_eq!(ps[3].info, "Active        Socket: Connection refused");
        assert_eq!(ps[4].bgp.as_ref().unwrap().neighbor_as, Some(65009));
    }

    #[test]
    fn route_lists() {
        let from = reply(include_str!("testdata/replies/route-protocol.txt"));
        let export = reply(include_str!("testdata/replies/route-export.txt"));
        let nets = |l: &[&str]| -> Vec<Ipv6Net> { l.iter().map(|p| p.parse().unwrap()).collect() };
        assert_eq!(prefixes(&from), nets(&["fd00:10:244:2::/64"]));
        assert_eq!(
            prefixes(&export),
            nets(&["fd00:10:96::/108", "fd00:10:244:1::/64"])
        );
        assert!(prefixes(&reply("0000 \n")).is_empty());
    }
}
