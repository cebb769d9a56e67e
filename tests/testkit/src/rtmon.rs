//! Route changes in a namespace's kernel FIB as they happen: an rtnetlink socket subscribed to
//! IPv6 route notifications on a thread inside the namespace, each `RTM_NEWROUTE` and
//! `RTM_DELROUTE` stamped with the instant it was read. A benchmark times convergence with it
//! (no polling interval hides in the figure); a test waits on it.
//!
//! A notification lost to a full socket buffer (`ENOBUFS`) would make a later wait lie, so the
//! monitor stops and every wait fails from then on.

use std::{
    collections::BTreeSet,
    fs::File,
    io,
    net::Ipv6Addr,
    path::PathBuf,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use ipnet::Ipv6Net;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteMessage},
};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use nix::{
    sched::{CloneFlags, setns},
    sys::{
        socket::{setsockopt, sockopt},
        time::TimeVal,
    },
};

use crate::{Error, NetNs, Result};

/// `RTNLGRP_IPV6_ROUTE` (linux/rtnetlink.h).
const RTNLGRP_IPV6_ROUTE: u32 = 11;
/// The main routing table.
pub const MAIN: u32 = 254;
/// Thousands of routes changing at once must not overflow the socket.
const RCVBUF: usize = 32 << 20;
/// How often the reader looks up from the socket to see whether it should stop.
const TICK: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
}

/// One route notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When the reader got it from the socket.
    pub at: Instant,
    pub change: Change,
    pub dst: Ipv6Net,
    pub table: u32,
    /// `RTPROT_*`: 186 is `bgp`, what zebra installs BGP routes as.
    pub protocol: u8,
}

#[derive(Default)]
struct State {
    events: Vec<Event>,
    failed: Option<Arc<io::Error>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

/// A running monitor; the reader thread stops when it drops.
pub struct RouteMonitor {
    shared: Arc<Shared>,
    ns: String,
    reader: Option<JoinHandle<()>>,
}

impl RouteMonitor {
    /// Subscribes in `ns`; returns once subscribed (no later change is missed).
    pub fn start(ns: &NetNs) -> Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let path = ns.path();
        let s = shared.clone();
        let reader = thread::spawn(move || match subscribe(path) {
            Ok(sock) => {
                let _ = ready_tx.send(Ok(()));
                read(&sock, &s);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        });
        let subscribed = ready_rx.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "the reader thread ended before subscribing",
            ))
        });
        subscribed.map_err(Error::Subscribe)?;
        Ok(Self {
            shared,
            ns: ns.name().to_owned(),
            reader: Some(reader),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many notifications came so far: where a later wait starts looking.
    pub fn cursor(&self) -> usize {
        self.lock().events.len()
    }

    /// The notifications from `from` on.
    pub fn events_since(&self, from: usize) -> Vec<Event> {
        self.lock().events.get(from..).unwrap_or_default().to_vec()
    }

    /// Waits until every prefix of `prefixes` has had a `change` in the main table among the
    /// notifications from `from` on; returns the instant the last of them was read.
    pub fn wait_all(
        &self,
        from: usize,
        change: Change,
        prefixes: &[Ipv6Net],
        timeout: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        let mut missing: BTreeSet<Ipv6Net> = prefixes.iter().copied().collect();
        let mut seen = from;
        let mut last = None;
        let mut state = self.lock();
        loop {
            for e in state.events.get(seen..).unwrap_or_default() {
                if e.change == change && e.table == MAIN && missing.remove(&e.dst) {
                    last = Some(e.at);
                }
            }
            seen = state.events.len().max(seen);
            if missing.is_empty() {
                // Nothing to wait for at all: now.
                return Ok(last.unwrap_or_else(Instant::now));
            }
            if let Some(e) = &state.failed {
                return Err(Error::MonitorStopped(e.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "{} of {} routes to be {} the FIB of {} (first: {})",
                        missing.len(),
                        prefixes.len(),
                        match change {
                            Change::Added => "added to",
                            Change::Removed => "removed from",
                        },
                        self.ns,
                        missing.first().expect("not empty"),
                    ),
                    secs: timeout.as_secs(),
                });
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// On the calling thread: joins the namespace at `path` and opens the subscribed socket.
fn subscribe(path: PathBuf) -> io::Result<Socket> {
    let file = File::open(&path)?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.add_membership(RTNLGRP_IPV6_ROUTE)?;
    setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).map_err(io::Error::from)?;
    let tick = TimeVal::new(0, TICK.as_micros() as _);
    setsockopt(&sock, sockopt::ReceiveTimeout, &tick).map_err(io::Error::from)?;
    Ok(sock)
}

/// The reader loop: until told to stop or the socket fails.
fn read(sock: &Socket, shared: &Shared) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    while !shared.stop.load(Ordering::Relaxed) {
        buf.clear();
        let res = sock.recv(&mut buf, 0);
        let at = Instant::now();
        if let Err(e) = &res
            && matches!(
                e.kind(),
                // The tick, or a signal for this process: nothing was lost.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            )
        {
            continue;
        }
        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let failed = match res {
            Ok(_) => {
                state.events.extend(parse(&buf, at));
                false
            }
            Err(e) => {
                state.failed = Some(Arc::new(e));
                true
            }
        };
        drop(state);
        shared.changed.notify_all();
        if failed {
            return;
        }
    }
}

/// The IPv6 route notifications in one datagram.
fn parse(buf: &[u8], at: Instant) -> Vec<Event> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let chunk = &buf[off..off + len];
        off += (len + 3) & !3;
        let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(chunk) else {
            continue;
        };
        let (change, m) = match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(m)) => (Change::Added, m),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(m)) => (Change::Removed, m),
            _ => continue,
        };
        if let Some(e) = event(change, &m, at) {
            out.push(e);
        }
    }
    out
}

