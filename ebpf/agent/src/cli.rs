//! The operator subcommands of `sixlane-agent` that belong to the node agent: `run`, `status`
//! and `ipam`. `main.rs` only dispatches here.

use std::{
    net::{Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use ipnet::Ipv6Net;
use serde::Serialize;
use sixlane_common::layout;

use crate::{
    PinLayout,
    config::{Config, LogFormat, RoutingMode, SourceMode},
    daemon,
    ops::status::{self, Status, ago},
};

/// `sixlane-agent run`: flags override the configuration file.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (YAML; see docs/agent.md).
    #[arg(long, env = "SIXLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print it resolved, and exit.
    #[arg(long)]
    pub check_config: bool,
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Where services and nodes come from.
    #[arg(long, value_parser = ["kubernetes", "static"])]
    pub source: Option<String>,
    /// Static mode's manifest directory (implies --source static).
    #[arg(long)]
    pub manifests: Option<PathBuf>,
    #[arg(long)]
    pub node_address: Option<Ipv6Addr>,
    #[arg(long)]
    pub uplink: Option<String>,
    #[arg(long)]
    pub pod_cidr: Option<Ipv6Net>,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    #[arg(long)]
    pub cni_bin_dir: Option<PathBuf>,
    #[arg(long)]
    pub cni_data_dir: Option<PathBuf>,
    #[arg(long)]
    pub mtu: Option<u32>,
    /// static | bgp
    #[arg(long, value_parser = ["static", "bgp"])]
    pub routing: Option<String>,
    /// Metrics/health listen address, or `none`.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// kube-proxy healthz listen address, or `none`.
    #[arg(long)]
    pub healthz_listen: Option<String>,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// tracing filter, e.g. `info` or `sixlane_agent=debug`.
    #[arg(long)]
    pub log_level: Option<String>,
}

fn listen(s: &str, flag: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s == "none" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .with_context(|| format!("{flag} {s:?}: not an address:port (or `none`)"))
}

impl RunArgs {
    /// The configuration file (if any) with the flags applied on top.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(v) = &self.node_name {
            c.node.name = Some(v.clone());
        }
        if let Some(v) = &self.source {
            c.source.mode = if v == "static" {
                SourceMode::Static
            } else {
                SourceMode::Kubernetes
            };
        }
        if let Some(v) = &self.manifests {
            c.source.mode = SourceMode::Static;
            c.source.manifest_dir = Some(v.clone());
        }
        if let Some(v) = self.node_address {
            c.node.address = Some(v);
        }
        if let Some(v) = &self.uplink {
            c.node.uplink = Some(v.clone());
        }
        if let Some(v) = self.pod_cidr {
            c.node.pod_cidr = Some(v);
        }
        if let Some(v) = &self.state_dir {
            c.node.state_dir = v.clone();
        }
        if let Some(v) = &self.cni_conf_dir {
            c.cni.conf_dir = v.clone();
        }
        if let Some(v) = &self.cni_bin_dir {
            c.cni.bin_dir = v.clone();
        }
        if let Some(v) = &self.cni_data_dir {
            c.cni.data_dir = v.clone();
        }
        if let Some(v) = self.mtu {
            c.cni.mtu = Some(v);
        }
        if let Some(v) = &self.routing {
            c.routing.mode = if v == "bgp" {
                RoutingMode::Bgp
            } else {
                RoutingMode::Static
            };
        }
        if let Some(v) = &self.metrics_listen {
            c.metrics.listen = listen(v, "--metrics-listen")?;
        }
        if let Some(v) = &self.healthz_listen {
            c.healthz.kube_proxy_listen = listen(v, "--healthz-listen")?;
        }
        if let Some(v) = self.log_format {
            c.logging.format = v;
        }
        if let Some(v) = &self.log_level {
            c.logging.level = v.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIXLANE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().flatten_event(true).init(),
    }
}

/// `sixlane-agent run` with `sink` as the service programmer. Sets up logging itself (the
/// configuration decides its format), so `main` must not have.
pub fn run(args: &RunArgs, pin_root: &Path, sink: daemon::SinkFactory) -> anyhow::Result<()> {
    // Everything is validated before anything is touched.
    let cfg = args.resolve()?;
    if args.check_config {
        println!("{}", serde_yaml_ng::to_string(&cfg)?);
        return Ok(());
    }
    init_logging(cfg.logging.format, &cfg.logging.level);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    Ok(rt.block_on(daemon::run(
        cfg,
        daemon::Runtime {
            pins: PinLayout::new(pin_root),
            sink,
            stop: None,
        },
    ))?)
}

