//! The heartbeat thread: every `peers::INTERVAL` it sends this node's heartbeat to the
//! link-local group on the uplink, renews the datapath's lease, forgets the nodes fallen
//! silent, and in between takes in the other nodes' heartbeats. A thread of its own, not a
//! task: a long reconcile on the agent's runtime must not look like a dead node to the others.
//! Whenever the membership changes, the responder is woken through a counter it watches.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket},
    sync::{Arc, Mutex, PoisonError},
    thread,
    time::Instant,
};

use tokio::sync::watch;
use tracing::{debug, warn};

use super::{
    config::HeartbeatConfig,
    lease::Lease,
    peers::{Heartbeat, INTERVAL, Membership, Peer},
};
use crate::{Error, Result};

/// What the responder and the thread share.
#[derive(Default)]
struct State {
    /// The uplink's name and index (none yet: nothing sent).
    uplink: Option<(String, u32)>,
    claims: BTreeSet<Ipv6Addr>,
    membership: Membership,
    error: Option<String>,
    stop: bool,
}

/// The thread, held by whoever stops it.
pub struct Handle {
    state: Arc<Mutex<State>>,
    thread: thread::JoinHandle<()>,
}

/// The responder's side: what to send, and what was heard.
#[derive(Clone)]
pub struct Link {
    state: Arc<Mutex<State>>,
}

struct Beat {
    node: String,
    cfg: HeartbeatConfig,
    sock: UdpSocket,
    joined: Option<u32>,
    lease: Lease,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Handle {
    /// Binds the port and starts the thread; membership changes bump `changed`.
    pub fn start(
        node: &str,
        cfg: &HeartbeatConfig,
        lease: Lease,
        changed: watch::Sender<u64>,
    ) -> Result<(Self, Link)> {
        let err = |what, source| Error::Ndp {
            what,
            uplink: String::new(),
            source,
        };
        let sock = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, cfg.port, 0, 0))
            .map_err(|e| err("binding the heartbeat port (ndp.heartbeat.port)", e))?;
        sock.set_multicast_loop_v6(false)
            .and_then(|()| sock.set_read_timeout(Some(INTERVAL / 4)))
            .map_err(|e| err("setting up the heartbeat socket", e))?;
        let state = Arc::new(Mutex::new(State::default()));
        let mut beat = Beat {
            node: node.to_owned(),
            cfg: cfg.clone(),
            sock,
            joined: None,
            lease,
            state: state.clone(),
            changed,
        };
        let thread = thread::Builder::new()
            .name("ndp-heartbeat".into())
            .spawn(move || beat.run())
            .map_err(|e| err("starting the heartbeat thread", e))?;
        let link = Link {
            state: state.clone(),
        };
        Ok((Self { state, thread }, link))
    }

    /// Tells the link this node leaves (its addresses are taken over at once) and ends the
    /// lease, so the datapath stops answering for them.
    pub fn leave(self) {
        lock(&self.state).stop = true;
        let _ = self.thread.join();
    }
}

impl Link {
    /// What the heartbeats say from now on: the uplink to send on and this node's claims.
    pub fn set(&self, uplink: (String, u32), claims: BTreeSet<Ipv6Addr>) {
        let mut s = lock(&self.state);
        s.uplink = Some(uplink);
        s.claims = claims;
    }

    /// The live nodes of the link, and the last send or join error.
    pub fn peers(&self) -> (BTreeMap<String, Peer>, Option<String>) {
        let s = lock(&self.state);
        (s.membership.peers().clone(), s.error.clone())
    }
}

impl Beat {
    fn run(&mut self) {
        let mut next = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next {
                if lock(&self.state).stop {
                    break;
                }
                self.tick(now);
                next = now + INTERVAL;
            }
            self.receive();
        }
        self.send(true);
        if let Err(e) = self.lease.end() {
            warn!(error = %e, "neighbor discovery: ending the LoadBalancer IP lease");
        }
    }

    fn tick(&mut self, now: Instant) {
        if let Err(e) = self.lease.renew() {
            warn!(error = %e, "neighbor discovery: renewing the LoadBalancer IP lease");
        }
        let expired = lock(&self.state).membership.expire(now);
        if expired {
            self.changed.send_modify(|v| *v += 1);
        }
        self.send(false);
    }

    /// Sends the heartbeat on the uplink (joining the group there first).
    fn send(&mut self, leaving: bool) {
        let (uplink, claims) = {
            let s = lock(&self.state);
            (s.uplink.clone(), s.claims.clone())
        };
        let Some((name, ifindex)) = uplink else {
            return;
        };
        let hb = Heartbeat {
            node: self.node.clone(),
            leaving,
            claims,
        };
        let to = SocketAddrV6::new(self.cfg.group, self.cfg.port, 0, ifindex);
        let r = self
            .join(ifindex)
            .and_then(|()| self.sock.send_to(&hb.encode(), to).map(drop));
        let error = r.err().map(|e| {
            format!(
                "heartbeat to [{}]:{} on {name}: {e}",
                self.cfg.group, self.cfg.port
            )
        });
        let mut s = lock(&self.state);
        if error.is_some() && s.error != error {
            warn!(
                error = error.as_deref(),
                "neighbor discovery: heartbeat not sent"
            );
        }
        s.error = error;
    }

    /// Joins the group on `ifindex` (leaving the one of a previous uplink).
    fn join(&mut self, ifindex: u32) -> io::Result<()> {
        if self.joined == Some(ifindex) {
            return Ok(());
        }
        if let Some(old) = self.joined.take() {
            let _ = self.sock.leave_multicast_v6(&self.cfg.group, old);
        }
        self.sock.join_multicast_v6(&self.cfg.group, ifindex)?;
        self.joined = Some(ifindex);
        Ok(())
    }

    /// Takes in one heartbeat, if one comes before the read timeout. Only from a link-local
    /// address on the uplink: heartbeats never cross a router.
    fn receive(&mut self) {
        let mut buf = [0u8; 65536];
        let Ok((n, SocketAddr::V6(from))) = self.sock.recv_from(&mut buf) else {
            return;
        };
        if !from.ip().is_unicast_link_local() || Some(from.scope_id()) != self.joined {
            return;
        }
        let hb = match Heartbeat::decode(&buf[..n]) {
            Ok(hb) => hb,
            Err(why) => {
                debug!(from = %from.ip(), why, "neighbor discovery: datagram on the heartbeat port ignored");
                return;
            }
        };
        let changed =
            lock(&self.state)
                .membership
                .heard(&self.node, hb, *from.ip(), Instant::now());
        if changed {
            self.changed.send_modify(|v| *v += 1);
        }
    }
}
