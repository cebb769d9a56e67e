//! The plugin configuration (stdin), validated field by field so every error names its key.
//! Nothing here touches the system.
//!
//! Keys (see docs/cni.md): `cniVersion`/`cniVersions`, `name`, `type`, `ipam` (host-local's keys),
//! `mtu`, `dataplane` (`required`|`optional`|`off`), `attach` (`tc`|`tcx`), `pinRoot`,
//! `podGateway`, `logFile`,
//! `logLevel`, `dns`, `args.cni.ips`, `runtimeConfig.{ips,ipRanges}`, the pod annotation
//! [`SOURCE_VALIDATION_ANNOTATION`] in `runtimeConfig.io.kubernetes.cri.pod-annotations`,
//! `prevResult`, `cni.dev/valid-attachments`.

use std::{
    net::{IpAddr, Ipv6Addr},
    path::PathBuf,
};

use ipnet::{IpNet, Ipv6Net};
use serde_json::{Map, Value};
pub use sixlane_attach::AttachMode;

use crate::{
    error::{Error, Result},
    ipam::{IpamConf, RangeSet, RangeSpec, store::DEFAULT_DATA_DIR},
    log::Level,
    spec::{Command, DEFAULT_POD_GATEWAY, Dns, Env, Route, Version, valid_name},
};

/// The capability under which containerd passes the pod's annotations (`runtimeConfig`), to
/// plugins whose configuration declares it.
pub const POD_ANNOTATIONS: &str = "io.kubernetes.cri.pod-annotations";
pub use sixlane_common::source::SOURCE_VALIDATION_ANNOTATION;

/// Longest network name (it is a directory name under `dataDir`).
pub const MAX_NETWORK_NAME: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataplane {
    /// ADD fails (code 11) unless the agent's programs are pinned; they are attached.
    Required,
    /// Attached when pinned, skipped (with a warning) when not.
    Optional,
    Off,
}

/// Where the pod's routes point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodGateway {
    /// A link-local address on every host veth (default `fe80::1`).
    LinkLocal(Ipv6Addr),
    /// The range's gateway, as ptp does (a /128 of it on the host veth).
    Range,
}

#[derive(Clone, Debug)]
pub struct Conf {
    pub version: Version,
    pub name: String,
    pub mtu: Option<u32>,
    pub dataplane: Dataplane,
    /// How the pod programs are attached when the dataplane is on.
    pub attach: AttachMode,
    pub pin_root: PathBuf,
    pub pod_gateway: PodGateway,
    pub log_file: Option<PathBuf>,
    pub log_level: Level,
    pub dns: Dns,
    pub ipam: IpamConf,
    pub prev_result: Option<Value>,
    pub valid_attachments: Vec<(String, String)>,
    /// Whether the pod's sources are validated (its [`SOURCE_VALIDATION_ANNOTATION`]).
    pub source_validation: bool,
}

/// Just enough to report errors in the right version before the rest is validated.
pub fn decode(stdin: &[u8]) -> Result<(Map<String, Value>, Version)> {
    let v: Value = serde_json::from_slice(stdin).map_err(Error::Decode)?;
    let Value::Object(obj) = v else {
        return Err(Error::NotAnObject);
    };
    let cni_version = opt_str(&obj, "cniVersion", "cniVersion")?;
    let list: Vec<String> = match obj.get("cniVersions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::wrong_type(format!("cniVersions[{i}]"), "a string"))
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(Error::wrong_type("cniVersions", "a list of strings")),
    };
    let version = Version::select(cni_version.as_deref(), &list)?;
    Ok((obj, version))
}

