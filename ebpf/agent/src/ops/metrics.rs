//! Prometheus metrics (prometheus-client). [`Metrics`] owns the registry and the agent's own
//! instruments; datapath state is read from the pins at scrape time by collectors, so the
//! numbers are right even just after a restart.
//!
//! Other modules add their metrics through [`Metrics::register_collector`] (a
//! [`prometheus_client::collector::Collector`] is called on every scrape; that is how the
//! conntrack and NAT64 entry gauges are wired) or [`Metrics::register`] for a plain instrument.

use std::{
    fmt::Write as _,
    os::fd::{AsFd as _, AsRawFd as _},
    sync::Mutex,
    time::Duration,
};

use aya::maps::{MapData, MapInfo, MapType};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
        info::Info,
    },
    registry::{Metric, Registry},
};

use crate::PinLayout;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchEventLabels {
    pub kind: String,
    /// `apply`, `delete`, `relist`.
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub version: String,
    pub node: String,
}

/// The agent's instruments. Cheap to clone handles (prometheus-client metrics are `Arc`s).
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    pub reconcile_duration: Histogram,
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    pub services: Gauge,
    pub backends: Gauge,
    pub held_services: Gauge,
    pub watch_events: Family<WatchEventLabels, Counter>,
    pub watch_errors: Family<KindLabel, Counter>,
    pub watch_synced: Family<KindLabel, Gauge>,
    pub watch_last_event: Family<KindLabel, Gauge>,
    pub objects: Family<KindLabel, Gauge>,
    pub manifest_errors: Counter,
    pub routes: Gauge,
    pub route_errors: Counter,
    pub health_checks: Family<CodeLabel, Counter>,
}

impl Metrics {
    pub fn new(node: &str, pins: Option<PinLayout>) -> Self {
        let mut r = Registry::with_prefix("sixlane");
        let m = Self {
            reconcile_duration: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            reconciles: Counter::default(),
            reconcile_errors: Counter::default(),
            services: Gauge::default(),
            backends: Gauge::default(),
            held_services: Gauge::default(),
            watch_events: Family::default(),
            watch_errors: Family::default(),
            watch_synced: Family::default(),
            watch_last_event: Family::default(),
            objects: Family::default(),
            manifest_errors: Counter::default(),
            routes: Gauge::default(),
            route_errors: Counter::default(),
            health_checks: Family::default(),
            registry: Mutex::new(Registry::default()),
        };
        r.register(
            "agent",
            "The running agent",
            Info::new(InfoLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                node: node.into(),
            }),
        );
        m.register_reconcile(&mut r);
        m.register_sources(&mut r);
        m.register_node(&mut r);
        if let Some(pins) = pins {
            r.register_collector(Box::new(DatapathCollector { pins }));
        }
        *m.registry.lock().expect("poisoned") = r;
        m
    }

    /// Reconciles and what they published.
    fn register_reconcile(&self, r: &mut Registry) {
        r.register(
            "reconcile_duration_seconds",
            "Time from a source change being picked up to the sink having applied the new state",
            self.reconcile_duration.clone(),
        );
        r.register(
            "reconciles",
            "Desired states built and applied",
            self.reconciles.clone(),
        );
        r.register(
            "reconcile_errors",
            "Desired states the service sink failed to apply (retried with backoff)",
            self.reconcile_errors.clone(),
        );
        r.register(
            "services",
            "Services in the last desired state",
            self.services.clone(),
        );
        r.register(
            "backends",
            "Backends (service port x endpoint) in the last desired state",
            self.backends.clone(),
        );
        r.register(
            "held_services",
            "Services whose EndpointSlices vanished and whose previous backends are held",
            self.held_services.clone(),
        );
    }

    /// The sources: watch events and errors, listing state, objects held.
    fn register_sources(&self, r: &mut Registry) {
        r.register(
            "k8s_watch_events",
            "Watch events received, by kind and event",
            self.watch_events.clone(),
        );
        r.register(
            "k8s_watch_errors",
            "Watch/list errors (the watcher reconnects with backoff; 410 Gone relists)",
            self.watch_errors.clone(),
        );
        r.register(
            "k8s_watch_synced",
            "1 once a kind has been listed completely (and after every relist)",
            self.watch_synced.clone(),
        );
        r.register(
            "k8s_watch_last_event_timestamp_seconds",
            "Unix time of the last event or relist per kind",
            self.watch_last_event.clone(),
        );
        r.register(
            "objects",
            "Objects in the store, by kind",
            self.objects.clone(),
        );
        r.register(
            "manifest_errors",
            "Static manifest directory reads that failed (the previous snapshot stays)",
            self.manifest_errors.clone(),
        );
    }

    /// The node: pod CIDR routes and kube-proxy healthz answers.
    fn register_node(&self, r: &mut Registry) {
        r.register(
            "routes",
            "Pod CIDR routes to other nodes installed",
            self.routes.clone(),
        );
        r.register(
            "route_errors",
            "Failed route updates",
            self.route_errors.clone(),
        );
        r.register(
            "proxy_healthz",
            "kube-proxy-compatible healthz answers, by HTTP code",
            self.health_checks.clone(),
        );
    }

    /// Registers a plain instrument under `sixlane_<name>`.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .lock()
            .expect("poisoned")
            .register(name, help, metric);
    }

    /// Registers a collector called on every scrape (for state read from maps).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry
            .lock()
            .expect("poisoned")
            .register_collector(collector);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().expect("poisoned");
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
            let _ = writeln!(out, "# encoding error: {e}");
        }
        out
    }

    pub fn observe_reconcile(&self, took: Duration) {
        self.reconciles.inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }
}

