//! For tests that run the real `sixlane-agent` as a process: its command line ([`AgentRun`]),
//! waiting on it with its log at hand, and asking its HTTP endpoints from a namespace.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use sixlane_testkit::{ChildGuard, NetNs};

use crate::bins;

/// `sixlane-agent run` for one node, its files in one directory: the configuration
/// `agent.yaml`, the state directory `state/`, the CNI configuration directory `net.d/` and the
/// log `agent.log` (appended to, so a restarted agent's log follows the first's). Metrics on
/// `[::1]:9660`, debug logging; the rest by method.
#[derive(Clone, Debug)]
pub struct AgentRun {
    dir: PathBuf,
    args: Vec<String>,
    kubeconfig: Option<PathBuf>,
}

impl AgentRun {
    pub fn new(pin_root: &Path, node: &str, dir: &Path) -> Self {
        let s = |p: PathBuf| p.to_str().unwrap().to_owned();
        let mut args: Vec<String> = vec!["--pin-root".into(), s(pin_root.to_owned()), "run".into()];
        for (flag, value) in [
            ("--config", s(dir.join("agent.yaml"))),
            ("--node-name", node.to_owned()),
            ("--state-dir", s(dir.join("state"))),
            ("--cni-conf-dir", s(dir.join("net.d"))),
            ("--metrics-listen", "[::1]:9660".into()),
            ("--log-level", "info,sixlane_agent=debug".into()),
        ] {
            args.extend([flag.to_owned(), value]);
        }
        Self {
            dir: dir.to_owned(),
            args,
            kubeconfig: None,
        }
    }

    /// Static mode: Services, EndpointSlices and Nodes from the manifests in `dir`.
    pub fn manifests(self, dir: &Path) -> Self {
        self.flag("--manifests", dir)
    }

    /// Kubernetes mode against the API server that `kubeconfig` names.
    pub fn kubeconfig(mut self, kubeconfig: &Path) -> Self {
        self.kubeconfig = Some(kubeconfig.to_owned());
        self
    }

    /// Where the CNI plugin is and where its IPAM store is (checked and read by the agent).
    pub fn cni(self, bin: &Path, data: &Path) -> Self {
        self.flag("--cni-bin-dir", bin).flag("--cni-data-dir", data)
    }

    /// kube-proxy's health endpoint on `[::]:10256`.
    pub fn healthz(mut self) -> Self {
        self.args
            .extend(["--healthz-listen".into(), "[::]:10256".into()]);
        self
    }

    fn flag(mut self, flag: &str, path: &Path) -> Self {
        self.args
            .extend([flag.into(), path.to_str().unwrap().to_owned()]);
        self
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("agent.yaml")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// The command, inside the node's namespace `ns`, its output appended to [`Self::log`].
    pub fn command(&self, ns: &NetNs) -> Command {
        let mut cmd = ns.command(bins::path("sixlane-agent").to_str().unwrap());
        cmd.args(&self.args)
            .env_remove("SIXLANE_LOG")
            .stdout(Stdio::null())
            .stderr(
                fs::File::options()
                    .create(true)
                    .append(true)
                    .open(self.log())
                    .unwrap(),
            );
        if let Some(k) = &self.kubeconfig {
            cmd.env("KUBECONFIG", k)
                .env_remove("KUBERNETES_SERVICE_HOST");
        }
        cmd
    }

    /// Starts the agent in `ns`.
    pub fn spawn(&self, ns: &NetNs) -> ChildGuard {
        ChildGuard::spawn(&mut self.command(ns)).unwrap()
    }
}

/// How long an agent gets to act on a change (generous: the CI machine has two shared cores).
const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `f` until it gives a value; on timeout, panics with `what` and the agent's log.
pub fn wait_for<T>(what: &str, log: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if let Some(v) = f() {
            return v;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "timed out waiting for {what}; agent log:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// [`wait_for`] a condition.
pub fn wait_until(what: &str, log: &Path, mut f: impl FnMut() -> bool) {
    wait_for(what, log, || f().then_some(()));
}

/// GET `url` from inside `ns`: the HTTP status (0 when there was no answer) and the body.
pub fn http_get(ns: &NetNs, url: &str) -> (u16, String) {
    let out = ns
        .exec_output("curl", &["-s", "-m", "5", "-w", "\n%{http_code}", url])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