/// Validates everything `cmd` needs.
pub fn parse(obj: &Map<String, Value>, version: Version, cmd: Command, env: &Env) -> Result<Conf> {
    // The runtime chose this plugin by `type`; it is not used further, but must decode.
    opt_str(obj, "type", "type")?;
    let name = opt_str(obj, "name", "name")?
        .ok_or_else(|| Error::config("name", "missing network name"))?;
    if name.len() > MAX_NETWORK_NAME || !valid_name(&name) {
        return Err(Error::config(
            "name",
            format!(
                "{name:?} is not a valid network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, at most \
                 {MAX_NETWORK_NAME} bytes)"
            ),
        ));
    }
    let mtu = match obj.get("mtu") {
        None | Some(Value::Null) => None,
        Some(v) => {
            if !v.is_number() {
                return Err(Error::wrong_type("mtu", "an integer"));
            }
            let m = v
                .as_u64()
                .ok_or_else(|| Error::config("mtu", format!("{v} is not a whole number")))?;
            if !(1280..=65535).contains(&m) {
                return Err(Error::config(
                    "mtu",
                    format!("{m} is out of range (IPv6 needs at least 1280, at most 65535)"),
                ));
            }
            Some(m as u32)
        }
    };
    let dataplane = match opt_str(obj, "dataplane", "dataplane")?.as_deref() {
        None | Some("off") => Dataplane::Off,
        Some("required") => Dataplane::Required,
        Some("optional") => Dataplane::Optional,
        Some(other) => {
            return Err(Error::config(
                "dataplane",
                format!("{other:?} is not one of required, optional, off"),
            ));
        }
    };
    let attach = match opt_str(obj, "attach", "attach")?.as_deref() {
        None => AttachMode::default(),
        Some(s) => AttachMode::parse(s)
            .ok_or_else(|| Error::config("attach", format!("{s:?} is not one of tc, tcx")))?,
    };
    let pin_root = opt_str(obj, "pinRoot", "pinRoot")?
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(sixlane_common::layout::DEFAULT_PIN_ROOT));
    if !pin_root.is_absolute() {
        return Err(Error::config("pinRoot", "must be an absolute path"));
    }
    let pod_gateway = match opt_str(obj, "podGateway", "podGateway")?.as_deref() {
        None => PodGateway::LinkLocal(DEFAULT_POD_GATEWAY),
        Some("range") => PodGateway::Range,
        Some(s) => match s.parse::<Ipv6Addr>() {
            Ok(ip) if ip.is_unicast_link_local() => PodGateway::LinkLocal(ip),
            _ => {
                return Err(Error::config(
                    "podGateway",
                    format!("{s:?} is neither \"range\" nor a link-local IPv6 address"),
                ));
            }
        },
    };
    let log_file = opt_str(obj, "logFile", "logFile")?.map(PathBuf::from);
    let log_level = match opt_str(obj, "logLevel", "logLevel")?.as_deref() {
        None => Level::Info,
        Some(s) => Level::parse(s).ok_or_else(|| {
            Error::config(
                "logLevel",
                format!("{s:?} is not one of error, warn, info, debug"),
            )
        })?,
    };
    let dns = parse_dns(obj.get("dns"), "dns")?;
    let prev_result = match obj.get("prevResult") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => return Err(Error::wrong_type("prevResult", "an object")),
    };
    let valid_attachments = if cmd == Command::Gc {
        parse_attachments(obj)?
    } else {
        Vec::new()
    };
    let ipam = parse_ipam(obj, &name, env)?;
    let source_validation = parse_source_validation(obj)?;
    Ok(Conf {
        version,
        name,
        mtu,
        dataplane,
        attach,
        pin_root,
        pod_gateway,
        log_file,
        log_level,
        dns,
        ipam,
        prev_result,
        valid_attachments,
        source_validation,
    })
}

/// The pod's [`SOURCE_VALIDATION_ANNOTATION`], from the annotations the runtime passed: on
/// unless it says `disabled`.
fn parse_source_validation(obj: &Map<String, Value>) -> Result<bool> {
    let field = format!("runtimeConfig.{POD_ANNOTATIONS}");
    let annotations = match obj
        .get("runtimeConfig")
        .and_then(|rc| rc.get(POD_ANNOTATIONS))
    {
        None | Some(Value::Null) => return Ok(true),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Error::wrong_type(field, "an object")),
    };
    let field = format!("{field}.{SOURCE_VALIDATION_ANNOTATION}");
    match annotations.get(SOURCE_VALIDATION_ANNOTATION) {
        None | Some(Value::Null) => Ok(true),
        Some(Value::String(s)) if s == "enabled" => Ok(true),
        Some(Value::String(s)) if s == "disabled" => Ok(false),
        Some(Value::String(s)) => Err(Error::config(
            field,
            format!("{s:?} is neither \"enabled\" nor \"disabled\""),
        )),
        Some(_) => Err(Error::wrong_type(field, "a string")),
    }
}

/// Reads only the logging keys (so errors found later are logged where the operator looks).
pub fn log_settings(obj: &Map<String, Value>) -> (Option<PathBuf>, Level) {
    let file = obj
        .get("logFile")
        .and_then(Value::as_str)
        .map(PathBuf::from);
    let level = obj
        .get("logLevel")
        .and_then(Value::as_str)
        .and_then(Level::parse)
        .unwrap_or(Level::Info);
    (file, level)
}

