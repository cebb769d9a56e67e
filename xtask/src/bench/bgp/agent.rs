//! The `sixlane` modes' speaker: the real `sixlane-agent` (the bench's release build) in static
//! mode on the node, running BIRD itself (`bgp.bird.supervise`), its configuration, manifests,
//! state, pins and BIRD's directory all the trial's own. Routes are Services
//! ([`manifests`](super::manifests)); the agent decides what BIRD announces.
//!
//! Cleanup: the agent is ended when this drops (SIGTERM to its process group, then SIGKILL);
//! BIRD runs in a session of its own so it outlives an agent restart, and goes with the node's
//! namespace (testkit kills every process in a namespace before deleting it).

use std::{
    fs,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ipnet::Ipv6Net;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;
use sixlane_testkit::{ChildGuard, PinDir, TempDir, lan::Lan};

use super::{
    NODE, Speaker, TIMEOUT,
    manifests::{self, NODE_NAME, put},
};
use crate::bench::Ctx;

/// How long a stopping agent gets to exit by itself.
const STOP: Duration = Duration::from_secs(10);

/// The agent, restartable. Field order is drop order: the agent, then its pins and files.
pub struct Sixlane {
    proc: Option<ChildGuard>,
    pins: PinDir,
    dir: TempDir,
    binary: PathBuf,
}

impl Sixlane {
    /// The agent with its default pacing.
    pub fn start(lab: &Lan, ctx: &Ctx) -> anyhow::Result<Self> {
        let dir = TempDir::new('g')?;
        let mut s = Self {
            proc: None,
            pins: PinDir::new()?,
            dir,
            binary: ctx.agent.clone(),
        };
        fs::create_dir(s.manifests())?;
        fs::write(
            s.config(),
            manifests::agent_yaml(lab.router_addr(), &s.bird_dir()),
        )?;
        put(
            &s.manifests(),
            "node.yaml",
            &manifests::node_yaml(lab.host(NODE).addr()),
        )?;
        s.spawn(lab)?;
        Ok(s)
    }

    fn spawn(&mut self, lab: &Lan) -> anyhow::Result<()> {
        let path = |p: PathBuf| p.display().to_string();
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(self.log())?;
        let mut cmd = lab.host(NODE).ns().command(&path(self.binary.clone()));
        cmd.args(["--pin-root", &path(self.pins.path().to_owned()), "run"])
            .args(["--config", &path(self.config())])
            .args(["--node-name", NODE_NAME])
            .args(["--manifests", &path(self.manifests())])
            .args(["--state-dir", &path(self.state())])
            .args(["--cni-conf-dir", &path(self.dir.path().join("net.d"))])
            .stdout(Stdio::null())
            .stderr(log);
        self.proc = Some(ChildGuard::spawn(&mut cmd)?);
        Ok(())
    }

    /// SIGTERM (it must exit cleanly, leaving BIRD running), then the agent again with the
    /// same configuration; returns once it has adopted that BIRD and had it take its
    /// configuration.
    pub fn restart(&mut self, lab: &Lan) -> anyhow::Result<()> {
        let mut p = self.proc.take().context("the agent is not running")?;
        p.signal(Signal::SIGTERM)?;
        let status = p.wait_timeout(STOP)?;
        if !status.success() {
            bail!("the agent exited with {status} on SIGTERM");
        }
        self.spawn(lab)?;
        let pid = self.proc.as_ref().map_or(0, ChildGuard::pid);
        let t0 = Instant::now();
        while !self.took_over(pid) {
            self.check_alive()?;
            if t0.elapsed() > TIMEOUT {
                bail!("the restarted agent did not adopt BIRD and have it take its configuration");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `birdc graceful restart`: BIRD exits keeping its forwarding state; the agent starts it
    /// again in recovery (`-R`).
    pub fn graceful_restart(&self, lab: &Lan) -> anyhow::Result<()> {
        let socket = self.bird_dir().join("bird.ctl");
        lab.host(NODE).ns().exec(
            "birdc",
            &["-s", &socket.display().to_string(), "graceful restart"],
        )?;
        Ok(())
    }

    /// Whether the agent `pid` has adopted the running BIRD and had it take its configuration,
    /// per its status file (`sixlane-agent status` reads it).
    fn took_over(&self, pid: u32) -> bool {
        let Some(s) = self.status() else {
            return false;
        };
        let bgp = &s["bgp"];
        s["pid"].as_u64() == Some(u64::from(pid))
            && bgp["bird"]["process"]["adopted"] == true
            && !bgp["config"]["configuredAt"].is_null()
    }

    /// The agent's status file, once written.
    fn status(&self) -> Option<Value> {
        let text = fs::read(self.state().join("status.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The last lines of the agent's log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("agent.yaml")
    }

    fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn bird_dir(&self) -> PathBuf {
        self.dir.path().join("bird")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }
}

impl Speaker for Sixlane {
    /// A ready local endpoint is the Service's; its EndpointSlice loses it (the Service stays).
    fn one(&mut self, route: Ipv6Net, up: bool) -> anyhow::Result<()> {
        let (name, text) = manifests::local_service(route, up);
        put(&self.manifests(), &name, &text)
    }

    /// The Services are written in one manifest, or that manifest deleted.
    fn batch(&mut self, routes: &[Ipv6Net], up: bool) -> anyhow::Result<()> {
        let path = self.manifests().join("batch.yaml");
        if up {
            put(
                &self.manifests(),
                "batch.yaml",
                &manifests::services(routes),
            )
        } else {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
        }
    }

    /// SIGKILL to the BIRD the pid file names; the agent starts it again (`-R`).
    fn crash(&mut self, _: &Lan) -> anyhow::Result<()> {
        let file = self.bird_dir().join("bird.pid");
        let text = fs::read_to_string(&file)?;
        let pid: i32 = text
            .trim()
            .parse()
            .with_context(|| format!("{} holds {text:?}", file.display()))?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "bird" {
            bail!("pid {pid} from {} is not BIRD", file.display());
        }
        kill(Pid::from_raw(pid), Signal::SIGKILL)?;
        // Gone before the trial looks for its successor.
        let t0 = Instant::now();
        while fs::metadata(format!("/proc/{pid}")).is_ok() && t0.elapsed() < TIMEOUT {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.proc.as_mut().and_then(ChildGuard::exited) {
            bail!("the agent exited: {status}");
        }
        Ok(())
    }
}