/// Datapath counters and map fill levels, read from the pins at scrape time.
#[derive(Debug)]
struct DatapathCollector {
    pins: PinLayout,
}

impl Collector for DatapathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if let Ok(rows) = crate::metrics::read(&self.pins) {
            for (name, help, pick) in [
                (
                    "datapath_packets",
                    "Packets seen by the datapath, by direction, reason and verdict",
                    (|r: &crate::metrics::CounterRow| r.packets) as fn(&_) -> u64,
                ),
                (
                    "datapath_bytes",
                    "Bytes seen by the datapath, by direction, reason and verdict",
                    |r: &crate::metrics::CounterRow| r.bytes,
                ),
            ] {
                let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                for r in &rows {
                    let labels = [
                        ("direction", r.direction),
                        ("reason", r.reason),
                        ("verdict", r.verdict),
                    ];
                    ConstCounter::new(pick(r)).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        let fills = map_fill(&self.pins);
        {
            let mut m = encoder.encode_descriptor(
                "map_capacity",
                "max_entries of each pinned datapath map",
                None,
                MetricType::Gauge,
            )?;
            for f in &fills {
                ConstGauge::new(i64::from(f.capacity))
                    .encode(m.encode_family(&[("map", f.name.as_str())])?)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "map_entries",
            "Entries in each pinned hash/LRU/LPM datapath map (arrays are always full)",
            None,
            MetricType::Gauge,
        )?;
        for f in &fills {
            if let Some(n) = f.entries {
                ConstGauge::new(i64::from(n))
                    .encode(m.encode_family(&[("map", f.name.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// One pinned map's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFill {
    pub name: String,
    pub capacity: u32,
    /// `None` for arrays (every slot exists).
    pub entries: Option<u32>,
}

/// Fill level of every map pinned under `pins`.
pub fn map_fill(pins: &PinLayout) -> Vec<MapFill> {
    let Ok(dir) = std::fs::read_dir(pins.maps_dir()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let path = e.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let Ok(info) = MapInfo::from_pin(&path) else {
            continue;
        };
        let counted = matches!(
            info.map_type(),
            Ok(MapType::Hash
                | MapType::PerCpuHash
                | MapType::LruHash
                | MapType::LruPerCpuHash
                | MapType::LpmTrie)
        );
        let entries = if counted {
            MapData::from_pin(&path)
                .ok()
                .and_then(|m| count_keys(&m, info.key_size(), info.max_entries()))
        } else {
            None
        };
        out.push(MapFill {
            name,
            capacity: info.max_entries(),
            entries,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Counts keys with `BPF_MAP_GET_NEXT_KEY` (aya has no untyped key iterator).
fn count_keys(map: &MapData, key_size: u32, max: u32) -> Option<u32> {
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        next_key: u64,
    }
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    let fd = map.fd().as_fd().as_raw_fd();
    let mut cur = vec![0u8; key_size as usize];
    let mut next = vec![0u8; key_size as usize];
    let mut first = true;
    let mut n = 0u32;
    // Bounded: a map being filled concurrently can restart the walk; never loop forever.
    while n <= max {
        let attr = Attr {
            map_fd: fd as u32,
            _pad: 0,
            key: if first { 0 } else { cur.as_ptr() as u64 },
            next_key: next.as_mut_ptr() as u64,
        };
        // SAFETY: `attr` is a valid bpf_attr prefix for BPF_MAP_GET_NEXT_KEY; `key`/`next_key`
        // point at buffers of the map's key size that outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_GET_NEXT_KEY,
                &attr as *const Attr,
                size_of::<Attr>() as u32,
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return (err.raw_os_error() == Some(libc::ENOENT)).then_some(n);
        }
        n += 1;
        first = false;
        std::mem::swap(&mut cur, &mut next);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_agent_metrics() {
        let m = Metrics::new("node-a", None);
        m.observe_reconcile(Duration::from_millis(3));
        m.watch_events
            .get_or_create(&WatchEventLabels {
                kind: "Service".into(),
                event: "apply".into(),
            })
            .inc();
        m.register("extra", "a module's own gauge", Gauge::<i64>::default());
        let text = m.encode();
        for want in [
            "sixlane_agent_info{version=\"",
            "node=\"node-a\"",
            "sixlane_reconcile_duration_seconds_count 1",
            "sixlane_reconciles_total 1",
            "sixlane_k8s_watch_events_total{kind=\"Service\",event=\"apply\"} 1",
            "sixlane_extra 0",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
