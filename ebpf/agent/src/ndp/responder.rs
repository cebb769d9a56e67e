//! The agent's side of Neighbor Discovery, as one task: on every change of the IPAM store, of
//! the cluster's L2 LoadBalancer IPs, of the nodes heard on the link (and every [`RESYNC`]
//! regardless), the owned addresses are recomputed and the pinned table, the solicited-node
//! memberships and the unsolicited advertisements brought in step. The datapath answers from
//! the table; this task never answers anything itself, so answering goes on while it (or the
//! agent) is down — for LoadBalancer IPs only as long as the lease the heartbeat thread renews.
//!
//! A starting agent decides no LoadBalancer IP before it has listened to the link for
//! `peers::TIMEOUT` (it would take addresses from nodes it has not heard yet); meanwhile it
//! keeps answering for the ones its predecessor held, if that one's lease still runs.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use sixlane_attach::chain;
use tokio::sync::watch;
use tracing::{info, warn};

use sixlane_common::ndp::{Owned, kind};

use super::{
    advertise::{self, Sender},
    claims::L2Input,
    config::NdpConfig,
    elect, heartbeat,
    lease::Lease,
    link,
    mld::Groups,
    owned::{Uplink, owned},
    peers,
    status::{AddressRow, LbRow, NdpStatus, PeerRow},
    table::Table,
    watch::StoreWatch,
};
use crate::{PinLayout, Result, ops::status::unix_now};

/// Where the status goes whenever it changes (the agent's status and its file).
pub type Publish = Box<dyn Fn(&NdpStatus) + Send>;

/// Re-reads the store this often even without a notification (a missed event heals).
pub const RESYNC: Duration = Duration::from_secs(10);

/// What the task is given.
#[derive(Clone, Debug)]
pub struct Settings {
    pub cfg: NdpConfig,
    /// The CNI network's IPAM directory (`<cni.dataDir>/<network>`).
    pub store_dir: PathBuf,
    pub layout: PinLayout,
    /// This node's name, as in its heartbeats.
    pub node: String,
}

/// The running responder, for the daemon: where the uplink and the L2 input go, and the
/// heartbeat thread to stop.
pub struct Handle {
    pub uplink: watch::Sender<Option<String>>,
    pub l2: watch::Sender<Option<L2Input>>,
    task: tokio::task::JoinHandle<()>,
    heartbeat: heartbeat::Handle,
}

impl Handle {
    /// Stops the task and leaves the link: the other nodes take the LoadBalancer IPs over at
    /// once. The pods stay answered (their entries are not under the lease).
    pub fn stop(self) {
        self.task.abort();
        self.heartbeat.leave();
    }
}

struct Responder {
    settings: Settings,
    table: Table,
    groups: Groups,
    sender: Sender,
    uplink: Option<(String, Uplink)>,
    /// What the agent's status shows, and what was last published of it.
    status: NdpStatus,
    published: Option<NdpStatus>,
    publish: Publish,
    /// Unsolicited advertisements still to send: how many, and when the next is due.
    due: BTreeMap<Ipv6Addr, (u32, Instant)>,
    link: heartbeat::Link,
    /// The cluster's L2 LoadBalancer IPs (none before the agent's first reconcile).
    l2: Option<L2Input>,
    /// Until when no LoadBalancer IP is decided (the link is listened to first).
    settles: Instant,
    /// The LoadBalancer IPs a previous agent held under a lease still running at start.
    inherited: BTreeMap<Ipv6Addr, Owned>,
}

