//! The CNI protocol layer: spec versions, the environment, and result/error documents in the
//! version the runtime asked for. Thin on purpose (serde + a few rules from SPEC.md and the Go
//! `skel` package), not the unmaintained `cni-plugin` crate.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// Spec versions this plugin understands, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];

/// A spec version this plugin implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl Version {
    pub const LATEST: Self = Self::V1_1_0;

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "0.4.0" => Some(Self::V0_4_0),
            "1.0.0" => Some(Self::V1_0_0),
            "1.1.0" => Some(Self::V1_1_0),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }

    /// The version to speak for a configuration with `cniVersion` and `cniVersions`: the highest
    /// one of the union that we support (SPEC.md "Version considerations").
    pub fn select(cni_version: Option<&str>, cni_versions: &[String]) -> Result<Self> {
        let offered: Vec<&str> = cni_version
            .into_iter()
            .chain(cni_versions.iter().map(String::as_str))
            .collect();
        if offered.is_empty() {
            return Err(Error::IncompatibleVersion(format!(
                "the configuration has neither cniVersion nor cniVersions; this plugin supports {}",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        offered
            .iter()
            .filter_map(|v| Self::parse(v))
            .max()
            .ok_or_else(|| {
                Error::IncompatibleVersion(format!(
                    "configuration versions [{}] are not supported; this plugin supports {}",
                    offered.join(", "),
                    SUPPORTED_VERSIONS.join(", ")
                ))
            })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }
}

/// The protocol parameters from the environment, validated.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
}

impl Env {
    /// `namespace/name` of the Kubernetes pod, from the `K8S_POD_NAMESPACE` and `K8S_POD_NAME`
    /// CNI_ARGS the CRI runtimes send: what operators search logs by.
    pub fn pod(&self) -> Option<String> {
        let get = |key: &str| {
            self.args
                .iter()
                .find(|(k, v)| k == key && !v.is_empty())
                .map(|(_, v)| v.as_str())
        };
        Some(format!(
            "{}/{}",
            get("K8S_POD_NAMESPACE")?,
            get("K8S_POD_NAME")?
        ))
    }
}

/// Longest container ID accepted. Runtimes use 64 hex digits; the cap keeps log lines and
/// reservation files bounded.
pub const MAX_CONTAINER_ID: usize = 255;

/// Reads and validates `CNI_COMMAND` and the parameters it needs (the rules of the Go `skel`:
/// required variables per verb, container ID and interface name syntax).
pub fn read_env(get: &dyn Fn(&'static str) -> Result<Option<String>>) -> Result<(Command, Env)> {
    let cmd = match get("CNI_COMMAND")?.as_deref() {
        Some("ADD") => Command::Add,
        Some("DEL") => Command::Del,
        Some("CHECK") => Command::Check,
        Some("STATUS") => Command::Status,
        Some("GC") => Command::Gc,
        Some("VERSION") => Command::Version,
        Some(other) => {
            return Err(Error::Env {
                var: "CNI_COMMAND",
                reason: format!("unknown command {other:?} (ADD, DEL, CHECK, STATUS, GC, VERSION)"),
            });
        }
        None => {
            return Err(Error::Env {
                var: "CNI_COMMAND",
                reason: "missing".into(),
            });
        }
    };
    let mut env = Env::default();
    let attachment = matches!(cmd, Command::Add | Command::Del | Command::Check);
    if !attachment {
        return Ok((cmd, env));
    }
    let required = |var: &'static str| -> Result<String> {
        match get(var)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Error::Env {
                var,
                reason: format!("missing (required for {})", cmd.as_str()),
            }),
        }
    };
    env.container_id = required("CNI_CONTAINERID")?;
    validate_container_id(&env.container_id).map_err(|reason| Error::Env {
        var: "CNI_CONTAINERID",
        reason,
    })?;
    env.ifname = required("CNI_IFNAME")?;
    validate_ifname(&env.ifname).map_err(|reason| Error::Env {
        var: "CNI_IFNAME",
        reason,
    })?;
    env.netns = if cmd == Command::Del {
        get("CNI_NETNS")?.unwrap_or_default()
    } else {
        required("CNI_NETNS")?
    };
    if !env.netns.is_empty() && !env.netns.starts_with('/') {
        return Err(Error::Env {
            var: "CNI_NETNS",
            reason: format!("{:?} is not an absolute path", env.netns),
        });
    }
    if let Some(args) = get("CNI_ARGS")? {
        env.args = parse_args(&args)?;
    }
    Ok((cmd, env))
}