fn parse_attachments(obj: &Map<String, Value>) -> Result<Vec<(String, String)>> {
    const KEY: &str = "cni.dev/valid-attachments";
    let list = match obj.get(KEY) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(Error::wrong_type(KEY, "a list")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let field = format!("{KEY}[{i}]");
        let Value::Object(a) = a else {
            return Err(Error::wrong_type(field, "an object"));
        };
        let id = opt_str(a, "containerID", &format!("{field}.containerID"))?
            .ok_or_else(|| Error::config(format!("{field}.containerID"), "missing"))?;
        let ifname = opt_str(a, "ifname", &format!("{field}.ifname"))?
            .ok_or_else(|| Error::config(format!("{field}.ifname"), "missing"))?;
        out.push((id, ifname));
    }
    Ok(out)
}

fn parse_ipam(obj: &Map<String, Value>, name: &str, env: &Env) -> Result<IpamConf> {
    let ipam = match obj.get("ipam") {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => return Err(Error::config("ipam", "missing")),
        Some(_) => return Err(Error::wrong_type("ipam", "an object")),
    };
    let kind =
        opt_str(ipam, "type", "ipam.type")?.ok_or_else(|| Error::config("ipam.type", "missing"))?;
    if kind != "sixlane-ipam" && kind != "host-local" {
        return Err(Error::Unsupported {
            field: "ipam.type".into(),
            value: kind,
            reason: "sixlane has its IPAM built in: use \"sixlane-ipam\" or \"host-local\" \
                     (same keys and on-disk format)"
                .into(),
        });
    }
    let data_dir = opt_str(ipam, "dataDir", "ipam.dataDir")?
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if data_dir.as_os_str().is_empty() {
        return Err(Error::config("ipam.dataDir", "must not be empty"));
    }
    // Range sets: runtimeConfig.ipRanges, then a legacy top-level range, then ipam.ranges (the
    // order host-local builds).
    let mut specs: Vec<(String, Vec<RangeSpec>)> = Vec::new();
    let runtime = match obj.get("runtimeConfig") {
        Some(Value::Object(m)) => Some(m),
        None | Some(Value::Null) => None,
        Some(_) => return Err(Error::wrong_type("runtimeConfig", "an object")),
    };
    if let Some(rc) = runtime
        && let Some(v) = rc.get("ipRanges")
        && !v.is_null()
    {
        specs.extend(parse_range_sets(v, "runtimeConfig.ipRanges")?);
    }
    if ipam.contains_key("subnet") {
        specs.push(("ipam".into(), vec![parse_range(ipam, "ipam")?]));
    }
    if let Some(v) = ipam.get("ranges")
        && !v.is_null()
    {
        specs.extend(parse_range_sets(v, "ipam.ranges")?);
    }
    if specs.is_empty() {
        return Err(Error::config("ipam.ranges", "no IP ranges specified"));
    }
    let mut ranges = Vec::with_capacity(specs.len());
    for (field, set) in &specs {
        let rs = RangeSet::canonicalize(set).map_err(|(idx, f, m)| {
            let at = match idx {
                Some(i) if field != "ipam" => format!("{field}[{i}]"),
                _ => field.clone(),
            };
            Error::config(
                if f.is_empty() {
                    at
                } else {
                    format!("{at}.{f}")
                },
                m,
            )
        })?;
        ranges.push(rs);
    }
    for i in 0..ranges.len() {
        for j in i + 1..ranges.len() {
            if ranges[i].overlaps(&ranges[j]) {
                return Err(Error::config(
                    "ipam.ranges",
                    format!("range set {i} overlaps with {j}"),
                ));
            }
        }
    }
    let routes = match ipam.get("routes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, r)| parse_route(r, &format!("ipam.routes[{i}]")))
            .collect::<Result<_>>()?,
        Some(_) => return Err(Error::wrong_type("ipam.routes", "a list")),
    };
    let mut dns = Dns::default();
    if let Some(path) = opt_str(ipam, "resolvConf", "ipam.resolvConf")? {
        dns = parse_resolv_conf(&PathBuf::from(path))?;
    }
    // Requested addresses, in host-local's order: CNI_ARGS IP=, args.cni.ips, runtimeConfig.ips.
    let mut requested = Vec::new();
    for (k, v) in &env.args {
        if k == "IP" {
            for (i, s) in v.split(',').enumerate() {
                let f = format!("CNI_ARGS IP[{i}]");
                requested.push((parse_requested(s, &f)?, f));
            }
        }
    }
    if let Some(Value::Object(args)) = obj.get("args")
        && let Some(Value::Object(cni)) = args.get("cni")
    {
        requested.extend(parse_ip_list(cni.get("ips"), "args.cni.ips")?);
    }
    if let Some(rc) = runtime {
        requested.extend(parse_ip_list(rc.get("ips"), "runtimeConfig.ips")?);
    }
    let _ = name;
    // Reject requests that cannot be honoured before anything is written (host-local finds out
    // after allocating, then rolls back).
    for (ip, field) in &requested {
        match ranges.iter().find_map(|set| set.range_for(*ip)) {
            None => {
                return Err(Error::config(
                    field.as_str(),
                    format!("requested address {ip} is in no configured range"),
                ));
            }
            Some(r) if r.gateway == *ip => {
                return Err(Error::config(
                    field.as_str(),
                    format!("requested address {ip} is the gateway of range {r}"),
                ));
            }
            Some(_) => {}
        }
    }
    let requested = requested.into_iter().map(|(ip, _)| ip).collect();
    Ok(IpamConf {
        kind,
        ranges,
        routes,
        data_dir,
        dns,
        requested,
    })
}

