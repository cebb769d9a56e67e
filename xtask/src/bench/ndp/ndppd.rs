//! The `ndppd` mode: the Debian package's daemon on the node, one `static` rule for the pod's
//! address on the uplink (answered at once, without asking another interface). It runs in the
//! foreground, ended when this drops (and with the node's namespace in any case).

use std::{fs, process::Stdio};

use anyhow::{Context as _, bail};
use sixlane_testkit::{ChildGuard, TempDir};

use super::topo::{Link, POD};

/// Where the Debian package installs it.
const NDPPD: &str = "/usr/sbin/ndppd";

/// Field order is drop order: the daemon, then its configuration.
pub struct Ndppd {
    proc: ChildGuard,
    dir: TempDir,
}

impl Ndppd {
    pub fn start(link: &Link) -> anyhow::Result<Self> {
        if fs::metadata(NDPPD).is_err() {
            bail!(
                "{NDPPD} is missing: install the Debian package ndppd (`cargo xtask setup --bench`)"
            );
        }
        let dir = TempDir::new('p')?;
        let conf = dir.path().join("ndppd.conf");
        fs::write(
            &conf,
            format!(
                "proxy {} {{\n  rule {POD}/128 {{\n    static\n  }}\n}}\n",
                link.up()
            ),
        )?;
        let log = fs::File::create(dir.path().join("ndppd.log"))?;
        let mut cmd = link.node.command(NDPPD);
        cmd.args(["-c", &conf.display().to_string()])
            .arg("-v")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null());
        let proc = ChildGuard::spawn(&mut cmd).context("starting ndppd")?;
        Ok(Self { proc, dir })
    }

    /// Fails if the daemon has exited, with the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.proc.exited() {
            let log = fs::read_to_string(self.dir.path().join("ndppd.log")).unwrap_or_default();
            bail!("ndppd exited ({status}); its log:\n{log}");
        }
        Ok(())
    }
}