/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`: the spec's container ID and network name syntax. It also keeps
/// names from escaping a directory (`/`, `..` as a whole name needs a leading dot).
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub fn validate_container_id(id: &str) -> std::result::Result<(), String> {
    if id.len() > MAX_CONTAINER_ID {
        return Err(format!(
            "{} bytes long, at most {MAX_CONTAINER_ID} allowed",
            id.len()
        ));
    }
    if !valid_name(id) {
        return Err(format!(
            "{id:?} has invalid characters (allowed: [a-zA-Z0-9][a-zA-Z0-9_.-]*)"
        ));
    }
    Ok(())
}

/// Linux interface name rules (`dev_valid_name`), as the Go `skel` checks them.
pub fn validate_ifname(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > 15 {
        return Err(format!("{name:?} is longer than 15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err(format!("{name:?} contains '/', ':', NUL or whitespace"));
    }
    Ok(())
}

/// `CNI_ARGS`: `K=V;K2=V2`. Unknown keys are accepted (runtimes always send `K8S_POD_*` and
/// `IgnoreUnknown=1`); a pair without `=` is an error.
pub fn parse_args(s: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(Error::Env {
                var: "CNI_ARGS",
                reason: format!("{pair:?} is not a KEY=VALUE pair"),
            });
        };
        if k.is_empty() {
            return Err(Error::Env {
                var: "CNI_ARGS",
                reason: format!("{pair:?} has an empty key"),
            });
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// The spec's error document.
pub fn error_json(version: Version, err: &Error) -> Value {
    json!({
        "cniVersion": version.as_str(),
        "code": err.code(),
        "msg": err.summary(),
        "details": sixlane_attach::chain(err).to_string(),
    })
}

/// The VERSION result: echoes the requested version when we speak it.
pub fn version_json(requested: Option<&str>) -> Value {
    let v = requested
        .and_then(Version::parse)
        .unwrap_or(Version::LATEST);
    json!({ "cniVersion": v.as_str(), "supportedVersions": SUPPORTED_VERSIONS })
}

// ----- results ---------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(
        default,
        rename = "socketPath",
        skip_serializing_if = "String::is_empty"
    )]
    pub socket_path: String,
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A route as results and `ipam.routes` carry it (CNI 1.1 fields included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    pub fn to(dst: IpNet) -> Self {
        Self {
            dst,
            gw: None,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// An ADD result (also what `prevResult` decodes to for CHECK).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

impl CniResult {
    /// Decodes a `prevResult` (any supported version: 0.4.0 adds `version` to `ips`, ignored).
    pub fn from_prev(v: &Value) -> Result<Self> {
        serde_json::from_value(v.clone()).map_err(|e| Error::config_decode("prevResult", e))
    }

    /// The document for `version`: 0.4.0 tags each IP with its family; fields added in 1.1
    /// (interface `mtu`/`socketPath`/`pciID`, route `mtu`/`advmss`/`priority`/`table`/`scope`) are
    /// only emitted for 1.1.
    pub fn to_json(&self, version: Version) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(obj) = &mut v {
            obj.insert("cniVersion".into(), version.as_str().into());
            if self.dns.is_empty() {
                obj.remove("dns");
            }
        }
        convert(v, version)
    }

    /// Chaining: `self` (what this plugin did) appended to a `prevResult` from an earlier plugin,
    /// keeping everything the earlier plugin reported (unknown keys included).
    pub fn merged_into(&self, prev: &Value, version: Version) -> Value {
        let mut out = prev.clone();
        let Value::Object(obj) = &mut out else {
            return self.to_json(version);
        };
        let offset = obj
            .get("interfaces")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let mine = serde_json::to_value(self).unwrap_or(Value::Null);
        for key in ["interfaces", "ips", "routes"] {
            let mut add = mine
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if key == "ips" {
                for ip in &mut add {
                    if let Some(i) = ip.get("interface").and_then(Value::as_u64) {
                        ip["interface"] = (i + offset as u64).into();
                    }
                }
            }
            let list = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = list {
                list.extend(add);
            }
        }
        let prev_dns_empty = obj
            .get("dns")
            .is_none_or(|d| d.as_object().is_none_or(Map::is_empty));
        if prev_dns_empty && !self.dns.is_empty() {
            obj.insert(
                "dns".into(),
                serde_json::to_value(&self.dns).unwrap_or_default(),
            );
        }
        obj.insert("cniVersion".into(), version.as_str().into());
        convert(out, version)
    }
}

/// Rewrites a result document's version-dependent fields for `version`.
pub fn convert(mut v: Value, version: Version) -> Value {
    let Value::Object(obj) = &mut v else {
        return v;
    };
    obj.insert("cniVersion".into(), version.as_str().into());
    if let Some(Value::Array(ips)) = obj.get_mut("ips") {
        for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
            if version == Version::V0_4_0 {
                let fam = match ip
                    .get("address")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse::<IpNet>().ok())
                {
                    Some(IpNet::V4(_)) => "4",
                    _ => "6",
                };
                ip.insert("version".into(), fam.into());
            } else {
                ip.remove("version");
            }
        }
    }
    if version < Version::V1_1_0 {
        if let Some(Value::Array(ifs)) = obj.get_mut("interfaces") {
            for i in ifs.iter_mut().filter_map(Value::as_object_mut) {
                for k in ["mtu", "socketPath", "pciID"] {
                    i.remove(k);
                }
            }
        }
        if let Some(Value::Array(routes)) = obj.get_mut("routes") {
            for r in routes.iter_mut().filter_map(Value::as_object_mut) {
                for k in ["mtu", "advmss", "priority", "table", "scope"] {
                    r.remove(k);
                }
            }
        }
    }
    v
}

/// The link-local gateway pods route through by default.
pub const DEFAULT_POD_GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&'static str, &str)]) -> Result<(Command, Env)> {
        let map: std::collections::HashMap<&str, String> =
            pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        read_env(&|k| Ok(map.get(k).cloned()))
    }

    #[test]
    fn version_selection_picks_the_highest_supported() {
        assert_eq!(
            Version::select(Some("1.0.0"), &[]).unwrap(),
            Version::V1_0_0
        );
        let list = vec![
            "0.3.1".into(),
            "0.4.0".into(),
            "1.1.0".into(),
            "2.0.0".into(),
        ];
        assert_eq!(Version::select(None, &list).unwrap(), Version::V1_1_0);
        assert_eq!(
            Version::select(Some("0.4.0"), &list).unwrap(),
            Version::V1_1_0
        );
        let e = Version::select(Some("0.3.1"), &[]).unwrap_err();
        assert_eq!(e.code(), 1);
        assert_eq!(Version::select(None, &[]).unwrap_err().code(), 1);
    }

    #[test]
    fn env_rules_per_verb() {
        let base = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        let (cmd, env) = env_of(&base).unwrap();
        assert_eq!(cmd, Command::Add);
        assert_eq!(env.ifname, "eth0");
        // DEL without a netns is fine (containerd sends it empty); ADD is not.
        let (_, env) = env_of(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert!(env.netns.is_empty());
        let cases: &[(&[(&'static str, &str)], &str)] = &[
            (&[], "CNI_COMMAND"),
            (&[("CNI_COMMAND", "FROB")], "CNI_COMMAND"),
            (&[("CNI_COMMAND", "ADD")], "CNI_CONTAINERID"),
            (
                &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "../etc")],
                "CNI_CONTAINERID",
            ),
            (
                &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "a/b")],
                "CNI_CONTAINERID",
            ),
            (
                &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", ".hidden")],
                "CNI_CONTAINERID",
            ),
            (
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", "averyveryverylongname"),
                ],
                "CNI_IFNAME",
            ),
            (
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", "../x"),
                ],
                "CNI_IFNAME",
            ),
            (
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", ".."),
                ],
                "CNI_IFNAME",
            ),
            (
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", "eth0"),
                ],
                "CNI_NETNS",
            ),
            (
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", "relative"),
                ],
                "CNI_NETNS",
            ),
            (
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", "/x"),
                    ("CNI_ARGS", "IP"),
                ],
                "CNI_ARGS",
            ),
        ];
        for (pairs, var) in cases {
            let e = env_of(pairs).unwrap_err();
            assert_eq!(e.code(), 4, "{pairs:?}");
            assert!(e.to_string().contains(var), "{pairs:?}: {e}");
        }
        let long = "a".repeat(MAX_CONTAINER_ID + 1);
        let e = env_of(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", &long)]).unwrap_err();
        assert!(e.to_string().contains("CNI_CONTAINERID"));
    }

    #[test]
    fn the_pod_comes_from_the_runtimes_k8s_args() {
        let base = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/x"),
        ];
        let pod = |args: &str| {
            let mut pairs = base.to_vec();
            pairs.push(("CNI_ARGS", args));
            env_of(&pairs).unwrap().1.pod()
        };
        // What containerd's CRI sends.
        assert_eq!(
            pod(
                "K8S_POD_INFRA_CONTAINER_ID=a;K8S_POD_UID=u;IgnoreUnknown=1;\
                 K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-x"
            )
            .as_deref(),
            Some("kube-system/coredns-x")
        );
        assert_eq!(pod("K8S_POD_NAME=p"), None);
        assert_eq!(pod("K8S_POD_NAMESPACE=;K8S_POD_NAME=p"), None);
        assert_eq!(env_of(&base).unwrap().1.pod(), None);
    }

    #[test]
    fn results_follow_the_requested_version() {
        let r = CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:01".into(),
                mtu: Some(1500),
                sandbox: "/run/netns/x".into(),
                ..Default::default()
            }],
            ips: vec![IpConfig {
                interface: Some(0),
                address: "fd00::5/64".parse().unwrap(),
                gateway: Some("fe80::1".parse().unwrap()),
            }],
            routes: vec![Route {
                mtu: Some(1480),
                advmss: Some(1420),
                ..Route::to("64:ff9b::/96".parse().unwrap())
            }],
            dns: Dns::default(),
        };
        let v04 = r.to_json(Version::V0_4_0);
        assert_eq!(v04["cniVersion"], "0.4.0");
        assert_eq!(v04["ips"][0]["version"], "6");
        assert!(v04["routes"][0].get("mtu").is_none());
        assert!(v04["interfaces"][0].get("mtu").is_none());
        assert!(v04.get("dns").is_none());
        let v10 = r.to_json(Version::V1_0_0);
        assert!(v10["ips"][0].get("version").is_none());
        assert!(v10["routes"][0].get("advmss").is_none());
        let v11 = r.to_json(Version::V1_1_0);
        assert_eq!(v11["routes"][0]["mtu"], 1480);
        assert_eq!(v11["routes"][0]["advmss"], 1420);
        assert_eq!(v11["interfaces"][0]["mtu"], 1500);
        assert_eq!(v11["ips"][0]["address"], "fd00::5/64");
        // Round trip through prevResult.
        assert_eq!(CniResult::from_prev(&v11).unwrap(), r);
        assert_eq!(CniResult::from_prev(&v04).unwrap().ips, r.ips);
    }

    #[test]
    fn chaining_appends_to_prev_result() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "x"}],
            "ips": [{"address": "10.0.0.2/24", "interface": 0}],
            "custom": 1
        });
        let mine = CniResult {
            interfaces: vec![Interface {
                name: "eth1".into(),
                ..Default::default()
            }],
            ips: vec![IpConfig {
                interface: Some(0),
                address: "fd00::5/64".parse().unwrap(),
                gateway: None,
            }],
            ..Default::default()
        };
        let out = mine.merged_into(&prev, Version::V0_4_0);
        assert_eq!(out["custom"], 1);
        assert_eq!(out["interfaces"].as_array().unwrap().len(), 2);
        assert_eq!(out["ips"][1]["interface"], 1);
        assert_eq!(out["ips"][0]["version"], "4");
        assert_eq!(out["ips"][1]["version"], "6");
    }

    #[test]
    fn error_documents() {
        let e = Error::config("ipam.ranges[0][0].subnet", "host bits set");
        let v = error_json(Version::V1_0_0, &e);
        assert_eq!(v["code"], 7);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(
            v["details"]
                .as_str()
                .unwrap()
                .contains("ipam.ranges[0][0].subnet")
        );
        assert_eq!(version_json(Some("0.4.0"))["cniVersion"], "0.4.0");
        assert_eq!(version_json(Some("9.9.9"))["cniVersion"], "1.1.0");
    }

    #[test]
    fn an_error_document_says_each_cause_once() {
        let enoent = || std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = Error::io("reading", "/var/lib/cni/networks/x/lock", enoent());
        let v = error_json(Version::V1_1_0, &e);
        assert_eq!(v["msg"], "I/O failure");
        assert_eq!(
            v["details"],
            "reading /var/lib/cni/networks/x/lock: No such file or directory (os error 2)"
        );

        let e = Error::dataplane(
            "attaching sl_to_pod to slabc (tcx)",
            sixlane_attach::Error::Tc {
                what: "listing filters",
                iface: "slabc".into(),
                source: enoent(),
            },
        );
        let details = error_json(Version::V1_1_0, &e)["details"].to_string();
        assert!(
            details.contains(
                "dataplane: attaching sl_to_pod to slabc (tcx): tc: listing filters on slabc: \
                 No such file or directory"
            ),
            "{details}"
        );
        assert_eq!(details.matches("No such file").count(), 1, "{details}");

        // DEL's several failures: each with its cause, once.
        let e = Error::Many(vec![
            Error::netlink("deleting slabc", enoent()),
            Error::io("removing", "/run/x", enoent()),
        ]);
        assert_eq!(
            error_json(Version::V1_1_0, &e)["details"],
            "netlink deleting slabc: No such file or directory (os error 2); \
             removing /run/x: No such file or directory (os error 2)"
        );
    }
}
