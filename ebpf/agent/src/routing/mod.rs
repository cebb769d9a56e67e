//! Reachability from outside the cluster: BGP with BIRD 2 as the engine. sixlane never speaks
//! BGP itself; it decides what this node announces and learns and writes BIRD's configuration.
//!
//! - [`config`]: the `bgp` section, resolved per node; [`router_id`]: IDs derived from node
//!   names;
//! - [`announce`]: what this node announces, a pure function of the cluster state;
//! - [`bird`]: BIRD's configuration, its control socket and (static mode) its process;
//! - [`status`], [`metrics`], [`cli`]: what the subsystem reports, and where.
//!
//! The subsystem the daemon owns ([`Routing`]): on every reconcile the daemon hands over what
//! BIRD should run ([`Desired`], from [`desired`]: the rendered configuration, the peers and
//! what is announced). A task of its own puts it in place (`bird::install`: `bird -p`, then an
//! atomic rename) and asks BIRD to `configure` through its control socket, only when the text
//! changed: BIRD reconfigures in place, so changed routes or filters never reset a session. The
//! same task asks BIRD for the protocols' states every few seconds and publishes a
//! [`BgpStatus`] for `status`, `/status`, the metrics and `sixlane-agent bgp`.
//!
//! Nothing here blocks the daemon: BIRD being down, slow or restarting, or a peer being down,
//! shows in the status and never delays the datapath, pods or readiness. In static mode the
//! subsystem also keeps BIRD running ([`bird::supervise`]).

pub mod announce;
pub mod bird;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod router_id;
pub mod status;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    os::unix::fs::DirBuilderExt as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use ipnet::Ipv6Net;
use sixlane_attach::chain;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{debug, error, info, warn};

use crate::{
    Error, Result,
    model::DesiredState,
    ops::status::unix_now,
    routing::{
        announce::{Input, announcements, excluded},
        bird::{
            Paths,
            control::Control,
            install::install,
            password,
            render::{KernelExport, Render, peer_protocol, render},
            supervise::{Spec, Supervisor},
        },
        config::BgpConfig,
        status::{Announced, BgpStatus, BirdStatus, ConfigStatus, PeerRef, peer_rows},
    },
};

/// How often BIRD is asked for the sessions' states (and a configuration it has not confirmed
/// is sent again).
const POLL: Duration = Duration::from_secs(5);

/// Where BIRD is and who runs it (`bgp.bird`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Configuration, control socket and pid file.
    pub dir: PathBuf,
    /// BIRD's binary: `bird -p` checks every configuration, and static mode runs it.
    pub binary: PathBuf,
    /// Keep BIRD running (static mode); otherwise BIRD is the pod's `bird` container.
    pub supervise: bool,
}

impl Settings {
    /// From the `bgp` section; `static_source`: the agent reads manifests (static mode).
    pub fn new(cfg: &BgpConfig, static_source: bool) -> Self {
        Self {
            dir: cfg.bird.dir.clone(),
            binary: cfg.bird.binary.clone(),
            supervise: cfg.bird.supervised(static_source),
        }
    }
}

/// What BIRD should run, from one reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// BIRD's whole configuration.
    pub config: String,
    /// This node's peers, with their BIRD protocol names.
    pub peers: Vec<PeerRef>,
    /// What `config` announces.
    pub announced: Vec<Announced>,
}

/// This node, as what it announces depends on it.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub pod_cidrs: &'a [Ipv6Net],
}

/// What BIRD should run on `node`: its peers and announcements from `cfg` and the cluster
/// state (`services`, the cluster's ServiceCIDR ranges), rendered. `kernel`: with
/// `routing.mode: bgp`, where learned routes go. An error when a peer's password cannot be
/// read.
pub fn desired(
    cfg: &BgpConfig,
    node: Node<'_>,
    services: &DesiredState,
    service_cidrs: &[Ipv6Net],
    kernel: Option<KernelExport>,
) -> Result<Desired> {
    let resolved = cfg.for_node(node.name, node.labels);
    let list = announcements(&Input {
        node_excluded: excluded(node.labels),
        pod_cidrs: node.pod_cidrs,
        cluster_ranges: cfg.cluster_ranges(service_cidrs),
        services,
        cfg,
    });
    let passwords = password::read(&resolved.peers)?;
    let config = render(&Render {
        node: &resolved,
        announcements: &list,
        import: &cfg.import,
        kernel,
        graceful_restart_secs: cfg.graceful_restart_secs,
        passwords: &passwords,
    });
    let peers = resolved
        .peers
        .iter()
        .filter_map(|p| match p.address {
            IpAddr::V6(address) => Some(PeerRef {
                name: p.name.clone(),
                protocol: peer_protocol(&p.name),
                address,
                asn: p.asn,
            }),
            // Refused by validation.
            IpAddr::V4(_) => None,
        })
        .collect();
    let announced = list
        .iter()
        .map(|a| Announced {
            prefix: a.prefix,
            kind: a.kind.name().into(),
        })
        .collect();
    Ok(Desired {
        config,
        peers,
        announced,
    })
}