/// Starts the task and the heartbeat thread; the uplink it answers on is sent through the
/// handle once the agent has attached the uplink programs, the L2 input after each reconcile.
pub fn start(settings: Settings, publish: Publish) -> Result<Handle> {
    let watch = StoreWatch::new(&settings.store_dir)?;
    let status = NdpStatus {
        prefixes: settings.cfg.prefixes.clone(),
        ..NdpStatus::default()
    };
    let table = Table::open(&settings.layout)?;
    let lease = Lease::open(&settings.layout)?;
    let inherited = if lease.running()? {
        let mut lb = table.entries()?;
        lb.retain(|_, o| o.kind == kind::LB);
        lb
    } else {
        BTreeMap::new()
    };
    let (members_tx, members) = watch::channel(0u64);
    let (heartbeat, link) =
        heartbeat::Handle::start(&settings.node, &settings.cfg.heartbeat, lease, members_tx)?;
    let r = Responder {
        table,
        groups: Groups::new()?,
        sender: Sender::new()?,
        settings,
        uplink: None,
        status,
        published: None,
        publish,
        due: BTreeMap::new(),
        link,
        l2: None,
        settles: Instant::now() + peers::TIMEOUT,
        inherited,
    };
    let (uplink, uplink_rx) = watch::channel(None);
    let (l2, l2_rx) = watch::channel(None);
    let task = tokio::spawn(r.run(
        watch,
        Inputs {
            uplink: uplink_rx,
            l2: l2_rx,
            members,
        },
    ));
    Ok(Handle {
        uplink,
        l2,
        task,
        heartbeat,
    })
}

/// What wakes the task besides the store and its timers.
struct Inputs {
    uplink: watch::Receiver<Option<String>>,
    l2: watch::Receiver<Option<L2Input>>,
    members: watch::Receiver<u64>,
}

