//! `sixlane-agent services ...` and `sixlane-agent conntrack ...`: read (and program) the
//! pinned service maps directly, so they work whether or not an agent daemon runs.

use std::{
    collections::HashMap,
    io::{BufReader, Read},
    net::Ipv6Addr,
    path::PathBuf,
};

use anyhow::Context as _;
use serde::Serialize;
use sixlane_attach::AttachMode;
use sixlane_common::{
    layout,
    services::{
        Backend, RevNat, Service as SvcEntry, Slot, SlotKey, SvcKey, SvcPortInfo, backend_flags,
        frontend_kind, scope, svc_flags,
    },
};

use super::{
    conntrack::{self, endpoint},
    plan,
    programmer::Programmer,
    store::{MapId, MapStore, PinnedMaps, dump_typed},
};
use crate::{
    PinLayout,
    model::{DesiredState, NodeState, Service, ServiceId},
};

/// The service datapath's subcommands (flattened into the agent's CLI).
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Services: frontends with their backends, read from the pinned maps (default: list).
    Services {
        #[command(subcommand)]
        action: Option<ServicesAction>,
    },
    /// Service conntrack: flows and their translations (default: list).
    Conntrack {
        #[command(subcommand)]
        action: Option<ConntrackAction>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ServicesAction {
    /// List frontends and backends.
    List,
    /// Program the maps from desired state(s) in JSON: `{"node": NodeState, "services":
    /// [Service, ...]}` (the types of `sixlane_agent::model`); one document, or several in a
    /// row, applied in turn (each prints a report).
    Apply {
        /// File to read ("-" for stdin).
        #[arg(long, default_value = "-")]
        file: PathBuf,
    },
    /// Attach the service datapath's programs to an interface: the pod programs to a pod's
    /// host-side veth (what the CNI plugin does; tc filters by default, or pinned TCX links), the
    /// uplink programs to the node's uplink through pinned TCX links (what the agent daemon
    /// does). Attaching again replaces the programs in place.
    Attach {
        #[arg(long)]
        iface: String,
        #[arg(long, value_enum)]
        role: Role,
        /// How pod programs are attached (`tc` or `tcx`, as the CNI's `attach` key). The uplink
        /// always uses TCX.
        #[arg(long, value_parser = parse_attach_mode)]
        attach: Option<AttachMode>,
    },
}

fn parse_attach_mode(s: &str) -> Result<AttachMode, String> {
    AttachMode::parse(s).ok_or_else(|| format!("{s:?} is not one of tc, tcx"))
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Role {
    Pod,
    Uplink,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConntrackAction {
    /// List entries.
    List,
    /// Remove dead entries now (the agent does this periodically).
    Gc,
    /// Remove every entry.
    Flush,
}

/// Runs a subcommand against the pins under `layout`.
pub fn run(cmd: Cmd, layout: &PinLayout, json: bool) -> anyhow::Result<()> {
    match cmd {
        Cmd::Services { action } => match action.unwrap_or(ServicesAction::List) {
            ServicesAction::List => {
                let mut store = PinnedMaps::open(layout)?;
                let rows = list_services(&mut store)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    print_services(&rows);
                }
            }
            ServicesAction::Apply { file } => apply(layout, &file, json)?,
            ServicesAction::Attach {
                iface,
                role,
                attach,
            } => {
                let (progs, mode) = match (role, attach) {
                    (Role::Pod, mode) => (layout::POD_PROGRAMS, mode.unwrap_or_default()),
                    (Role::Uplink, None | Some(AttachMode::Tcx)) => {
                        (layout::UPLINK_PROGRAMS, AttachMode::Tcx)
                    }
                    (Role::Uplink, Some(AttachMode::Tc)) => {
                        anyhow::bail!("the uplink programs are always attached with TCX links")
                    }
                };
                mode.attach_pinned_all(layout, &iface, &progs, |prog, what| {
                    if !json {
                        println!("{iface}: {prog} {what:?}");
                    }
                })
                .map_err(|(i, e)| {
                    anyhow::Error::new(e)
                        .context(format!("attaching {} to {iface} ({mode})", progs[i].0))
                })?;
            }
        },
        Cmd::Conntrack { action } => {
            let mut store = PinnedMaps::open_some(
                layout,
                &[
                    MapId::Ct,
                    MapId::RevNat,
                    MapId::Info,
                    MapId::Backends,
                    MapId::Affinity,
                ],
            )?;
            let now = conntrack::now_ns();
            match action.unwrap_or(ConntrackAction::List) {
                ConntrackAction::List => {
                    let rows = conntrack::list(&mut store, now)?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&rows)?);
                    } else {
                        print_flows(&rows);
                    }
                }
                ConntrackAction::Gc => {
                    let r = conntrack::gc(&mut store, now)?;
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        println!(
                            "scanned {} entries: {} dead removed, {} stale affinities removed",
                            r.scanned, r.expired, r.affinity_expired
                        );
                    }
                }
                ConntrackAction::Flush => {
                    let n = conntrack::flush(&mut store)?;
                    if json {
                        println!("{}", serde_json::json!({ "flushed": n }));
                    } else {
                        println!("flushed {n} entries");
                    }
                }
            }
        }
    }
    Ok(())
}

