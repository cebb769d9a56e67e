//! The `sixlane` mode: the real `sixlane-agent` (the bench's release build) in static mode on the
//! node, `ndp` on for the link's /64, its configuration, state and pins the trial's own. The pod
//! is in the CNI plugin's IPAM store as the plugin leaves it after an ADD (host-local's layout,
//! one file per address): the agent finds it there as it finds every pod, puts it in the pinned
//! table, and the uplink's ingress program answers. Ready once `sixlane-agent ndp` lists it.
//!
//! Cleanup: the agent is ended when this drops (SIGTERM to its process group, then SIGKILL), then
//! its pins and files go.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;
use sixlane_testkit::{ChildGuard, PinDir, TempDir};

use super::topo::{Link, NODE_ADDR, POD, POD_CIDR, PREFIX};
use crate::bench::Ctx;

/// The node's name, in its manifest and on the agent's command line.
const NODE_NAME: &str = "ndp-node";
/// The CNI network the agent reads the IPAM store of (its conflist's name).
const NETWORK: &str = "sixlane";
/// How long the agent gets to have the pod in its table.
const READY: Duration = Duration::from_secs(30);

/// Field order is drop order: the agent, then its pins and files.
pub struct Sixlane {
    proc: ChildGuard,
    pins: PinDir,
    dir: TempDir,
}

impl Sixlane {
    pub fn start(link: &Link, ctx: &Ctx) -> anyhow::Result<Self> {
        let dir = TempDir::new('n')?;
        let pins = PinDir::new()?;
        let d = dir.path();
        for sub in ["manifests", "bin", "net.d"] {
            fs::create_dir_all(d.join(sub))?;
        }
        let store = d.join("ipam").join(NETWORK);
        fs::create_dir_all(&store)?;
        fs::write(store.join(POD.to_string()), "bench\r\neth0")?;
        fs::write(
            d.join("manifests/node.yaml"),
            format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {NODE_NAME}\nspec:\n  podCIDRs: [\"{POD_CIDR}\"]\n\
                 status:\n  addresses:\n  - {{type: InternalIP, address: \"{NODE_ADDR}\"}}\n"
            ),
        )?;
        fs::write(
            d.join("agent.yaml"),
            format!(
                "node:\n  uplink: {}\ncni:\n  checkBinaries: false\nndp:\n  enabled: true\n  prefixes: [\"{PREFIX}\"]\n",
                link.up()
            ),
        )?;
        let log = fs::File::create(d.join("agent.log"))?;
        let path = |p: PathBuf| p.display().to_string();
        let mut cmd = link.node.command(&path(ctx.agent.clone()));
        cmd.args(["--pin-root", &path(pins.path().to_owned()), "run"])
            .args(["--config", &path(d.join("agent.yaml"))])
            .args(["--node-name", NODE_NAME])
            .args(["--manifests", &path(d.join("manifests"))])
            .args(["--state-dir", &path(d.join("state"))])
            .args(["--cni-conf-dir", &path(d.join("net.d"))])
            .args(["--cni-bin-dir", &path(d.join("bin"))])
            .args(["--cni-data-dir", &path(d.join("ipam"))])
            .stdout(Stdio::null())
            .stderr(log);
        let proc = ChildGuard::spawn(&mut cmd).context("starting the agent")?;
        let mut s = Self { proc, pins, dir };
        s.wait_answering(&ctx.agent).with_context(|| s.log_tail())?;
        Ok(s)
    }

    /// Waits until `sixlane-agent ndp` lists the pod as answered (read from the pinned table).
    fn wait_answering(&mut self, agent: &Path) -> anyhow::Result<()> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.proc.exited() {
                bail!("the agent exited: {status}");
            }
            if self.answered(agent)?.contains(&POD.to_string()) {
                return Ok(());
            }
            if t0.elapsed() > READY {
                bail!("{POD} not in the agent's table after {READY:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The addresses `sixlane-agent ndp --json` lists.
    fn answered(&self, agent: &Path) -> anyhow::Result<Vec<String>> {
        let out = Command::new(agent)
            .arg("--pin-root")
            .arg(self.pins.path())
            .args(["--json", "ndp", "--state-dir"])
            .arg(self.dir.path().join("state"))
            .output()
            .context("running sixlane-agent ndp")?;
        if !out.status.success() {
            // Before the agent has pinned its table.
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_slice(&out.stdout).context("sixlane-agent ndp --json")?;
        let rows = v["answered"].as_array().cloned().unwrap_or_default();
        Ok(rows
            .iter()
            .filter_map(|r| r["address"].as_str().map(str::to_owned))
            .collect())
    }

    /// Fails if the agent has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.proc.exited() {
            bail!("the agent exited: {status}\n{}", self.log_tail());
        }
        Ok(())
    }

    /// The end of the agent's log, to read beside an error.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "the agent's log ends:\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}