fn parse_ip_list(v: Option<&Value>, field: &str) -> Result<Vec<(Ipv6Addr, String)>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let f = format!("{field}[{i}]");
                let s = s
                    .as_str()
                    .ok_or_else(|| Error::wrong_type(&f, "a string"))?;
                Ok((parse_requested(s, &f)?, f))
            })
            .collect(),
        Some(_) => Err(Error::wrong_type(field, "a list of addresses")),
    }
}

/// A requested address: `ip` or `ip/len` (the prefix is ignored, as in host-local).
fn parse_requested(s: &str, field: &str) -> Result<Ipv6Addr> {
    let addr = s.split('/').next().unwrap_or("").trim();
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) if ip.to_ipv4_mapped().is_none() => Ok(ip),
        Ok(_) => Err(Error::config(
            field,
            format!("{s} is an IPv4 address; sixlane is IPv6-only"),
        )),
        Err(_) => Err(Error::config(field, format!("{s:?} is not an IP address"))),
    }
}

fn parse_range_sets(v: &Value, field: &str) -> Result<Vec<(String, Vec<RangeSpec>)>> {
    let Value::Array(sets) = v else {
        return Err(Error::wrong_type(field, "a list of range sets (lists)"));
    };
    let mut out = Vec::with_capacity(sets.len());
    for (i, set) in sets.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let Value::Array(ranges) = set else {
            return Err(Error::wrong_type(f, "a list of ranges"));
        };
        let mut specs = Vec::with_capacity(ranges.len());
        for (j, r) in ranges.iter().enumerate() {
            let rf = format!("{f}[{j}]");
            let Value::Object(m) = r else {
                return Err(Error::wrong_type(rf, "an object"));
            };
            specs.push(parse_range(m, &rf)?);
        }
        out.push((f, specs));
    }
    Ok(out)
}

fn parse_range(m: &Map<String, Value>, field: &str) -> Result<RangeSpec> {
    let sf = format!("{field}.subnet");
    let s = opt_str(m, "subnet", &sf)?.ok_or_else(|| Error::config(&sf, "missing"))?;
    let subnet = match s.parse::<IpNet>() {
        Ok(IpNet::V6(n)) if !is_v4_mapped(&n) => n,
        Ok(_) => {
            return Err(Error::config(
                sf,
                format!("{s} is an IPv4 range; sixlane is IPv6-only (use an IPv6 subnet)"),
            ));
        }
        Err(_) => {
            return Err(Error::config(
                sf,
                format!("{s:?} is not a subnet in CIDR notation"),
            ));
        }
    };
    let addr = |key: &str| -> Result<Option<Ipv6Addr>> {
        let f = format!("{field}.{key}");
        match opt_str(m, key, &f)? {
            None => Ok(None),
            Some(s) => match s.parse::<IpAddr>() {
                Ok(IpAddr::V6(ip)) if ip.to_ipv4_mapped().is_none() => Ok(Some(ip)),
                Ok(_) => Err(Error::config(
                    f,
                    format!("{s} is an IPv4 address; sixlane is IPv6-only"),
                )),
                Err(_) => Err(Error::config(f, format!("{s:?} is not an IP address"))),
            },
        }
    };
    Ok(RangeSpec {
        subnet,
        start: addr("rangeStart")?,
        end: addr("rangeEnd")?,
        gateway: addr("gateway")?,
    })
}

fn is_v4_mapped(n: &Ipv6Net) -> bool {
    n.prefix_len() >= 96 && n.network().to_ipv4_mapped().is_some()
}