/// What the task is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Want {
    Run(Desired),
    /// No configuration could be made (why): BIRD keeps the one it has.
    Unusable(String),
}

/// Called with each new status (the daemon copies it into its own).
pub type Publish = Box<dyn Fn(&BgpStatus) + Send + Sync>;

/// The routing subsystem: a task putting configurations in place and polling BIRD. Dropping it
/// stops the task and leaves BIRD running with its configuration.
#[derive(Debug)]
pub struct Routing {
    want: watch::Sender<Option<Arc<Want>>>,
    status: Arc<Mutex<BgpStatus>>,
    task: JoinHandle<()>,
}

impl Routing {
    /// Starts the task (and, with `supervise`, BIRD's supervisor: a BIRD already answering is
    /// adopted, else one is started once the first configuration is in place).
    pub fn start(settings: Settings, publish: Publish) -> Self {
        let paths = Paths::new(&settings.dir);
        let status = Arc::new(Mutex::new(BgpStatus {
            bird: BirdStatus {
                socket: paths.socket.clone(),
                config: paths.config.clone(),
                ..Default::default()
            },
            ..Default::default()
        }));
        let (want, rx) = watch::channel(None);
        let worker = Worker {
            control: Control::new(&paths.socket),
            binary: settings.binary.clone(),
            supervise: settings.supervise.then_some(Spec {
                binary: settings.binary,
                paths: paths.clone(),
            }),
            supervisor: None,
            paths,
            desired: None,
            on_disk: None,
            configured: false,
            config: ConfigStatus::default(),
            status: status.clone(),
            publish,
        };
        let task = tokio::spawn(worker.run(rx));
        Self { want, status, task }
    }

    /// Hands over what BIRD should run; returns at once (the task applies the latest).
    pub fn apply(&self, desired: Desired) {
        self.send(Want::Run(desired));
    }

    /// No configuration could be made this time (`why`): the status says so, BIRD keeps
    /// running the previous one.
    pub fn unusable(&self, why: String) {
        self.send(Want::Unusable(why));
    }

    fn send(&self, want: Want) {
        self.want.send_if_modified(|cur| {
            if cur.as_deref() == Some(&want) {
                return false;
            }
            *cur = Some(Arc::new(want));
            true
        });
    }

    /// The last status.
    pub fn status(&self) -> BgpStatus {
        self.status.lock().expect("poisoned").clone()
    }

    /// The status as the task keeps it (for the metrics collector).
    pub fn shared_status(&self) -> Arc<Mutex<BgpStatus>> {
        self.status.clone()
    }
}

impl Drop for Routing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Worker {
    paths: Paths,
    binary: PathBuf,
    control: Control,
    /// How to start BIRD, until the supervisor is running.
    supervise: Option<Spec>,
    supervisor: Option<Supervisor>,
    /// The last configuration put in place (`None` until this agent put one there).
    desired: Option<Desired>,
    /// What `paths.config` holds (an earlier agent's at start).
    on_disk: Option<String>,
    /// BIRD confirmed it runs `on_disk`.
    configured: bool,
    config: ConfigStatus,
    status: Arc<Mutex<BgpStatus>>,
    publish: Publish,
}