/// `sixlane-agent status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The agent's state directory (holds status.json).
    #[arg(long, default_value = "/var/lib/sixlane")]
    pub state_dir: PathBuf,
}

/// `status` as printed: the agent's last status plus what the pins say now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub agent_running: bool,
    /// Programs pinned under the pin root right now.
    pub datapath_loaded: bool,
    pub pin_root: PathBuf,
    /// Every pinned TCX link (uplink, and pods attached in TCX mode) as `program@interface`.
    pub pinned_links: Vec<String>,
    /// This datapath's tc filters (pods attached in tc mode) in the network namespace `status`
    /// runs in, as `program@interface`. Filters have no pins: run `status` in the node's
    /// namespace (the agent's) to see them.
    pub tc_filters: Vec<String>,
    /// The agent's last status (`None` if it never ran here).
    pub agent: Option<Status>,
}

pub fn status_view(args: &StatusArgs, pin_root: &Path) -> StatusView {
    let pins = PinLayout::new(pin_root);
    let agent = status::read_file(&args.state_dir).ok();
    // A clean stop marks the file; a crash leaves a pid that no longer exists (or was reused:
    // good enough for a status line).
    let running = agent.as_ref().is_some_and(|s| {
        !s.not_ready.iter().any(|r| r == "agent stopped")
            && Path::new(&format!("/proc/{}", s.pid)).exists()
    });
    StatusView {
        agent_running: running,
        datapath_loaded: layout::UPLINK_PROGRAMS
            .iter()
            .chain(layout::POD_PROGRAMS.iter())
            .all(|(p, _)| pins.prog(p).exists()),
        pin_root: pin_root.to_owned(),
        pinned_links: pins
            .links()
            .unwrap_or_default()
            .into_iter()
            .map(|(ifname, prog, _)| format!("{prog}@{ifname}"))
            .collect(),
        tc_filters: sixlane_attach::tc::list_owned(&pins)
            .unwrap_or_default()
            .into_iter()
            .map(|f| format!("{}@{}", f.program, f.ifname))
            .collect(),
        agent,
    }
}

pub fn print_status(v: &StatusView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    print_pins(v);
    let Some(s) = &v.agent else {
        row("agent", "never ran here (no status file)");
        return Ok(());
    };
    row(
        "agent",
        if v.agent_running {
            format!("running (pid {}, started {})", s.pid, ago(s.started_at))
        } else {
            format!("NOT running (last seen as pid {})", s.pid)
        },
    );
    print_node(s);
    print_services(s);
    Ok(())
}

/// One `status` line: a label column, then the value.
fn row(k: &str, v: impl std::fmt::Display) {
    println!("{k:<16} {v}");
}

/// What the pins say now: datapath, TCX links and tc filters.
fn print_pins(v: &StatusView) {
    row(
        "datapath",
        format!(
            "{} ({})",
            if v.datapath_loaded {
                "loaded"
            } else {
                "NOT loaded"
            },
            v.pin_root.display()
        ),
    );
    let pods = |l: &[String]| {
        l.iter()
            .filter(|l| l.starts_with(&format!("{}@", layout::PROG_FROM_POD)))
            .count()
    };
    row(
        "links",
        format!(
            "{} pinned TCX links ({} pod interfaces)",
            v.pinned_links.len(),
            pods(&v.pinned_links)
        ),
    );
    row(
        "tc filters",
        format!(
            "{} in this network namespace ({} pod interfaces)",
            v.tc_filters.len(),
            pods(&v.tc_filters)
        ),
    );
}