fn apply(layout: &PinLayout, file: &PathBuf, json: bool) -> anyhow::Result<()> {
    let reader: Box<dyn Read> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?)
    };
    let mut programmer = Programmer::open(layout)?;
    let stream =
        serde_json::Deserializer::from_reader(BufReader::new(reader)).into_iter::<StateFile>();
    let mut prev: Option<DesiredState> = None;
    for (i, state) in stream.enumerate() {
        let state = state
            .with_context(|| format!("desired state #{}", i + 1))?
            .into_desired();
        // Later documents are changes to the previous one (a watch stream): only the Services
        // that differ are recomputed, as the agent daemon does with its watch events.
        let r = match &prev {
            Some(p) => programmer.apply_changed(&state, &changed_services(p, &state))?,
            None => programmer.apply(&state)?,
        };
        prev = Some(state);
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "{} services ({} changed): {} map writes, {} deletes in {} us ({} us in syscalls)",
                r.services, r.changed, r.writes, r.deletes, r.elapsed_us, r.map_us
            );
            for s in &r.skipped {
                println!("  skipped: {s}");
            }
        }
    }
    Ok(())
}

/// Services added, removed or modified between two desired states.
pub fn changed_services(a: &DesiredState, b: &DesiredState) -> Vec<ServiceId> {
    let mut out: Vec<ServiceId> = a
        .services
        .iter()
        .filter(|(id, s)| b.services.get(*id) != Some(*s))
        .map(|(id, _)| id.clone())
        .collect();
    out.extend(
        b.services
            .keys()
            .filter(|id| !a.services.contains_key(*id))
            .cloned(),
    );
    out
}

/// The JSON form of a [`DesiredState`]: services as a list (JSON object keys must be
/// strings, and a Service's id is a struct).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StateFile {
    pub node: NodeState,
    pub services: Vec<Service>,
}

impl StateFile {
    pub fn into_desired(self) -> DesiredState {
        DesiredState {
            node: self.node,
            services: self
                .services
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect(),
        }
    }
}

/// One frontend entry with its backends.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ServiceRow {
    pub service: String,
    pub frontend: String,
    pub proto: &'static str,
    pub kind: &'static str,
    pub scope: &'static str,
    pub flags: Vec<&'static str>,
    pub affinity_secs: Option<u32>,
    pub backends: Vec<BackendRow>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BackendRow {
    pub id: u32,
    pub endpoint: String,
    pub conditions: Vec<&'static str>,
}

