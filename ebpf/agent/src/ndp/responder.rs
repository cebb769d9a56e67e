//! The agent's side of Neighbor Discovery, as one task: on every change of the IPAM store (and
//! every [`RESYNC`] regardless), the owned addresses are recomputed and the pinned table, the
//! solicited-node memberships and the unsolicited advertisements brought in step. The
//! datapath answers from the table; this task never answers anything itself, so answering
//! goes on while it (or the agent) is down.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use sixlane_attach::chain;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    advertise::{self, Sender},
    config::NdpConfig,
    link,
    mld::Groups,
    owned::{Uplink, owned},
    pods,
    status::{AddressRow, NdpStatus},
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
}

/// Starts the task; the uplink it answers on is sent through the returned channel once the
/// agent has attached the uplink programs.
pub fn start(
    settings: Settings,
    publish: Publish,
) -> Result<(watch::Sender<Option<String>>, tokio::task::JoinHandle<()>)> {
    let watch = StoreWatch::new(&settings.store_dir)?;
    let status = NdpStatus {
        prefixes: settings.cfg.prefixes.clone(),
        ..NdpStatus::default()
    };
    let r = Responder {
        table: Table::open(&settings.layout)?,
        groups: Groups::new()?,
        sender: Sender::new()?,
        settings,
        uplink: None,
        status,
        published: None,
        publish,
        due: BTreeMap::new(),
    };
    let (tx, rx) = watch::channel(None);
    Ok((tx, tokio::spawn(r.run(watch, rx))))
}

impl Responder {
    async fn run(mut self, mut store: StoreWatch, mut uplink: watch::Receiver<Option<String>>) {
        let mut uplink_open = true;
        loop {
            let name = uplink.borrow_and_update().clone();
            self.status.error = None;
            if let Err(e) = self.sync(name.as_deref()) {
                warn!(error = %chain(&e), "neighbor discovery: sync failed; retrying");
                self.status.error = Some(chain(&e).to_string());
            }
            let now = Instant::now();
            let wake = self
                .advertise(now)
                .unwrap_or(now + RESYNC)
                .min(now + RESYNC);
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
                r = uplink.changed(), if uplink_open => uplink_open = r.is_ok(),
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
        let pods = pods::reserved(store).map_err(|e| crate::Error::io("reading", store, e))?;
        let want = owned(&self.settings.cfg, up, &pods);
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
        self.rows(addrs);
        Ok(())
    }

    /// The status rows of `addrs`: kept for addresses already answered, new ones since now.
    fn rows(&mut self, addrs: BTreeSet<Ipv6Addr>) {
        let now = unix_now();
        let mut rows: BTreeMap<Ipv6Addr, AddressRow> = std::mem::take(&mut self.status.addresses)
            .into_iter()
            .filter(|r| addrs.contains(&r.address))
            .map(|r| (r.address, r))
            .collect();
        for a in addrs {
            rows.entry(a).or_insert(AddressRow {
                address: a,
                kind: "pod".into(),
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