/// The agent's node setup: which node, its address and why, pod CIDR, uplink, conflist.
fn print_node(s: &Status) {
    row("node", &s.node);
    row("source", &s.source);
    match &s.node_address {
        Some(c) => {
            row(
                "node address",
                format!("{} on {} ({})", c.addr, c.interface, c.reason),
            );
            for r in &c.rejected {
                row("  not used", format!("{} {}", r.addr, r.why));
            }
        }
        None => row("node address", "none chosen"),
    }
    row(
        "pod CIDR",
        match (&s.pod_cidr, &s.pod_cidr_source) {
            (Some(c), Some(src)) => format!("{c} (from {src})"),
            _ => "none".into(),
        },
    );
    row(
        "uplink",
        match &s.uplink {
            Some(u) => format!(
                "{u}: {}",
                s.links
                    .iter()
                    .map(|l| l.program.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "not attached".into(),
        },
    );
    row(
        "conflist",
        s.conflist
            .as_ref()
            .map_or("not written".into(), |p| p.display().to_string()),
    );
}

/// Routing, the service sink, the last reconcile and readiness.
fn print_services(s: &Status) {
    row(
        "routing",
        format!("{}, {} route(s)", s.routing, s.routes.len()),
    );
    for r in &s.routes {
        row("  route", format!("{} via {} ({})", r.dst, r.via, r.node));
    }
    if let Some(b) = &s.bgp {
        row("bgp", b.summary());
    }
    row(
        "ndp",
        s.ndp.as_ref().map_or("off".into(), |n| {
            format!("{} (sixlane-agent ndp)", n.summary())
        }),
    );
    row("service sink", &s.sink);
    row(
        "load balancer",
        match &s.load_balancer {
            Some(lb) => format!(
                "{} assigned, {} pending; {} (sixlane-agent lb)",
                lb.assigned.len(),
                lb.pending.len(),
                crate::lb::cli::writer_line(&lb.writer)
            ),
            None => "off".into(),
        },
    );
    row(
        "last reconcile",
        match &s.last_reconcile {
            Some(r) => format!(
                "{}: {} services, {} backends, {} held, {} us{}",
                ago(r.at),
                r.services,
                r.backends,
                r.held,
                r.duration_us,
                r.error
                    .as_ref()
                    .map_or(String::new(), |e| format!(", FAILED: {e}"))
            ),
            None => "never".into(),
        },
    );
    row(
        "ready",
        if s.ready {
            "yes".into()
        } else {
            format!("no: {}", s.not_ready.join("; "))
        },
    );
}

/// `sixlane-agent ipam`.
#[derive(Debug, clap::Args)]
pub struct IpamArgs {
    /// The host-local-format IPAM store (the conflist's `dataDir`).
    #[arg(long, default_value = "/var/lib/cni/networks")]
    pub data_dir: PathBuf,
    /// Only this network (the conflist's `name`).
    #[arg(long)]
    pub network: Option<String>,
}

pub fn print_ipam(args: &IpamArgs, json: bool) -> anyhow::Result<()> {
    let rows = crate::ipam::reservations(&args.data_dir, args.network.as_deref())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<40} {:<14} IFNAME",
        "NETWORK", "ADDRESS", "CONTAINER"
    );
    for r in rows {
        println!(
            "{:<10} {:<40} {:<14} {}",
            r.network,
            r.address,
            r.container_id.get(..12).unwrap_or(&r.container_id),
            r.ifname
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct T {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn flags_override_the_file_and_are_validated() {
        let dir = std::env::temp_dir().join(format!("sixlane-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(
            &file,
            "cni:\n  mtu: 1400\nrouting:\n  mode: bgp\nbgp:\n  enabled: true\n  \
             peers: [{name: tor, address: 'fd00::1', asn: 65000}]\n  import: ['fd00:10:244::/56']\n",
        )
        .unwrap();
        let t = T::try_parse_from([
            "x",
            "--config",
            file.to_str().unwrap(),
            "--manifests",
            "/etc/m",
            "--mtu",
            "9000",
            "--healthz-listen",
            "none",
        ])
        .unwrap();
        let c = t.run.resolve().unwrap();
        assert_eq!(c.cni.mtu, Some(9000));
        assert_eq!(c.routing.mode, RoutingMode::Bgp);
        assert_eq!(c.source.mode, SourceMode::Static);
        assert_eq!(c.healthz.kube_proxy_listen, None);
        let bad = T::try_parse_from(["x", "--mtu", "10"]).unwrap();
        let e = bad.run.resolve().unwrap_err().to_string();
        assert!(e.contains("cni.mtu"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_file_is_reported_once() {
        // What `main` prints: the error and its sources, `{:#}`.
        let dir = std::env::temp_dir().join(format!("sixlane-cli-once-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(&file, "nat64:\n  prefx: 64:ff9b::/96\n").unwrap();
        let resolve = |path: &Path| {
            let t = T::try_parse_from(["x", "--config", path.to_str().unwrap()]).unwrap();
            format!("{:#}", t.run.resolve().unwrap_err())
        };
        let e = resolve(&file);
        assert!(e.starts_with(&format!("{}: ", file.display())), "{e}");
        assert_eq!(e.matches("unknown field `prefx`").count(), 1, "{e}");
        let e = resolve(&dir.join("missing.yaml"));
        assert!(e.starts_with("reading "), "{e}");
        assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