impl Worker {
    async fn run(mut self, mut rx: watch::Receiver<Option<Arc<Want>>>) {
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&self.paths.dir)
        {
            error!(dir = %self.paths.dir.display(), error = %e, "cannot create BIRD's directory");
        }
        self.on_disk = tokio::fs::read_to_string(&self.paths.config).await.ok();
        self.supervisor = self.supervise.take().map(Supervisor::start);
        // BIRD started, died or adopted: reported at once, not at the next tick.
        let mut process = self.supervisor.as_ref().map(Supervisor::changes);
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let want = rx.borrow_and_update().clone();
                    match want.as_deref() {
                        Some(Want::Run(d)) => self.apply(d.clone()).await,
                        Some(Want::Unusable(why)) => self.config.error = Some(why.clone()),
                        None => {}
                    }
                }
                _ = tick.tick() => self.configure().await,
                _ = async { process.as_mut().expect("guarded").changed().await }, if process.is_some() => {}
            }
            self.poll().await;
        }
    }

    /// Puts `d.config` in place and has BIRD take it.
    async fn apply(&mut self, d: Desired) {
        if let Err(e) = self.put_in_place(&d.config).await {
            let why = chain(&e).to_string();
            error!(error = %why, "BIRD configuration not applied; BIRD keeps the previous one");
            self.config.error = Some(why);
            return;
        }
        self.desired = Some(d);
        self.config.error = None;
        if let Some(s) = &self.supervisor {
            s.config_ready();
        }
        self.configure().await;
    }

    /// Writes, checks and renames `text` into place, unless it is there already.
    async fn put_in_place(&mut self, text: &str) -> Result<()> {
        if self.on_disk.as_deref() == Some(text) {
            return Ok(());
        }
        install(&self.binary, &self.paths, text).await?;
        self.on_disk = Some(text.to_owned());
        self.configured = false;
        Ok(())
    }

    /// Asks BIRD to run the configuration this agent put in place, unless it confirmed it.
    async fn configure(&mut self) {
        if self.configured || self.desired.is_none() {
            return;
        }
        match self.control.configure(&self.paths.config).await {
            Ok(outcome) => {
                debug!(?outcome, "BIRD reconfigured");
                self.configured = true;
                self.config.configured_at = Some(unix_now());
                self.config.pending = false;
                self.config.error = None;
            }
            // Not running (yet): it reads the file when it starts.
            Err(e @ Error::BirdConnect { .. }) => {
                debug!(error = %chain(&e), "BIRD not answering; configuration pending");
                self.config.pending = true;
            }
            Err(e) => {
                let why = chain(&e).to_string();
                warn!(error = %why, "BIRD did not take the configuration; retrying");
                self.config.pending = true;
                self.config.error = Some(why);
            }
        }
    }

    /// Asks BIRD for the sessions and publishes the status when it changed.
    async fn poll(&mut self) {
        let peers = self
            .desired
            .as_ref()
            .map(|d| d.peers.clone())
            .unwrap_or_default();
        let mut bird = BirdStatus {
            socket: self.paths.socket.clone(),
            config: self.paths.config.clone(),
            process: self.supervisor.as_ref().map(Supervisor::state),
            ..Default::default()
        };
        let asked = self
            .control
            .snapshot(|p| peers.iter().any(|r| r.protocol == p.name))
            .await;
        let (protocols, received) = match asked {
            Ok(s) => {
                bird.answering = true;
                bird.version = Some(s.version);
                (Some(s.protocols), s.received)
            }
            Err(e) => {
                bird.error = Some(chain(&e).to_string());
                (None, BTreeMap::new())
            }
        };
        let next = BgpStatus {
            bird,
            config: self.config.clone(),
            peers: peer_rows(&peers, protocols.as_deref(), &received, unix_now()),
            announced: self
                .desired
                .as_ref()
                .map(|d| d.announced.clone())
                .unwrap_or_default(),
        };
        let prev = std::mem::replace(&mut *self.status.lock().expect("poisoned"), next.clone());
        if prev != next {
            log_changes(&prev, &next);
            (self.publish)(&next);
        }
    }
}

/// Logs BIRD coming and going and sessions going up and down.
fn log_changes(prev: &BgpStatus, next: &BgpStatus) {
    if prev.bird.answering != next.bird.answering {
        match &next.bird.error {
            None => info!(socket = %next.bird.socket.display(), "BIRD answering"),
            Some(e) => warn!(error = %e, "BIRD not answering"),
        }
    }
    for p in &next.peers {
        let was_up = prev.peers.iter().any(|q| q.name == p.name && q.up);
        if p.up && !was_up {
            info!(peer = %p.name, address = ?p.address, "BGP session established");
        } else if !p.up && was_up {
            warn!(
                peer = %p.name,
                state = %p.state,
                reason = p.down_reason.map_or("", |r| r.as_str()),
                last_error = p.last_error.as_deref().unwrap_or(""),
                "BGP session down"
            );
        }
    }
}
