//! Running the real `sixlane` CNI plugin (or any CNI plugin binary) the way a runtime does: the
//! CNI_* environment, the configuration on stdin, inside the node's network namespace (through
//! `nsenter --net`, so bpffs pins stay visible), and the one JSON document on stdout checked.

use std::{
    io::Write as _,
    net::Ipv6Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{Value, json};
use sixlane_testkit::NetNs;

/// What one invocation returned.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    /// The single JSON document on stdout, if stdout had one (`None` for an empty stdout).
    pub doc: Option<Value>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The success document; panics with the plugin's error and logs otherwise.
    pub fn result(&self) -> &Value {
        assert!(
            self.success,
            "plugin failed: {}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.doc.as_ref().expect("plugin printed no result")
    }

    /// Asserts success (for verbs without a result document).
    pub fn ok(&self) -> &Self {
        assert!(
            self.success,
            "plugin failed: {}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The spec error code; panics when the call succeeded.
    pub fn code(&self) -> u64 {
        assert!(
            !self.success,
            "expected an error, got success: {}",
            self.stdout
        );
        let doc = self.doc.as_ref().expect("error without a JSON document");
        doc["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("error document without a code: {doc}"))
    }

    /// The error's `details` (or `msg`).
    pub fn message(&self) -> String {
        let doc = self.doc.as_ref().expect("no document");
        doc["details"]
            .as_str()
            .or(doc["msg"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// The first IP address of a result.
    pub fn ip(&self) -> Ipv6Addr {
        let a = self.result()["ips"][0]["address"]
            .as_str()
            .expect("result without ips[0].address");
        a.split('/').next().unwrap().parse().expect("IPv6 address")
    }
}

/// One attachment's parameters.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: Option<&'a str>,
    /// Extra environment variables (e.g. `CNI_PATH`).
    pub env: Vec<(&'a str, String)>,
}

impl<'a> Call<'a> {
    pub fn new(command: &'a str, container_id: &'a str, netns: &'a str, ifname: &'a str) -> Self {
        Self {
            command,
            container_id,
            netns,
            ifname,
            args: None,
            env: Vec::new(),
        }
    }
}

/// A plugin binary, run in `node`'s namespace (or the test's own with `None`).
#[derive(Debug, Clone)]
pub struct Plugin {
    pub bin: PathBuf,
}

impl Plugin {
    /// The workspace's `sixlane` binary.
    pub fn sixlane() -> Self {
        Self {
            bin: crate::bins::path("sixlane"),
        }
    }

    pub fn at(bin: impl Into<PathBuf>) -> Self {
        Self { bin: bin.into() }
    }

    pub fn command(&self, node: Option<&NetNs>) -> Command {
        match node {
            Some(ns) => ns.command(self.bin.to_str().expect("UTF-8 path")),
            None => Command::new(&self.bin),
        }
    }

    /// Runs one verb with `conf` (a JSON value or raw bytes) on stdin.
    pub fn call(&self, node: Option<&NetNs>, call: &Call<'_>, conf: &Value) -> Output {
        self.call_raw(node, call, &serde_json::to_vec(conf).unwrap())
    }

    pub fn call_raw(&self, node: Option<&NetNs>, call: &Call<'_>, stdin: &[u8]) -> Output {
        let mut c = self.command(node);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", call.command)
            .env("CNI_CONTAINERID", call.container_id)
            .env("CNI_NETNS", call.netns)
            .env("CNI_IFNAME", call.ifname)
            .env("CNI_PATH", "/usr/lib/cni:/opt/cni/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(a) = call.args {
            c.env("CNI_ARGS", a);
        }
        for (k, v) in &call.env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawning the plugin");
        // The plugin may reject its environment before reading stdin: EPIPE is fine then.
        match child.stdin.take().unwrap().write_all(stdin) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
            _ => {}
        }
        let out = child.wait_with_output().expect("waiting for the plugin");
        parse_output(out.status.success(), &out.stdout, &out.stderr)
    }
}

/// Checks the protocol's output rule: stdout is empty or exactly one JSON document.
pub fn parse_output(success: bool, stdout: &[u8], stderr: &[u8]) -> Output {
    let text = String::from_utf8_lossy(stdout).into_owned();
    let mut docs = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
    let doc = match docs.next() {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => panic!("stdout is not JSON ({e}): {text:?}"),
    };
    assert!(
        docs.next().is_none(),
        "stdout has more than one JSON document: {text:?}"
    );
    if !success {
        assert!(
            doc.is_some(),
            "a failing plugin must print an error document"
        );
    }
    Output {
        success,
        doc,
        stdout: text,
        stderr: String::from_utf8_lossy(stderr).into_owned(),
    }
}

/// A sixlane plugin configuration (the documented contract) for one range, dataplane off.
pub fn conf(version: &str, name: &str, subnet: &str, data_dir: &Path) -> Value {
    json!({
        "cniVersion": version,
        "name": name,
        "type": "sixlane",
        "ipam": {
            "type": "sixlane-ipam",
            "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "::/0"}, {"dst": "64:ff9b::/96", "mtu": 1480, "advmss": 1420}],
            "dataDir": data_dir,
        },
        "mtu": 1500,
        "dataplane": "off",
        "logLevel": "debug",
    })
}

/// `conf` with `prevResult` set (for CHECK/DEL).
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// Reservation files (names that parse as addresses) in `<data_dir>/<network>`.
pub fn reservations(data_dir: &Path, network: &str) -> Vec<(Ipv6Addr, String)> {
    let dir = data_dir.join(network);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(Ipv6Addr, String)> = rd
        .flatten()
        .filter_map(|e| {
            let ip: Ipv6Addr = e.file_name().to_str()?.parse().ok()?;
            Some((ip, std::fs::read_to_string(e.path()).unwrap_or_default()))
        })
        .collect();
    out.sort();
    out
}

/// Per-test temporary directories (the testkit's guard; `new` panics on failure for tests).
pub struct TempDir(sixlane_testkit::TempDir);

impl TempDir {
    pub fn new(tag: char) -> Self {
        Self(sixlane_testkit::TempDir::new(tag).expect("creating temp dir"))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Names of links in `ns` (or the current namespace).
pub fn links(ns: &NetNs) -> Vec<String> {
    ns.ip(&["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}
