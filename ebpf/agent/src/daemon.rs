//! `sixlane-agent run`: the node agent.
//!
//! Order: configuration validated (by the caller) → datapath loaded and pinned links upgraded →
//! sources started and listed once → node address chosen → uplink programs attached → pod
//! CIDR known → CNI conflist written → then, on every change (paced, `pace.rs`): reconcile →
//! LoadBalancer IP assignment (`lb`) → service sink → routes → BGP announcements (BIRD,
//! `bgp.enabled`) → healthCheckNodePort servers →
//! status.
//!
//! SIGTERM/SIGINT end the process and leave the datapath running: nothing is unpinned or
//! detached, the conflist stays, and the next agent picks the pins and the pods' tc filters up
//! (`repoint_attachments`). BIRD keeps running too, with its sessions and routes: the next agent
//! adopts it.

use std::{
    collections::BTreeMap,
    net::{Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::Ipv6Net;
use prometheus_client::metrics::{counter::Counter, family::Family};
use sixlane_attach::chain;
use sixlane_common::layout;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{debug, error, info, warn};

use crate::{
    Error, PinLayout, Result,
    config::{Config, RoutingMode, ServicesConfig, SourceMode},
    lb::LoadBalancing,
    loader::{Datapath, LoadOptions},
    model::DesiredState,
    nat64::{self, config::Mode as Nat64Mode},
    ndp,
    node::{
        address::{self, Choice},
        cni,
        netlink::{self, RouteTable},
        sysctl,
    },
    ops::{
        http::{self, Ctx, NodePortServers},
        metrics::{KindLabel, Metrics, ModeLabel},
        status::{self, LinkRow, ReconcileStatus, RouteRow, Shared, Status},
    },
    pace::Pace,
    pod_sources,
    reconcile::{NodeInfo, Params, Reconciler, Snapshot},
    routing::{
        self, Routing,
        bird::{password, render::KernelExport},
        metrics::BgpCollector,
    },
    sink::ServiceSink,
    source::{
        manifests,
        store::{Change, Kind, Store},
    },
};

/// The sink is re-applied this often even without changes (level-based healing of map drift).
const RESYNC: Duration = Duration::from_secs(300);
/// Node-level checks (addresses, conflist, routes) run at least this often.
const NODE_TICK: Duration = Duration::from_secs(30);
/// Garbage collection of the datapath's state (expired conntrack and affinity entries, idle
/// NAT64 sessions and unused bindings) runs this often.
const GC_TICK: Duration = Duration::from_secs(10);
/// How often held NAT64 SYNs are checked for their 6 s (`nat64::held`): they are answered at
/// most this late.
const HELD_TICK: Duration = Duration::from_millis(500);
const PREVIOUS_ADDRESS_FILE: &str = "node-address";

/// The node name: config, `$NODE_NAME`, or the host name.
pub fn node_name(cfg: &Config) -> Result<String> {
    if let Some(n) = &cfg.node.name {
        return Ok(n.clone());
    }
    if let Ok(n) = std::env::var("NODE_NAME")
        && !n.is_empty()
    {
        return Ok(n);
    }
    let h = nix::unistd::gethostname().map_err(Error::HostName)?;
    Ok(h.to_string_lossy().to_lowercase())
}

/// Forwards aya-log records from the eBPF programs to tracing at debug level.
struct EbpfLogForwarder;

impl log::Log for EbpfLogForwarder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        debug!(target: "sixlane_agent::ebpf", level = %record.level(), "{}", record.args());
    }
    fn flush(&self) {}
}