fn event(change: Change, m: &RouteMessage, at: Instant) -> Option<Event> {
    if m.header.address_family != AddressFamily::Inet6 {
        return None;
    }
    let mut addr = Ipv6Addr::UNSPECIFIED;
    let mut table = u32::from(m.header.table);
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet6(d)) => addr = *d,
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    Some(Event {
        at,
        change,
        dst: Ipv6Net::new(addr, m.header.destination_prefix_length).ok()?,
        table,
        protocol: m.header.protocol.into(),
    })
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage};
    use netlink_packet_route::route::{RouteHeader, RouteProtocol};

    use super::*;

    fn msg(new: bool, dst: &str) -> Vec<u8> {
        let net: Ipv6Net = dst.parse().unwrap();
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: AddressFamily::Inet6,
            destination_prefix_length: net.prefix_len(),
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Bgp,
            ..RouteHeader::default()
        };
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet6(net.addr())));
        let inner = if new {
            RouteNetlinkMessage::NewRoute(m)
        } else {
            RouteNetlinkMessage::DelRoute(m)
        };
        let mut nl = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(inner),
        );
        nl.finalize();
        let mut out = vec![0; nl.buffer_len()];
        nl.serialize(&mut out);
        out
    }

    #[test]
    fn a_datagram_of_several_notifications() {
        let mut buf = msg(true, "2001:db8::1/128");
        buf.extend(msg(false, "2001:db8:96::/108"));
        let at = Instant::now();
        let events = parse(&buf, at);
        assert_eq!(
            events,
            [
                Event {
                    at,
                    change: Change::Added,
                    dst: "2001:db8::1/128".parse().unwrap(),
                    table: MAIN,
                    protocol: 186,
                },
                Event {
                    at,
                    change: Change::Removed,
                    dst: "2001:db8:96::/108".parse().unwrap(),
                    table: MAIN,
                    protocol: 186,
                },
            ]
        );
        // A truncated tail is ignored, not misread.
        assert_eq!(parse(&buf[..buf.len() - 3], at).len(), 1);
    }
}