/// Every frontend (echo entries included), sorted by service name.
pub fn list_services(store: &mut impl MapStore) -> anyhow::Result<Vec<ServiceRow>> {
    let svc: Vec<(SvcKey, SvcEntry)> = dump_typed(store, MapId::Svc)?;
    let slots: HashMap<SlotKey, Slot> = dump_typed(store, MapId::Slots)?.into_iter().collect();
    let backends: HashMap<u32, Backend> = dump_typed(store, MapId::Backends)?.into_iter().collect();
    let revnat: HashMap<u32, RevNat> = dump_typed(store, MapId::RevNat)?.into_iter().collect();
    let info: HashMap<u32, SvcPortInfo> = dump_typed(store, MapId::Info)?.into_iter().collect();
    let mut rows: Vec<ServiceRow> = svc
        .iter()
        .map(|(k, s)| {
            let echo = s.flags & svc_flags::ECHO != 0;
            let service = info.get(&s.svc_port).map_or_else(
                || "-".to_owned(),
                |i| {
                    let name = plan::info_name(i);
                    if echo {
                        // An address entry belongs to the Service, not to one of its ports.
                        name.rsplit_once('/')
                            .map_or(name, |(svc, _)| svc)
                            .to_owned()
                    } else {
                        name.to_owned()
                    }
                },
            );
            let kind = if echo {
                "address"
            } else {
                match revnat.get(&s.rev_nat).map(|r| r.kind) {
                    Some(frontend_kind::CLUSTER_IP) => "ClusterIP",
                    Some(frontend_kind::EXTERNAL_IP) => "ExternalIP",
                    Some(frontend_kind::LOAD_BALANCER) => "LoadBalancer",
                    Some(frontend_kind::NODE_PORT) => "NodePort",
                    _ => "?",
                }
            };
            let mut flags = Vec::new();
            for (bit, name) in [
                (svc_flags::AFFINITY, "affinity"),
                (svc_flags::FALLBACK, "terminating-fallback"),
                (svc_flags::LOCAL_ONLY, "local"),
                (svc_flags::SNAT_REMOTE, "snat-remote"),
                (svc_flags::DROP_EMPTY, "drop-if-empty"),
                (svc_flags::ECHO, "answers-echo"),
            ] {
                if s.flags & bit != 0 {
                    flags.push(name);
                }
            }
            let backends = (0..u32::from(s.count))
                .filter_map(|slot| {
                    let id = slots
                        .get(&SlotKey {
                            group: s.group,
                            slot,
                        })?
                        .backend;
                    let b = backends.get(&id);
                    Some(BackendRow {
                        id,
                        endpoint: b
                            .map_or_else(|| "missing".to_owned(), |b| endpoint(b.addr, b.port)),
                        conditions: b.map(conditions).unwrap_or_default(),
                    })
                })
                .collect();
            ServiceRow {
                service,
                frontend: if echo {
                    Ipv6Addr::from(k.addr).to_string()
                } else {
                    endpoint(k.addr, k.port)
                },
                proto: match k.proto {
                    6 => "TCP",
                    17 => "UDP",
                    132 => "SCTP",
                    58 => "ICMPv6",
                    _ => "?",
                },
                kind,
                scope: if k.scope == scope::EXTERNAL {
                    "external"
                } else {
                    "internal"
                },
                flags,
                affinity_secs: (s.flags & svc_flags::AFFINITY != 0).then_some(s.affinity_secs),
                backends,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.service, a.kind == "address", &a.frontend, a.scope).cmp(&(
            &b.service,
            b.kind == "address",
            &b.frontend,
            b.scope,
        ))
    });
    Ok(rows)
}

fn conditions(b: &Backend) -> Vec<&'static str> {
    let mut c = Vec::new();
    for (bit, name) in [
        (backend_flags::READY, "ready"),
        (backend_flags::SERVING, "serving"),
        (backend_flags::TERMINATING, "terminating"),
        (backend_flags::LOCAL, "local"),
    ] {
        if b.flags & bit != 0 {
            c.push(name);
        }
    }
    c
}

fn print_services(rows: &[ServiceRow]) {
    println!(
        "{:<36} {:<44} {:<6} {:<12} {:<8} {:<28} BACKENDS",
        "SERVICE", "FRONTEND", "PROTO", "KIND", "SCOPE", "FLAGS"
    );
    for r in rows {
        let backends = if r.kind == "address" {
            String::new()
        } else if r.backends.is_empty() {
            "(none)".to_owned()
        } else {
            r.backends
                .iter()
                .map(|b| format!("{} ({})", b.endpoint, b.conditions.join(",")))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut flags = r.flags.join(",");
        if let Some(s) = r.affinity_secs {
            flags.push_str(&format!(" {s}s"));
        }
        println!(
            "{:<36} {:<44} {:<6} {:<12} {:<8} {:<28} {}",
            r.service, r.frontend, r.proto, r.kind, r.scope, flags, backends
        );
    }
}

fn print_flows(rows: &[conntrack::FlowRow]) {
    println!(
        "{:<6} {:<8} {:<48} {:<48} {:<12} {:<28} {:>8} SERVICE",
        "PROTO", "DIR", "MATCH (src -> dst)", "REWRITTEN (src -> dst)", "AT", "STATE", "EXPIRES"
    );
    for r in rows {
        let mut state = r.state.join(",");
        if !r.flags.is_empty() {
            state.push_str(&format!(" [{}]", r.flags.join(",")));
        }
        println!(
            "{:<6} {:<8} {:<48} {:<48} {:<12} {:<28} {:>7}s {}",
            r.proto,
            r.direction,
            format!("{} -> {}", r.src, r.dst),
            format!("{} -> {}", r.new_src, r.new_dst),
            r.hook,
            state,
            r.expires_in_s,
            r.service
        );
    }
}