/// Starts forwarding the datapath's aya-log records, if the object has any log statements.
fn forward_ebpf_logs(dp: &mut Datapath) {
    match aya_log::EbpfLogger::init_with_logger(dp.ebpf_mut(), EbpfLogForwarder) {
        // SAFETY: the logger owns the ring buffer's fd, and the AsyncFd owns the logger: the fd
        // stays open for as long as it is registered.
        Ok(logger) => match unsafe { AsyncFd::register(logger) } {
            Ok(mut fd) => {
                info!("forwarding eBPF log records (debug level, target sixlane_agent::ebpf)");
                tokio::spawn(async move {
                    loop {
                        let Ok(mut guard) = fd.readable_mut().await else {
                            return;
                        };
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                });
            }
            Err(e) => warn!(error = %chain(&e), "cannot poll the eBPF log ring buffer"),
        },
        Err(aya_log::Error::MapNotFound) => {
            info!("the datapath has no log statements; nothing to forward");
        }
        Err(e) => warn!(error = %chain(&e), "eBPF log forwarding unavailable"),
    }
}

/// Builds the service sink once the datapath is loaded: it gets the loaded object (to take its
/// maps, or find them under `Datapath::layout()`), the metrics (to register collectors, e.g.
/// map entry gauges) and the services configuration. This is where the service map programmer
/// and NAT64 are wired in.
pub type SinkFactory = Box<
    dyn FnOnce(&mut Datapath, &Metrics, &ServicesConfig) -> Result<Box<dyn ServiceSink>> + Send,
>;

/// A factory for a sink that exists already.
pub fn sink(s: impl ServiceSink + 'static) -> SinkFactory {
    Box::new(move |_, _, _| Ok(Box::new(s)))
}

/// What `run` needs besides the configuration.
pub struct Runtime {
    pub pins: PinLayout,
    pub sink: SinkFactory,
    /// Ends the agent like SIGTERM does (for embedding and tests); `None`: signals only.
    pub stop: Option<tokio::sync::oneshot::Receiver<()>>,
}

fn load_previous_address(dir: &Path) -> Option<Ipv6Addr> {
    std::fs::read_to_string(dir.join(PREVIOUS_ADDRESS_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn node_ready_reasons(s: &Status, store: &Store) -> Vec<String> {
    let mut r = Vec::new();
    if !s.datapath_loaded {
        r.push("datapath not loaded".into());
    }
    for k in Kind::CORE {
        if !store.synced(k) {
            r.push(format!("{} not listed yet", k.name()));
        }
    }
    if s.node_address.is_none() {
        r.push("no node address".into());
    }
    if s.links.is_empty() {
        r.push("uplink programs not attached".into());
    }
    if s.pod_cidr.is_none() {
        r.push("no pod CIDR (Node spec.podCIDRs empty and node.podCIDR unset)".into());
    }
    if s.conflist.is_none() {
        r.push("CNI configuration not written".into());
    }
    r.extend(s.sysctls.iter().cloned());
    if s.last_reconcile.as_ref().is_none_or(|l| l.error.is_some()) {
        r.push("services not applied yet".into());
    }
    r
}

/// Wraps a failed start-up step's error with the step's name.
fn step(step: &'static str) -> impl FnOnce(Error) -> Error {
    move |e| Error::Startup {
        step,
        source: Box::new(e),
    }
}

pub async fn run(cfg: Config, rt: Runtime) -> Result<()> {
    let started = Instant::now();
    let node = node_name(&cfg)?;
    let pins = rt.pins;
    info!(node = %node, pin_root = %pins.root().display(), source = ?cfg.source.mode, "sixlane-agent starting");

    // Datapath first: pods created from here on find programs to attach.
    let mut dp = load_datapath(&cfg, &pins)?;
    configure_nat64(&cfg, &pins)?;
    // Before pods can exist; retried with the node checks. One not applied: not ready.
    let sysctls = sysctl::ensure(&cfg);
    if cfg.logging.ebpf {
        forward_ebpf_logs(&mut dp);
    }

    let metrics = Arc::new(Metrics::new(&node, Some(pins.clone())));
    let sink =
        (rt.sink)(&mut dp, &metrics, &cfg.services).map_err(step("setting up the service sink"))?;
    info!(sink = sink.name(), "service sink ready");
    let shared = Arc::new(Shared::new(initial_status(
        &cfg,
        &node,
        &pins,
        sink.name(),
        sysctls,
    )));
    let servers = serve_http(
        &cfg,
        Ctx {
            shared: shared.clone(),
            metrics: metrics.clone(),
            started,
            stale_after: Duration::from_millis(cfg.healthz.stale_after_ms),
        },
    )
    .await?;

    let lb = LoadBalancing::start(&cfg, &node)
        .await
        .map_err(step("starting LoadBalancer IP assignment"))?;
    metrics.register_collector(Box::new(lb.collector()));

    let routing = if cfg.bgp.enabled {
        Some(start_routing(&cfg, &shared, &metrics))
    } else {
        // BIRD's directory outlives the pod: a configuration from when BGP was on must not
        // be run (the task ends with the runtime).
        routing::bird::retire::spawn(cfg.bgp.bird.dir.clone());
        None
    };

    let ndp = if cfg.ndp.enabled {
        Some(start_ndp(&cfg, &pins, &shared, &metrics, &node)?)
    } else {
        stop_answering(&pins);
        None
    };

    let backfill = start_pod_sources(&cfg, &pins, &node, &metrics).await?;
    let (tx, rx) = mpsc::channel::<Vec<Change>>(256);
    let source_task = start_source(&cfg, tx, &metrics).await?;
    let netlink = netlink::connect()?;
    let mut agent = Agent {
        routes: (cfg.routing.mode == RoutingMode::Static)
            .then(|| RouteTable::new(netlink.clone(), cfg.routing.protocol, cfg.routing.table)),
        routing,
        reconciler: Reconciler::new(
            Params {
                node_name: node.clone(),
                proxy_name: cfg.services.proxy_name.clone(),
                local_addresses: vec![],
                cluster_ips_from_outside: cfg.bgp.announces_cluster_ip_ranges(),
            },
            cfg.source.slice_gap_hold(),
        ),
        cfg,
        pins,
        node,
        sink,
        metrics,
        shared,
        netlink,
        dp,
        store: Store::default(),
        hc: NodePortServers::default(),
        setup: NodeSetup::default(),
        published: Published::default(),
        lb,
        passwords: password::Watch::default(),
        ndp,
    };
    agent.event_loop(rx, rt.stop).await?;
    agent.lb.stop().await;

    source_task.abort();
    backfill.abort();
    // The table stays pinned: the datapath goes on answering for the pods. The other nodes
    // take the LoadBalancer IPs over.
    if let Some(n) = agent.ndp.take() {
        n.stop();
    }
    for s in servers {
        s.abort();
    }
    agent.shared.update(|s| {
        s.not_ready = vec!["agent stopped".into()];
    });
    agent.write_status();
    info!(
        "stopped; the datapath stays loaded (pins under {}), pods keep working",
        agent.pins.root().display()
    );
    Ok(())
}

/// Loads the object (reusing compatible pinned maps) and points every pinned link and tc
/// filter at its programs.
fn load_datapath(cfg: &Config, pins: &PinLayout) -> Result<Datapath> {
    let mut dp = Datapath::load(
        pins,
        &LoadOptions {
            replace_incompatible_maps: cfg.datapath.replace_incompatible_maps,
            // NAT64's tables are sized from its pool so a binding never has to evict another;
            // sizes the operator set win.
            max_entries: {
                let mut sizes = cfg.nat64.max_entries();
                sizes.extend(cfg.datapath.map_sizes.clone());
                sizes
            },
        },
    )
    .map_err(step("loading the datapath"))?;
    // The agent runs in the node's network namespace, where the pod veths are: this also
    // re-points the tc filters of pods attached in tc mode.
    let report = dp
        .repoint_attachments()
        .map_err(step("upgrading pinned links and tc filters"))?;
    info!(
        replaced = report.tcx.replaced,
        current = report.tcx.current,
        removed = report.tcx.gone,
        filters_replaced = report.tc.replaced,
        filters_current = report.tc.current,
        filters_foreign = report.tc.foreign,
        "pinned links and tc filters now run this build's programs"
    );
    Ok(dp)
}

/// NAT64 before anything else can create pods: its configuration entry also says "off".
fn configure_nat64(cfg: &Config, pins: &PinLayout) -> Result<()> {
    let n64 = nat64::state::apply(pins, &cfg.nat64).map_err(step("programming NAT64"))?;
    info!(
        mode = ?cfg.nat64.mode,
        prefix = %cfg.nat64.prefix,
        pool = ?cfg.nat64.pool,
        sources_added = n64.sources_added,
        sources_removed = n64.sources_removed,
        static_added = n64.static_added,
        static_removed = n64.static_removed,
        static_kept = n64.static_kept,
        "NAT64 configured"
    );
    Ok(())
}

/// The status before the first listing: what the configuration and the loaded datapath say.
fn initial_status(
    cfg: &Config,
    node: &str,
    pins: &PinLayout,
    sink: &str,
    sysctls: Vec<String>,
) -> Status {
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started_at: status::unix_now(),
        node: node.to_owned(),
        source: match cfg.source.mode {
            SourceMode::Kubernetes => "kubernetes".into(),
            SourceMode::Static => format!(
                "static ({})",
                cfg.source
                    .manifest_dir
                    .as_deref()
                    .unwrap_or(Path::new("?"))
                    .display()
            ),
        },
        pin_root: pins.root().to_owned(),
        datapath_loaded: true,
        routing: match cfg.routing.mode {
            RoutingMode::Static => "static".into(),
            RoutingMode::Bgp => "bgp (routes to other nodes' pods learned by BIRD)".into(),
        },
        sink: sink.into(),
        node_eligible: true,
        sysctls,
        not_ready: vec!["starting".into()],
        ..Default::default()
    }
}

/// With `ndp` off, empties the pinned table a previous agent may have left: the datapath answers
/// for nothing.
fn stop_answering(pins: &PinLayout) {
    match ndp::table::Table::open(pins).and_then(|mut t| t.clear()) {
        Ok(c) if !c.removed.is_empty() => {
            info!(
                addresses = c.removed.len(),
                "neighbor discovery off: no longer answering"
            );
        }
        Ok(_) => {}
        Err(e) => {
            warn!(error = %chain(&e), "neighbor discovery off, but its table could not be emptied");
        }
    }
}

/// Starts Neighbor Discovery for the pods in `ndp.prefixes`; the uplink follows once attached.
/// Its status goes into the agent's (and the status file) whenever it changes.
fn start_ndp(
    cfg: &Config,
    pins: &PinLayout,
    shared: &Arc<Shared>,
    metrics: &Metrics,
    node: &str,
) -> Result<ndp::responder::Handle> {
    metrics.register_collector(Box::new(ndp::metrics::NdpCollector {
        shared: shared.clone(),
    }));
    let settings = ndp::responder::Settings {
        cfg: cfg.ndp.clone(),
        store_dir: cfg.cni.data_dir.join(cni::NETWORK),
        layout: pins.clone(),
        node: node.to_owned(),
    };
    let (shared, dir) = (shared.clone(), cfg.node.state_dir.clone());
    let publish = Box::new(move |n: &ndp::status::NdpStatus| {
        shared.update(|s| s.ndp = Some(n.clone()));
        if let Err(e) = status::write_file(&dir, &shared.status()) {
            debug!(error = %chain(&e), "writing the status file");
        }
    });
    ndp::responder::start(settings, publish).map_err(step("starting Neighbor Discovery"))
}

/// Source validation for the pods attached before it (`pod_sources`), counted in
/// `sixlane_pod_sources_backfilled_total{mode}`.
async fn start_pod_sources(
    cfg: &Config,
    pins: &PinLayout,
    node: &str,
    metrics: &Metrics,
) -> Result<tokio::task::JoinHandle<()>> {
    let annotations = match cfg.source.mode {
        SourceMode::Kubernetes => pod_sources::Annotations::Api {
            client: kube::Client::try_default()
                .await
                .map_err(Error::KubeClient)?,
            node: node.to_owned(),
        },
        SourceMode::Static => pod_sources::Annotations::None,
    };
    let counted = Family::<ModeLabel, Counter>::default();
    metrics.register(
        "pod_sources_backfilled",
        "Pod veths attached before source validation that the agent recorded, by mode",
        counted.clone(),
    );
    let count = move |mode: &str, n: usize| {
        counted
            .get_or_create(&ModeLabel { mode: mode.into() })
            .inc_by(n as u64);
    };
    Ok(pod_sources::spawn(
        pins.clone(),
        cfg.cni.data_dir.join(cni::NETWORK),
        annotations,
        move |p| {
            count("validated", p.validated);
            count("opted_out", p.opted_out);
        },
    ))
}

/// The BGP subsystem: its status goes into the agent's (and the status file) whenever it
/// changes, and into the metrics.
fn start_routing(cfg: &Config, shared: &Arc<Shared>, metrics: &Metrics) -> Routing {
    let settings = routing::Settings::new(&cfg.bgp, cfg.source.mode == SourceMode::Static);
    let (shared, dir) = (shared.clone(), cfg.node.state_dir.clone());
    let r = Routing::start(
        settings,
        Box::new(move |bgp| {
            shared.update(|s| s.bgp = Some(bgp.clone()));
            if let Err(e) = status::write_file(&dir, &shared.status()) {
                debug!(error = %chain(&e), "writing the status file");
            }
        }),
    );
    metrics.register_collector(Box::new(BgpCollector {
        status: r.shared_status(),
    }));
    r
}

/// Starts the metrics and kube-proxy healthz servers that are configured.
async fn serve_http(cfg: &Config, ctx: Ctx) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let bind = |key: &'static str, addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen { key, addr, source })
    };
    let mut servers = Vec::new();
    if let Some(addr) = cfg.metrics.listen {
        let l = bind("metrics.listen", addr).await?;
        info!(%addr, "serving /metrics /healthz /readyz /status");
        servers.push(http::serve(l, http::metrics_handler(ctx.clone())));
    }
    if let Some(addr) = cfg.healthz.kube_proxy_listen {
        let l = bind("healthz.kubeProxyListen", addr).await?;
        info!(%addr, "serving kube-proxy-compatible /healthz");
        servers.push(http::serve(l, http::kube_proxy_handler(ctx)));
    }
    Ok(servers)
}

/// Starts the configured source; its changes arrive on `tx`.
async fn start_source(
    cfg: &Config,
    tx: mpsc::Sender<Vec<Change>>,
    metrics: &Arc<Metrics>,
) -> Result<tokio::task::JoinHandle<()>> {
    Ok(match cfg.source.mode {
        SourceMode::Kubernetes => {
            let client = kube::Client::try_default()
                .await
                .map_err(Error::KubeClient)?;
            tokio::spawn(crate::source::kube::watch_all(
                client,
                tx,
                metrics.clone(),
                cfg.bgp.uses_service_cidrs(),
            ))
        }
        SourceMode::Static => {
            let dir = cfg.source.manifest_dir.clone().expect("validated");
            let m = metrics.clone();
            tokio::spawn(manifests::watch(
                dir,
                cfg.source.poll_interval(),
                tx,
                move |e| {
                    m.manifest_errors.inc();
                    error!(error = %chain(e), "manifest directory not applied; previous state kept");
                },
            ))
        }
    })
}

/// The agent's answers to held NAT64 SYNs (`nat64::held`), in its metrics.
struct HeldCounters {
    sent: Counter,
    failed: Counter,
}

impl HeldCounters {
    fn register(metrics: &Metrics) -> Self {
        let c = Self {
            sent: Counter::default(),
            failed: Counter::default(),
        };
        metrics.register(
            "nat64_port_unreachable_sent",
            "ICMP Port Unreachable sent for IPv4 SYNs held 6 s without a simultaneous open",
            c.sent.clone(),
        );
        metrics.register(
            "nat64_port_unreachable_failed",
            "Held IPv4 SYNs whose Port Unreachable could not be sent (removed all the same)",
            c.failed.clone(),
        );
        c
    }
}

struct Agent {
    cfg: Config,
    pins: PinLayout,
    node: String,
    sink: Box<dyn ServiceSink>,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    netlink: rtnetlink::Handle,
    routes: Option<RouteTable>,
    /// BGP through BIRD (`bgp.enabled`).
    routing: Option<Routing>,
    store: Store,
    reconciler: Reconciler,
    dp: Datapath,
    hc: NodePortServers,
    setup: NodeSetup,
    published: Published,
    lb: LoadBalancing,
    /// BGP peers' password files: a rotated Secret rewrites BIRD's configuration.
    passwords: password::Watch,
    /// Neighbor Discovery (`ndp.enabled`): told the uplink and the L2 LoadBalancer IPs.
    ndp: Option<ndp::responder::Handle>,
}

/// What node setup chose and did so far.
#[derive(Default)]
struct NodeSetup {
    choice: Option<Choice>,
    uplink: Option<String>,
    /// The pod CIDR and where it came from.
    pod_cidr: Option<(Ipv6Net, String)>,
}

/// What the last reconciles handed on: to compare the next one with, and to retry after.
#[derive(Default)]
struct Published {
    state: Option<DesiredState>,
    at: Option<Instant>,
    failed: bool,
    nodes: Option<Vec<NodeInfo>>,
}

impl Published {
    /// The sink is due again: level-based healing, or a failed apply to retry.
    fn resync_due(&self) -> bool {
        self.at.is_none_or(|t| t.elapsed() >= RESYNC) || self.failed
    }
}

// Async methods take `&mut self` even where they only read: the sink is `Send` but not `Sync`,
// and `run`'s future must be `Send` (tests spawn it).
impl Agent {
    /// Reconciles changes (paced), collects garbage and re-checks the node until a signal
    /// or a stop request. An error when the source ends.
    async fn event_loop(
        &mut self,
        mut rx: mpsc::Receiver<Vec<Change>>,
        mut stop: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> Result<()> {
        let handler = |name: &'static str, kind| {
            signal(kind).map_err(|source| Error::Signal {
                signal: name,
                source,
            })
        };
        let mut term = handler("SIGTERM", SignalKind::terminate())?;
        let mut int = handler("SIGINT", SignalKind::interrupt())?;
        let mut node_tick = tokio::time::interval(NODE_TICK);
        node_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gc_tick = tokio::time::interval(GC_TICK);
        gc_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut held_tick = tokio::time::interval(HELD_TICK);
        held_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let held = HeldCounters::register(&self.metrics);
        let mut pace = Pace::new(self.cfg.source.debounce());
        loop {
            let sleep_until = pace.deadline().map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM"); break; }
                _ = int.recv() => { info!("SIGINT"); break; }
                _ = async { stop.as_mut().expect("guarded").await }, if stop.is_some() => {
                    info!("stop requested");
                    break;
                }
                batch = rx.recv() => {
                    let batch = batch.ok_or(Error::SourceStopped)?;
                    if self.take(batch) {
                        let now = Instant::now();
                        self.shared.mark_pending(now);
                        pace.changed(now);
                    }
                }
                _ = async { tokio::time::sleep_until(sleep_until.expect("guarded")).await }, if sleep_until.is_some() => {
                    let next = self.reconcile().await;
                    pace.reconciled(Instant::now(), next);
                }
                _ = gc_tick.tick() => {
                    self.gc();
                }
                _ = held_tick.tick(), if self.cfg.nat64.mode == Nat64Mode::Translate => {
                    self.answer_held(&held);
                }
                _ = node_tick.tick() => {
                    let lb = self.lb.report();
                    self.shared.update(|s| s.load_balancer = lb);
                    if self.store.all_synced() {
                        self.node_setup().await;
                        if self.published.resync_due() || self.passwords_changed() {
                            pace.soon(Instant::now());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies a batch of source changes to the store; whether anything changed.
    fn take(&mut self, batch: Vec<Change>) -> bool {
        let mut changed = false;
        for c in batch {
            changed |= self.store.apply(c);
        }
        for k in Kind::ALL {
            self.metrics
                .objects
                .get_or_create(&KindLabel {
                    kind: k.name().into(),
                })
                .set(self.store.len(k) as i64);
        }
        changed
    }

    /// Chooses the node address, attaches the uplink programs, writes the conflist. Idempotent;
    /// runs after the first complete listing and then periodically.
    async fn node_setup(&mut self) {
        let me = NodeInfo::from_node_list(&self.store, &self.node);
        self.choose_address(me.as_ref()).await;
        self.attach_uplink();
        self.setup.pod_cidr = self.pod_cidr(me.as_ref());
        let conflist = match self.setup.pod_cidr {
            Some((cidr, _)) => self.write_conflist(cidr).await,
            None => None,
        };

        let links: Vec<LinkRow> = self
            .pins
            .links()
            .unwrap_or_default()
            .into_iter()
            .filter(|(ifname, _, _)| Some(ifname) == self.setup.uplink.as_ref())
            .map(|(interface, program, _)| LinkRow { interface, program })
            .collect();
        let choice = self.setup.choice.clone();
        let uplink = self.setup.uplink.clone();
        let pod = self.setup.pod_cidr.clone();
        let eligible = me.as_ref().is_none_or(|n| !n.leaving);
        let sysctls = sysctl::ensure(&self.cfg);
        self.shared.update(|s| {
            s.sysctls = sysctls;
            s.node_address = choice;
            s.uplink = uplink;
            s.pod_cidr = pod.as_ref().map(|p| p.0.to_string());
            s.pod_cidr_source = pod.map(|p| p.1);
            s.conflist = conflist;
            s.links = links;
            s.node_eligible = eligible;
        });
        self.refresh_ready();
    }

    /// The node address (`node::address::choose`), kept across restarts in the state directory
    /// so a node with several candidates keeps its choice.
    async fn choose_address(&mut self, me: Option<&NodeInfo>) {
        let locals = match netlink::local_addrs(&self.netlink).await {
            Ok(l) => l,
            Err(e) => {
                error!(error = %chain(&e), "reading local addresses");
                return;
            }
        };
        let inputs = address::Inputs {
            configured: self.cfg.node.address,
            reported: me.map(|n| n.internal_ips.clone()).unwrap_or_default(),
            previous: self
                .setup
                .choice
                .as_ref()
                .map(|c| c.addr)
                .or_else(|| load_previous_address(&self.cfg.node.state_dir)),
            uplink: self.cfg.node.uplink.clone(),
        };
        let c = match address::choose(&locals, &inputs) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %chain(&e), "no node address");
                return;
            }
        };
        if self.setup.choice.as_ref().map(|o| o.addr) != Some(c.addr) {
            info!(address = %c.addr, interface = %c.interface, reason = %c.reason, "node address chosen");
            for r in &c.rejected {
                debug!(address = %r.addr, why = %r.why, "not used as node address");
            }
            let _ = std::fs::create_dir_all(&self.cfg.node.state_dir);
            if let Err(e) = cni::write_atomic(
                &self.cfg.node.state_dir.join(PREVIOUS_ADDRESS_FILE),
                format!("{}\n", c.addr).as_bytes(),
            ) {
                warn!(error = %chain(&e), "cannot remember the node address");
            }
        }
        self.reconciler.set_local_addresses(vec![c.addr]);
        self.setup.choice = Some(c);
    }

    /// Attaches the uplink programs to the configured uplink, else the node address's
    /// interface; the uplink counts as attached once every program is.
    fn attach_uplink(&mut self) {
        let Some(up) = self
            .cfg
            .node
            .uplink
            .clone()
            .or_else(|| self.setup.choice.as_ref().map(|c| c.interface.clone()))
        else {
            return;
        };
        let mut ok = true;
        for (prog, h) in layout::UPLINK_PROGRAMS {
            match self.dp.attach(prog, &up, h) {
                Ok(what) => {
                    if self.setup.uplink.as_deref() != Some(up.as_str()) {
                        info!(uplink = %up, program = prog, ?what, "uplink program attached");
                    }
                }
                Err(e) => {
                    ok = false;
                    error!(uplink = %up, program = prog, error = %chain(&e), "cannot attach uplink program");
                }
            }
        }
        if ok {
            if let Some(n) = &self.ndp {
                n.uplink.send_if_modified(|cur| {
                    let changed = cur.as_deref() != Some(up.as_str());
                    *cur = Some(up.clone());
                    changed
                });
            }
            self.setup.uplink = Some(up);
        }
    }

    /// The pod CIDR and where it came from: the configuration wins over the Node object.
    fn pod_cidr(&self, me: Option<&NodeInfo>) -> Option<(Ipv6Net, String)> {
        match (self.cfg.node.pod_cidr, me.and_then(|n| n.pod_cidrs.first())) {
            (Some(c), _) => Some((c, "config node.podCIDR".into())),
            (None, Some(c)) => Some((*c, "Node spec.podCIDRs".into())),
            (None, None) => {
                warn!(node = %self.node, "no IPv6 pod CIDR yet (Node spec.podCIDRs, or set node.podCIDR)");
                None
            }
        }
    }

    /// Writes the CNI conflist for `cidr` once the plugin is installed and the pod MTU is known;
    /// its path, if it is in place.
    async fn write_conflist(&mut self, cidr: Ipv6Net) -> Option<PathBuf> {
        if self.cfg.cni.check_binaries
            && let Err(e) = cni::check_binaries(&self.cfg.cni.bin_dir)
        {
            error!(error = %chain(&e), "CNI plugin missing; conflist not written");
            return None;
        }
        let mtu = match (self.cfg.cni.mtu, &self.setup.uplink) {
            (Some(m), _) => Some(m),
            (None, Some(up)) => netlink::link_mtu(&self.netlink, up).await.ok(),
            (None, None) => None,
        };
        let Some(mtu) = mtu else {
            warn!("pod MTU unknown (no uplink yet and cni.mtu unset); conflist not written");
            return None;
        };
        let inputs = cni::Inputs {
            cni: &self.cfg.cni,
            pod_cidr: cidr,
            mtu,
            pin_root: self.pins.root(),
            // Pods reach the prefix with an MTU and MSS sized for the IPv4 path, so TCP
            // through NAT64 never needs PMTUD.
            nat64: self.cfg.nat64.pod_route(mtu).map(|r| cni::Nat64Route {
                prefix: r.prefix,
                mtu: r.mtu,
                advmss: r.advmss,
            }),
        };
        match cni::install(&inputs) {
            Ok((path, wrote)) => {
                if wrote {
                    info!(path = %path.display(), pod_cidr = %cidr, mtu, "CNI configuration written");
                }
                Some(path)
            }
            Err(e) => {
                error!(error = %chain(&e), "writing the CNI configuration");
                None
            }
        }
    }

    /// One garbage-collection pass over the datapath's state: conntrack and affinity entries
    /// past their lifetime (the LRU maps only evict under pressure), then NAT64 sessions and
    /// the bindings they leave unused.
    fn gc(&self) {
        match crate::services::gc_pinned(&self.pins) {
            Ok(r) => debug!(report = ?r, "conntrack garbage collection"),
            Err(e) => warn!(error = %chain(&e), "conntrack garbage collection"),
        }
        if self.cfg.nat64.mode == Nat64Mode::Translate {
            match nat64::gc::collect(&self.pins, &self.cfg.nat64) {
                Ok(r) => debug!(report = ?r, "NAT64 garbage collection"),
                Err(e) => warn!(error = %chain(&e), "NAT64 garbage collection"),
            }
        }
    }

    /// Answers the NAT64 SYNs held past their 6 s with Port Unreachable (`nat64::held`).
    fn answer_held(&self, counters: &HeldCounters) {
        match nat64::held::answer(&self.pins) {
            Ok(r) => {
                counters.sent.inc_by(r.answered as u64);
                counters.failed.inc_by(r.failed as u64);
                if r.answered + r.failed > 0 {
                    debug!(report = ?r, "NAT64 held SYNs answered");
                }
            }
            Err(e) => warn!(error = %chain(&e), "NAT64 held SYNs"),
        }
    }

    fn refresh_ready(&self) {
        let st = self.shared.status();
        let reasons = node_ready_reasons(&st, &self.store);
        self.shared.update(|s| s.not_ready = reasons);
        self.write_status();
    }

    fn write_status(&self) {
        if let Err(e) = status::write_file(&self.cfg.node.state_dir, &self.shared.status()) {
            debug!(error = %chain(&e), "writing the status file");
        }
    }

    /// One reconcile. Returns when to run again (a held Service's grace ends, or a retry).
    async fn reconcile(&mut self) -> Option<Instant> {
        let t0 = Instant::now();
        if self.setup.choice.is_none() && self.store.all_synced() {
            // First complete listing: set the node up before publishing anything.
            self.node_setup().await;
        }
        let mut out = self.reconciler.run(&self.store, t0)?;
        self.lb.reconcile(&self.store, &mut out.snapshot.desired);
        let Snapshot { desired, nodes, .. } = &out.snapshot;

        let changed = self.published.state.as_ref() != Some(desired);
        let mut error = None;
        if changed || self.published.resync_due() {
            error = self.apply(desired, changed, out.held.len());
        }
        let mut route_rows = None;
        if self.published.nodes.as_ref() != Some(nodes) || changed {
            route_rows = self.nodes_changed(nodes).await;
        }
        self.announce(&out.snapshot);
        self.l2_load_balancer_ips(&out.snapshot);
        self.serve_health_checks(desired).await;
        self.record(desired, out.held.len(), t0.elapsed(), error, route_rows);

        let retry = self
            .published
            .failed
            .then(|| Instant::now() + Duration::from_secs(1));
        match (out.recheck_at, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Hands `desired` to the sink; the error, if it failed (retried by the next reconcile).
    fn apply(&mut self, desired: &DesiredState, changed: bool, held: usize) -> Option<String> {
        match self.sink.apply(desired) {
            Ok(()) => {
                if changed {
                    info!(
                        services = desired.services.len(),
                        held, "desired state applied"
                    );
                }
                self.published.state = Some(desired.clone());
                self.published.at = Some(Instant::now());
                self.published.failed = false;
                None
            }
            Err(e) => {
                self.metrics.reconcile_errors.inc();
                error!(sink = self.sink.name(), error = %chain(&*e), "applying the desired state failed; retrying");
                self.published.failed = true;
                Some(chain(&*e).to_string())
            }
        }
    }

    /// The node set changed: our own pod CIDR may have (node setup again), routes to the others
    /// follow, and so does our eligibility. The routes now installed, when routing is static.
    async fn nodes_changed(&mut self, nodes: &[NodeInfo]) -> Option<Vec<RouteRow>> {
        self.published.nodes = Some(nodes.to_vec());
        if NodeInfo::from_node_list(&self.store, &self.node).is_some_and(|me| {
            me.pod_cidrs.first().copied() != self.setup.pod_cidr.as_ref().map(|p| p.0)
        }) {
            self.node_setup().await;
        }
        let rows = self.sync_routes(nodes).await;
        let eligible = nodes
            .iter()
            .find(|n| n.name == self.node)
            .is_none_or(|n| !n.leaving);
        self.shared.update(|s| s.node_eligible = eligible);
        rows
    }

    /// Installs a route per remote node's pod CIDR (and to the NAT64 gateway in route mode);
    /// the routes as status rows. `None` when routing is left to BGP.
    async fn sync_routes(&mut self, nodes: &[NodeInfo]) -> Option<Vec<RouteRow>> {
        let rt = self.routes.as_ref()?;
        let (mut want, warnings) =
            netlink::desired_routes(nodes, &self.node, self.setup.pod_cidr.as_ref().map(|p| p.0));
        // A node without IPv4 sends NAT64 traffic to a translating node.
        if self.cfg.nat64.mode == Nat64Mode::Route
            && let Some(gw) = self.cfg.nat64.gateway
        {
            want.push(netlink::PodRoute {
                dst: self.cfg.nat64.prefix,
                via: gw,
                node: "nat64 gateway".into(),
            });
        }
        for w in warnings {
            debug!("{w}");
        }
        let (_, errors) = rt.sync(&want).await;
        for e in &errors {
            self.metrics.route_errors.inc();
            warn!(error = %chain(e), "route update");
        }
        self.metrics.routes.set(want.len() as i64);
        Some(
            want.iter()
                .map(|r| RouteRow {
                    node: r.node.clone(),
                    dst: r.dst.to_string(),
                    via: r.via.to_string(),
                })
                .collect(),
        )
    }

    /// Whether a BGP peer's password file changed since the last tick (BIRD's configuration
    /// holds the password: the next reconcile writes it again).
    fn passwords_changed(&mut self) -> bool {
        self.routing.is_some() && self.passwords.changed(&self.cfg.bgp.peers)
    }

    /// Hands BIRD what this node announces now (`bgp.enabled`); BIRD is reconfigured only when
    /// that changes, without waiting for it here.
    fn announce(&self, snapshot: &Snapshot) {
        let Some(r) = &self.routing else {
            return;
        };
        let labels = snapshot.own_labels();
        let pod_cidrs: Vec<Ipv6Net> = self.setup.pod_cidr.iter().map(|p| p.0).collect();
        let kernel = (self.cfg.routing.mode == RoutingMode::Bgp).then_some(KernelExport {
            table: self.cfg.routing.table,
        });
        let node = routing::Node {
            name: &self.node,
            labels: &labels,
            pod_cidrs: &pod_cidrs,
        };
        match routing::desired(
            &self.cfg.bgp,
            node,
            &snapshot.desired,
            &snapshot.service_cidrs,
            kernel,
        ) {
            Ok(d) => r.apply(d),
            Err(e) => {
                let why = chain(&e).to_string();
                warn!(error = %why, "BIRD's configuration cannot be written; BIRD keeps its previous one");
                r.unusable(why);
            }
        }
    }

    /// Hands Neighbor Discovery the L2 LoadBalancer IPs and which this node can serve.
    fn l2_load_balancer_ips(&self, snapshot: &Snapshot) {
        let Some(n) = &self.ndp else {
            return;
        };
        let labels = snapshot.own_labels();
        let nodes = snapshot
            .nodes
            .iter()
            .filter(|n| !n.leaving)
            .map(|n| n.name.clone())
            .collect();
        let input = ndp::claims::l2_input(&self.cfg.ndp, &snapshot.desired, &labels, nodes);
        n.l2.send_if_modified(|cur| {
            let changed = cur.as_ref() != Some(&input);
            *cur = Some(input);
            changed
        });
    }

    /// Runs a healthCheckNodePort server per `externalTrafficPolicy: Local` LoadBalancer (if
    /// enabled) and publishes their local endpoint counts.
    async fn serve_health_checks(&mut self, desired: &DesiredState) {
        let hc = http::health_check_ports(desired);
        if self.cfg.healthz.health_check_node_ports {
            let ports: Vec<u16> = hc.keys().copied().collect();
            self.hc
                .sync(&self.shared, self.cfg.healthz.node_port_address, ports)
                .await;
        }
        self.shared.set_local_endpoints(hc);
    }

    /// Metrics and status of one reconcile.
    fn record(
        &self,
        desired: &DesiredState,
        held: usize,
        took: Duration,
        error: Option<String>,
        route_rows: Option<Vec<RouteRow>>,
    ) {
        let backends: usize = desired
            .services
            .values()
            .flat_map(|s| &s.ports)
            .map(|p| p.backends.len())
            .sum();
        self.metrics.services.set(desired.services.len() as i64);
        self.metrics.backends.set(backends as i64);
        self.metrics.held_services.set(held as i64);
        self.metrics.observe_reconcile(took);
        if error.is_none() {
            self.shared.mark_applied();
        }
        let synced: BTreeMap<String, bool> = Kind::CORE
            .iter()
            .map(|k| (k.name().to_string(), self.store.synced(*k)))
            .collect();
        let services = desired.services.len();
        let lb = self.lb.report();
        self.shared.update(|s| {
            s.last_reconcile = Some(ReconcileStatus {
                at: status::unix_now(),
                duration_us: took.as_micros() as u64,
                services,
                backends,
                held,
                error,
            });
            s.synced = synced;
            s.load_balancer = lb;
            if let Some(r) = route_rows {
                s.routes = r;
            }
        });
        self.refresh_ready();
    }
}

impl NodeInfo {
    fn from_node_list(store: &Store, name: &str) -> Option<NodeInfo> {
        store
            .nodes
            .values()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .map(NodeInfo::from_node)
    }
}

/// Where the state directory is, for the CLI (`status`).
pub fn state_dir(cfg: &Config) -> PathBuf {
    cfg.node.state_dir.clone()
}