impl Responder {
    async fn run(mut self, mut store: StoreWatch, mut inputs: Inputs) {
        let (mut uplink_open, mut l2_open, mut members_open) = (true, true, true);
        loop {
            let name = inputs.uplink.borrow_and_update().clone();
            self.l2 = inputs.l2.borrow_and_update().clone();
            self.status.error = None;
            if let Err(e) = self.sync(name.as_deref()) {
                warn!(error = %chain(&e), "neighbor discovery: sync failed; retrying");
                self.status.error = Some(chain(&e).to_string());
            }
            let now = Instant::now();
            let mut wake = self
                .advertise(now)
                .unwrap_or(now + RESYNC)
                .min(now + RESYNC);
            if now < self.settles {
                wake = wake.min(self.settles);
            }
            if self.published.as_ref() != Some(&self.status) {
                (self.publish)(&self.status);
                self.published = Some(self.status.clone());
            }
            tokio::select! {
                alive = store.changed() => if !alive {
                    // The plugin's cleanup removed the emptied directory: watch a new one.
                    match StoreWatch::new(&self.settings.store_dir) {
                        Ok(w) => store = w,
                        Err(e) => warn!(error = %chain(&e), "neighbor discovery: IPAM store not watched; re-reading it every {RESYNC:?}"),
                    }
                },
                r = inputs.uplink.changed(), if uplink_open => uplink_open = r.is_ok(),
                r = inputs.l2.changed(), if l2_open => l2_open = r.is_ok(),
                r = inputs.members.changed(), if members_open => members_open = r.is_ok(),
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// Brings the table and the memberships to the owned addresses of the uplink `name`. With
    /// no uplink yet, the table is left as it is (what a previous agent wrote stays answered).
    fn sync(&mut self, name: Option<&str>) -> Result<()> {
        let Some(name) = name else {
            return Ok(());
        };
        // Looked up every time: a re-created interface has a new index, maybe a new MAC.
        let up = link::uplink(name)?;
        self.uplink = Some((name.to_owned(), up));
        let name = name.to_owned();
        let store = &self.settings.store_dir;
        let pods =
            crate::ipam::reserved(store).map_err(|e| crate::Error::io("reading", store, e))?;
        let mut want = owned(&self.settings.cfg, up, &pods);
        for (a, o) in self.load_balancer_ips(up) {
            want.entry(a).or_insert(o);
        }
        let claims = self
            .l2
            .as_ref()
            .map(|l| l.claims.clone())
            .unwrap_or_default();
        self.link.set((name.clone(), up.ifindex), claims);
        let changes = self.table.sync(&want)?;
        let addrs: BTreeSet<Ipv6Addr> = want.keys().copied().collect();
        self.groups.sync(&name, up.ifindex, &addrs)?;
        self.status.uplink = Some(name.clone());
        self.status.groups = self.groups.joined().count();
        for a in &changes.added {
            info!(address = %a, uplink = %name, "neighbor discovery: answering");
            self.due.insert(*a, (advertise::REPEAT, Instant::now()));
        }
        for a in &changes.removed {
            info!(address = %a, uplink = %name, "neighbor discovery: no longer answering");
            self.due.remove(a);
        }
        self.rows(&want);
        Ok(())
    }

    /// The L2 LoadBalancer IPs this node answers for on `up`: the elected ones once settled,
    /// the inherited ones before.
    fn load_balancer_ips(&mut self, up: Uplink) -> BTreeMap<Ipv6Addr, Owned> {
        let (peers, error) = self.link.peers();
        self.status.heartbeat_error = error;
        self.status.peers = peers
            .iter()
            .map(|(n, p)| PeerRow {
                node: n.clone(),
                from: p.from,
                claims: p.claims.len(),
            })
            .collect();
        let entry = Owned {
            ifindex: up.ifindex,
            mac: up.mac,
            kind: kind::LB,
            _pad: 0,
        };
        let Some(l2) = self.l2.as_ref().filter(|_| Instant::now() >= self.settles) else {
            self.status.settled = false;
            return self.inherited.keys().map(|a| (*a, entry)).collect();
        };
        self.status.settled = true;
        let input = elect::Input {
            me: &self.settings.node,
            claims: &l2.claims,
            peers: &peers,
            nodes: &l2.nodes,
        };
        self.status.load_balancer_ips = l2
            .addresses
            .iter()
            .map(|a| {
                let candidates = elect::candidates(&input, *a);
                LbRow {
                    address: *a,
                    owner: candidates.first().cloned(),
                    candidates,
                }
            })
            .collect();
        let me = &self.settings.node;
        self.status
            .load_balancer_ips
            .iter()
            .filter(|r| r.owner.as_ref() == Some(me))
            .map(|r| (r.address, entry))
            .collect()
    }

    /// The status rows of `want`: kept for addresses already answered, new ones since now.
    fn rows(&mut self, want: &BTreeMap<Ipv6Addr, Owned>) {
        let now = unix_now();
        let mut rows: BTreeMap<Ipv6Addr, AddressRow> = std::mem::take(&mut self.status.addresses)
            .into_iter()
            .filter(|r| want.contains_key(&r.address))
            .map(|r| (r.address, r))
            .collect();
        for (a, o) in want {
            rows.entry(*a).or_insert(AddressRow {
                address: *a,
                kind: if o.kind == kind::LB { "lb" } else { "pod" }.into(),
                since: now,
                last_unsolicited: None,
            });
        }
        self.status.addresses = rows.into_values().collect();
    }

    /// Sends the unsolicited advertisements due by `now`; when the next one is due.
    fn advertise(&mut self, now: Instant) -> Option<Instant> {
        let (name, up) = self.uplink.clone()?;
        for (a, (left, at)) in self.due.iter_mut() {
            if *at > now {
                continue;
            }
            match self.sender.send(&name, up, *a) {
                Ok(()) => {
                    self.status.unsolicited_sent += 1;
                    let row = self.status.addresses.iter_mut().find(|r| r.address == *a);
                    if let Some(r) = row {
                        r.last_unsolicited = Some(unix_now());
                    }
                }
                Err(e) => {
                    warn!(address = %a, error = %chain(&e), "neighbor discovery: unsolicited advertisement not sent");
                }
            }
            *left -= 1;
            *at = now + advertise::INTERVAL;
        }
        self.due.retain(|_, (left, _)| *left > 0);
        self.due.values().map(|(_, at)| *at).min()
    }
}