fn parse_route(v: &Value, field: &str) -> Result<Route> {
    let Value::Object(m) = v else {
        return Err(Error::wrong_type(field, "an object"));
    };
    let df = format!("{field}.dst");
    let dst = opt_str(m, "dst", &df)?.ok_or_else(|| Error::config(&df, "missing"))?;
    let dst = match dst.parse::<IpNet>() {
        Ok(n @ IpNet::V6(_)) => n.trunc(),
        Ok(IpNet::V4(_)) => {
            return Err(Error::config(
                df,
                format!("{dst} is an IPv4 route; sixlane is IPv6-only"),
            ));
        }
        Err(_) => {
            return Err(Error::config(
                df,
                format!("{dst:?} is not in CIDR notation"),
            ));
        }
    };
    let gf = format!("{field}.gw");
    let gw = match opt_str(m, "gw", &gf)? {
        None => None,
        Some(s) => match s.parse::<IpAddr>() {
            Ok(ip @ IpAddr::V6(_)) => Some(ip),
            _ => return Err(Error::config(gf, format!("{s:?} is not an IPv6 address"))),
        },
    };
    let num = |key: &str, max: u64| -> Result<Option<u64>> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) if !v.is_number() => {
                Err(Error::wrong_type(format!("{field}.{key}"), "an integer"))
            }
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(Error::config(
                    format!("{field}.{key}"),
                    format!("must be an integer between 0 and {max}"),
                )),
            },
        }
    };
    let mtu = num("mtu", 65535)?;
    if let Some(m) = mtu
        && m != 0
        && m < 1280
    {
        return Err(Error::config(
            format!("{field}.mtu"),
            format!("{m} is below IPv6's minimum MTU of 1280"),
        ));
    }
    Ok(Route {
        dst,
        gw,
        mtu: mtu.map(|n| n as u32),
        advmss: num("advmss", 65535)?.map(|n| n as u32),
        priority: num("priority", u64::from(u32::MAX))?.map(|n| n as u32),
        table: num("table", u64::from(u32::MAX))?.map(|n| n as u32),
        scope: num("scope", 255)?.map(|n| n as u8),
    })
}

fn parse_dns(v: Option<&Value>, field: &str) -> Result<Dns> {
    match v {
        None | Some(Value::Null) => Ok(Dns::default()),
        Some(v @ Value::Object(_)) => {
            serde_json::from_value(v.clone()).map_err(|e| Error::config_decode(field, e))
        }
        Some(_) => Err(Error::wrong_type(field, "an object")),
    }
}

/// host-local's `resolvConf`: nameserver/domain/search/options lines.
fn parse_resolv_conf(path: &PathBuf) -> Result<Dns> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        let mut it = line.split_whitespace();
        match it.next() {
            Some("nameserver") => dns.nameservers.extend(it.next().map(str::to_owned)),
            Some("domain") => dns.domain = it.next().unwrap_or_default().to_owned(),
            Some("search") => dns.search = it.map(str::to_owned).collect(),
            Some("options") => dns.options.extend(it.map(str::to_owned)),
            _ => {}
        }
    }
    Ok(dns)
}

fn opt_str(m: &Map<String, Value>, key: &str, field: &str) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if s.contains('\0') {
                return Err(Error::config(field, "contains a NUL byte"));
            }
            Ok(Some(s.clone()))
        }
        Some(_) => Err(Error::wrong_type(field, "a string")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn env() -> Env {
        Env {
            container_id: "c1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: Vec::new(),
        }
    }

    fn base() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "sixlane",
            "type": "sixlane",
            "ipam": {
                "type": "sixlane-ipam",
                "ranges": [[{"subnet": "fd00:10:244:1::/64"}]],
                "routes": [{"dst": "::/0"}, {"dst": "64:ff9b::/96", "mtu": 1480, "advmss": 1420}],
                "dataDir": "/tmp/x"
            },
            "mtu": 1500,
            "dataplane": "required",
            "pinRoot": "/sys/fs/bpf/sixlane",
            "logFile": "/var/log/sixlane-cni.log",
            "logLevel": "info"
        })
    }

    /// One invalid configuration: [`base`] with `value` set at `path` (removed with `None`),
    /// and the error it must give.
    struct Case {
        /// What is wrong with it (failures print it).
        name: &'static str,
        path: &'static str,
        value: Option<Value>,
        /// The spec's error code.
        code: u32,
        /// A fragment of the error's message.
        message: &'static str,
    }

    /// Sets (or with `None` removes) the value at a `/a/b` path, creating objects on the way.
    fn set(v: &mut Value, path: &str, value: Option<Value>) {
        let mut keys: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let last = keys.pop().unwrap();
        let mut cur = v;
        for k in keys {
            cur = cur
                .as_object_mut()
                .unwrap()
                .entry(k)
                .or_insert_with(|| json!({}));
        }
        let obj = cur.as_object_mut().unwrap();
        match value {
            Some(x) => {
                obj.insert(last.to_owned(), x);
            }
            None => {
                obj.remove(last);
            }
        }
    }

    fn parse_value(v: &Value) -> Result<Conf> {
        let bytes = serde_json::to_vec(v).unwrap();
        let (obj, ver) = decode(&bytes)?;
        parse(&obj, ver, Command::Add, &env())
    }

    #[test]
    fn the_documented_contract_parses() {
        let c = parse_value(&base()).unwrap();
        assert_eq!(c.version, Version::V1_0_0);
        assert_eq!(c.dataplane, Dataplane::Required);
        assert_eq!(c.attach, AttachMode::Tc, "tc is the default");
        assert_eq!(c.mtu, Some(1500));
        assert_eq!(c.ipam.routes.len(), 2);
        assert_eq!(c.ipam.routes[1].mtu, Some(1480));
        assert_eq!(c.ipam.routes[1].advmss, Some(1420));
        assert_eq!(c.pod_gateway, PodGateway::LinkLocal(DEFAULT_POD_GATEWAY));
        assert_eq!(
            c.ipam.ranges[0].0[0].gateway,
            "fd00:10:244:1::1".parse::<Ipv6Addr>().unwrap()
        );
        let example = include_str!("../examples/10-sixlane.conflist");
        let list: Value = serde_json::from_str(example).unwrap();
        let mut plugin = list["plugins"][0].clone();
        plugin["cniVersion"] = list["cniVersion"].clone();
        plugin["name"] = list["name"].clone();
        parse_value(&plugin).unwrap();
    }

    #[test]
    fn source_validation_follows_the_pod_annotation() {
        assert!(
            parse_value(&base()).unwrap().source_validation,
            "on by default"
        );
        for (annotations, want) in [
            (json!({}), Some(true)),
            (json!({"other": "x"}), Some(true)),
            (json!({SOURCE_VALIDATION_ANNOTATION: "enabled"}), Some(true)),
            (
                json!({SOURCE_VALIDATION_ANNOTATION: "disabled"}),
                Some(false),
            ),
            (json!({SOURCE_VALIDATION_ANNOTATION: "off"}), None),
            (json!({SOURCE_VALIDATION_ANNOTATION: false}), None),
        ] {
            let mut v = base();
            v["runtimeConfig"] = json!({POD_ANNOTATIONS: annotations});
            let got = parse_value(&v);
            match want {
                Some(w) => assert_eq!(got.unwrap().source_validation, w, "{annotations}"),
                None => {
                    let e = got.unwrap_err();
                    assert!(e.to_string().contains(SOURCE_VALIDATION_ANNOTATION), "{e}");
                }
            }
        }
    }

    #[test]
    fn attach_modes() {
        for (value, want) in [("tc", AttachMode::Tc), ("tcx", AttachMode::Tcx)] {
            let mut v = base();
            v["attach"] = json!(value);
            assert_eq!(parse_value(&v).unwrap().attach, want);
        }
    }

    #[test]
    fn requested_addresses_from_all_three_sources() {
        let mut v = base();
        v["args"] = json!({"cni": {"ips": ["fd00:10:244:1::20/64"]}});
        v["runtimeConfig"] = json!({"ips": ["fd00:10:244:1::30"]});
        let bytes = serde_json::to_vec(&v).unwrap();
        let (obj, ver) = decode(&bytes).unwrap();
        let mut e = env();
        e.args = vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("IP".into(), "fd00:10:244:1::10".into()),
        ];
        let c = parse(&obj, ver, Command::Add, &e).unwrap();
        let want: Vec<Ipv6Addr> = [
            "fd00:10:244:1::10",
            "fd00:10:244:1::20",
            "fd00:10:244:1::30",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(c.ipam.requested, want);
    }

    #[test]
    fn runtime_ranges_and_legacy_range_are_prepended() {
        let mut v = base();
        v["ipam"]["subnet"] = json!("fd00:20::/64");
        v["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "fd00:30::/64"}]]});
        let c = parse_value(&v).unwrap();
        let firsts: Vec<String> = c
            .ipam
            .ranges
            .iter()
            .map(|s| s.0[0].subnet.to_string())
            .collect();
        assert_eq!(
            firsts,
            ["fd00:30::/64", "fd00:20::/64", "fd00:10:244:1::/64"]
        );
    }

    #[test]
    fn bad_configs_get_the_right_code_and_field() {
        let cases = [
            Case {
                name: "unsupported cniVersion",
                path: "/cniVersion",
                value: Some(json!("0.3.1")),
                code: 1,
                message: "0.3.1",
            },
            Case {
                name: "no cniVersion",
                path: "/cniVersion",
                value: None,
                code: 1,
                message: "cniVersion",
            },
            Case {
                name: "cniVersions that is not a list",
                path: "/cniVersions",
                value: Some(json!("1.0.0")),
                code: 6,
                message: "cniVersions",
            },
            Case {
                name: "network name climbing out of the data dir",
                path: "/name",
                value: Some(json!("../etc")),
                code: 7,
                message: "name",
            },
            Case {
                name: "network name with a slash",
                path: "/name",
                value: Some(json!("a/b")),
                code: 7,
                message: "name",
            },
            Case {
                name: "network name with a NUL",
                path: "/name",
                value: Some(json!("a\u{0}b")),
                code: 7,
                message: "name",
            },
            Case {
                name: "network name of 300 bytes",
                path: "/name",
                value: Some(json!("x".repeat(300))),
                code: 7,
                message: "name",
            },
            Case {
                name: "no network name",
                path: "/name",
                value: None,
                code: 7,
                message: "name",
            },
            Case {
                name: "MTU that is not a number",
                path: "/mtu",
                value: Some(json!("big")),
                code: 6,
                message: "mtu",
            },
            Case {
                name: "MTU below IPv6's 1280",
                path: "/mtu",
                value: Some(json!(1000)),
                code: 7,
                message: "mtu",
            },
            Case {
                name: "plugin type that is not a string",
                path: "/type",
                value: Some(json!(5)),
                code: 6,
                message: "type must be a string",
            },
            Case {
                name: "ipam section that is a string",
                path: "/ipam",
                value: Some(json!("sixlane-ipam")),
                code: 6,
                message: "ipam must be an object",
            },
            Case {
                name: "dns with a nameserver list that is a string",
                path: "/dns",
                value: Some(json!({"nameservers": "fd00::53"})),
                code: 6,
                message: "dns",
            },
            Case {
                name: "unknown dataplane mode",
                path: "/dataplane",
                value: Some(json!("maybe")),
                code: 7,
                message: "dataplane",
            },
            Case {
                name: "unknown attach mode",
                path: "/attach",
                value: Some(json!("xdp")),
                code: 7,
                message: "attach",
            },
            Case {
                name: "attach mode that is not a string",
                path: "/attach",
                value: Some(json!(1)),
                code: 6,
                message: "attach",
            },
            Case {
                name: "relative pin root",
                path: "/pinRoot",
                value: Some(json!("rel/ative")),
                code: 7,
                message: "pinRoot",
            },
            Case {
                name: "pod gateway that is not link-local",
                path: "/podGateway",
                value: Some(json!("fd00::1")),
                code: 7,
                message: "podGateway",
            },
            Case {
                name: "unknown log level",
                path: "/logLevel",
                value: Some(json!("loud")),
                code: 7,
                message: "logLevel",
            },
            Case {
                name: "an IPAM type other than sixlane's",
                path: "/ipam/type",
                value: Some(json!("dhcp")),
                code: 2,
                message: "ipam.type",
            },
            Case {
                name: "no ipam section",
                path: "/ipam",
                value: None,
                code: 7,
                message: "ipam",
            },
            Case {
                name: "no ranges",
                path: "/ipam/ranges",
                value: Some(json!([])),
                code: 7,
                message: "ipam.ranges",
            },
            Case {
                name: "an IPv4 range",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "10.0.0.0/24"}]])),
                code: 7,
                message: "IPv6-only",
            },
            Case {
                name: "an IPv4-mapped range",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "::ffff:10.0.0.0/120"}]])),
                code: 7,
                message: "IPv6-only",
            },
            Case {
                name: "a subnet with host bits set",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "fd00::1/64"}]])),
                code: 7,
                message: "ipam.ranges[0][0].subnet",
            },
            Case {
                name: "a /127 subnet",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "fd00::/127"}]])),
                code: 7,
                message: "too small",
            },
            Case {
                name: "a /128 subnet",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "fd00::/128"}]])),
                code: 7,
                message: "too small",
            },
            Case {
                name: "rangeStart outside the subnet",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "fd00::/64", "rangeStart": "fd01::1"}]])),
                code: 7,
                message: "ipam.ranges[0][0].rangeStart",
            },
            Case {
                name: "rangeEnd outside the subnet",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "fd00::/64", "rangeEnd": "fd01::1"}]])),
                code: 7,
                message: "ipam.ranges[0][0].rangeEnd",
            },
            Case {
                name: "an IPv4 gateway",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "fd00::/64", "gateway": "10.0.0.1"}]])),
                code: 7,
                message: "ipam.ranges[0][0].gateway",
            },
            Case {
                name: "overlapping range sets",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "fd00::/64"}], [{"subnet": "fd00::/96"}]])),
                code: 7,
                message: "range set 0 overlaps with 1",
            },
            Case {
                name: "overlapping ranges in one set",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "fd00::/64"}, {"subnet": "fd00::/96"}]])),
                code: 7,
                message: "overlap",
            },
            Case {
                name: "a subnet that is no prefix",
                path: "/ipam/ranges",
                value: Some(json!([[{"subnet": "nonsense"}]])),
                code: 7,
                message: "subnet",
            },
            Case {
                name: "an IPv4 route",
                path: "/ipam/routes",
                value: Some(json!([{"dst": "0.0.0.0/0"}])),
                code: 7,
                message: "ipam.routes[0].dst",
            },
            Case {
                name: "a route MTU below 1280",
                path: "/ipam/routes",
                value: Some(json!([{"dst": "::/0", "mtu": 500}])),
                code: 7,
                message: "ipam.routes[0].mtu",
            },
            Case {
                name: "a route without a destination",
                path: "/ipam/routes",
                value: Some(json!([{"gw": "fe80::1"}])),
                code: 7,
                message: "ipam.routes[0].dst",
            },
            Case {
                name: "a requested IPv4 address",
                path: "/runtimeConfig/ips",
                value: Some(json!(["10.1.1.1"])),
                code: 7,
                message: "runtimeConfig.ips[0]",
            },
            Case {
                name: "a requested address outside the ranges",
                path: "/runtimeConfig/ips",
                value: Some(json!(["fd00:99::1"])),
                code: 7,
                message: "runtimeConfig.ips[0]",
            },
            Case {
                name: "the gateway requested as a pod address",
                path: "/runtimeConfig/ips",
                value: Some(json!(["fd00:10:244:1::1"])),
                code: 7,
                message: "gateway",
            },
            Case {
                name: "a requested address that is no address",
                path: "/args/cni/ips",
                value: Some(json!(["nope"])),
                code: 7,
                message: "args.cni.ips[0]",
            },
        ];
        for Case {
            name,
            path,
            value,
            code,
            message,
        } in cases
        {
            let mut v = base();
            set(&mut v, path, value);
            let e = parse_value(&v).unwrap_err();
            assert_eq!(e.code(), code, "{name}: error code of {e}");
            assert!(
                e.to_string().contains(message),
                "{name}: {e:?} lacks {message:?}"
            );
        }
        // Malformed JSON is a decode failure.
        assert_eq!(decode(b"{\"cniVersion\": ").unwrap_err().code(), 6);
        assert_eq!(decode(b"[1,2]").unwrap_err().code(), 6);
    }

    #[test]
    fn a_decode_failure_names_the_parser_error_once() {
        let e = decode(b"{\"cniVersion\": ").unwrap_err();
        let doc = crate::spec::error_json(Version::V1_1_0, &e);
        assert_eq!(doc["msg"], "failed to decode content");
        let details = doc["details"].as_str().unwrap();
        assert!(
            details.starts_with("decoding the network configuration: EOF while parsing"),
            "{details}"
        );
        assert_eq!(details.matches("EOF").count(), 1, "{details}");
    }

    #[test]
    fn valid_attachments_for_gc() {
        let mut v = base();
        v["cniVersion"] = json!("1.1.0");
        v["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
        let bytes = serde_json::to_vec(&v).unwrap();
        let (obj, ver) = decode(&bytes).unwrap();
        let c = parse(&obj, ver, Command::Gc, &Env::default()).unwrap();
        assert_eq!(c.valid_attachments, [("a".to_owned(), "eth0".to_owned())]);
        v["cni.dev/valid-attachments"] = json!([{"ifname": "eth0"}]);
        let bytes = serde_json::to_vec(&v).unwrap();
        let (obj, ver) = decode(&bytes).unwrap();
        let e = parse(&obj, ver, Command::Gc, &Env::default()).unwrap_err();
        assert!(e.to_string().contains("valid-attachments[0].containerID"));
    }
}
