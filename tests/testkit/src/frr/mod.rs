//! An upstream router for BGP tests and the demo: FRR (Debian `frr`; VyOS and many ToR switches
//! run FRR too) in a network namespace.
//!
//! zebra (the RIB, which installs routes into the namespace's kernel FIB), bgpd and, when a
//! neighbor uses BFD, bfdd run privately: every path they use — configuration, pid files,
//! the ZAPI socket between them, their vty sockets (`--vty_socket`), bfdd's control socket — is
//! in one directory of its own (temporary, or the caller's), the TCP vty is off, so any number
//! of routers run side by side and the host's own FRR, if any, is neither read nor touched.
//! They are ended by PID (their process groups) when [`Frr`] drops, and the directory removed.
//!
//! The router's view is read through vtysh's JSON ([`show`]); its kernel FIB independently
//! with `ip -j` ([`crate::fib`]).

pub mod config;
pub mod show;

use std::{fs, net::Ipv6Addr, path::Path, process::Command, time::Duration};

pub use config::{FrrConfig, GracefulRestart, Neighbor, RemoteAs};
use nix::unistd::{User, chown};
use serde::de::DeserializeOwned;
pub use show::{BfdInfo, BgpTable, NeighborState, Neighbors, Rib};

use crate::{Error, NetNs, Result, TempDir, cmd, daemon::Daemon};

/// The user the daemons run as.
const FRR_USER: &str = "frr";

/// Where Debian's `frr` puts the daemons.
const DAEMONS: &str = "/usr/lib/frr";

/// How long a daemon may take to start (its vty socket appears once its configuration is read).
const START: Duration = Duration::from_secs(10);

/// A running FRR router. Field order is drop order: the protocol daemons before zebra.
#[derive(Debug)]
pub struct Frr {
    bgpd: Daemon,
    bfdd: Option<Daemon>,
    zebra: Daemon,
    dir: TempDir,
    config: FrrConfig,
}

impl Frr {
    /// Starts zebra, bfdd (if a neighbor uses BFD) and bgpd in `ns` with `config`, and waits
    /// until each answers on its vty socket.
    pub fn start(ns: &NetNs, config: FrrConfig) -> Result<Self> {
        Self::start_in(ns, config, TempDir::new('f')?)
    }

    /// [`Self::start`] with its files in `dir` (removed when the router drops).
    pub fn start_in(ns: &NetNs, config: FrrConfig, dir: TempDir) -> Result<Self> {
        let zebra_bin = Path::new(DAEMONS).join("zebra");
        if !zebra_bin.exists() {
            return Err(Error::Missing {
                program: zebra_bin,
                package: "frr",
            });
        }
        give_to_frr(dir.path())?;
        let zebra = start_daemon(ns, dir.path(), "zebra", &config.zebra_conf(), &[])?;
        let bfdd = if config.needs_bfd() {
            let ctl = dir.path().join("bfdd.sock");
            let extra = ["--bfdctl".to_owned(), ctl.display().to_string()];
            Some(start_daemon(
                ns,
                dir.path(),
                "bfdd",
                &config.bfdd_conf(),
                &extra,
            )?)
        } else {
            None
        };
        let bgpd = start_daemon(ns, dir.path(), "bgpd", &config.bgpd_conf(), &[])?;
        Ok(Self {
            bgpd,
            bfdd,
            zebra,
            dir,
            config,
        })
    }

    pub fn config(&self) -> &FrrConfig {
        &self.config
    }

    /// The directory with the configuration, sockets and logs (`<daemon>.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs vtysh commands (`-c` each, in order) against this router; returns the output.
    pub fn vtysh(&self, commands: &[&str]) -> Result<String> {
        vtysh(self.dir.path(), commands)
    }

    /// A `show … json` command, decoded.
    pub fn json<T: DeserializeOwned>(&self, command: &str) -> Result<T> {
        json(self.dir.path(), command)
    }

    /// The BGP table of the IPv6 unicast family.
    pub fn bgp_ipv6(&self) -> Result<BgpTable> {
        self.json("show bgp ipv6 unicast json")
    }

    /// Every neighbor's session.
    pub fn neighbors(&self) -> Result<Neighbors> {
        self.json("show bgp neighbors json")
    }

    /// zebra's IPv6 RIB.
    pub fn rib(&self) -> Result<Rib> {
        self.json("show ipv6 route json")
    }

    /// Changes the running configuration: `lines` in configuration mode, as an operator types
    /// them (`router bgp 65000`, `neighbor … shutdown`, ...).
    pub fn configure(&self, lines: &[&str]) -> Result<()> {
        let mut all = vec!["configure terminal"];
        all.extend_from_slice(lines);
        self.vtysh(&all).map(drop)
    }

    /// Waits until the session with `peer` is established; returns its state then.
    pub fn wait_established(&mut self, peer: Ipv6Addr, timeout: Duration) -> Result<NeighborState> {
        self.wait_neighbor(peer, "established", timeout, NeighborState::established)
    }

    /// Waits until the router's view of neighbor `peer` satisfies `ok` (described as `what`);
    /// returns that view.
    pub fn wait_neighbor(
        &mut self,
        peer: Ipv6Addr,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&NeighborState) -> bool,
    ) -> Result<NeighborState> {
        let dir = self.dir.path();
        self.bgpd.wait_until(
            &format!("the BGP session with {peer} to be {what}"),
            timeout,
            || {
                let mut n: Neighbors = json(dir, &format!("show bgp neighbors {peer} json"))?;
                Ok(n.remove(&peer.to_string()).filter(|s| ok(s)))
            },
        )
    }

    /// Fails, with the daemon's log, if zebra, bgpd or bfdd has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.zebra.check_alive()?;
        self.bgpd.check_alive()?;
        if let Some(b) = &mut self.bfdd {
            b.check_alive()?;
        }
        Ok(())
    }
}

/// Hands `dir` to the `frr` user: the daemons drop root for it at start (vtysh then needs its
/// group, `frrvty`, which root is not in, to reach a daemon running as root) and create their
/// pid files and sockets there.
fn give_to_frr(dir: &Path) -> Result<()> {
    let user = User::from_name(FRR_USER)?.ok_or(Error::NoUser(FRR_USER))?;
    chown(dir, Some(user.uid), Some(user.gid))?;
    Ok(())
}

/// vtysh against the daemons whose vty sockets are in `dir`.
fn vtysh(dir: &Path, commands: &[&str]) -> Result<String> {
    let mut c = Command::new("vtysh");
    c.arg("--vty_socket").arg(dir);
    for command in commands {
        c.args(["-c", command]);
    }
    let out = cmd::output(&mut c)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json<T: DeserializeOwned>(dir: &Path, command: &str) -> Result<T> {
    let out = vtysh(dir, &[command])?;
    serde_json::from_str(&out).map_err(|source| Error::Json {
        what: format!("`{command}`"),
        source,
    })
}

/// Writes `<dir>/<name>.conf` and starts `name` with every path in `dir`; waits for its vty
/// socket.
fn start_daemon(
    ns: &NetNs,
    dir: &Path,
    name: &str,
    conf: &str,
    extra: &[String],
) -> Result<Daemon> {
    let conf_path = dir.join(format!("{name}.conf"));
    fs::write(&conf_path, conf).map_err(|source| Error::Io {
        what: "writing",
        path: conf_path.clone(),
        source,
    })?;
    let path = |file: &str| dir.join(file).display().to_string();
    let mut args = vec![
        "--config_file".to_owned(),
        conf_path.display().to_string(),
        "--pid_file".to_owned(),
        path(&format!("{name}.pid")),
        "--socket".to_owned(),
        path("zserv.api"),
        "--vty_socket".to_owned(),
        dir.display().to_string(),
        // No TCP vty: several routers share nothing, not even a port on their loopback.
        "--vty_port".to_owned(),
        "0".to_owned(),
    ];
    args.extend_from_slice(extra);
    let program = Path::new(DAEMONS).join(name).display().to_string();
    let mut d = Daemon::spawn(ns, name, &program, &args, &dir.join(format!("{name}.log")))?;
    let vty = dir.join(format!("{name}.vty"));
    d.wait_until("its vty socket", START, || Ok(vty.exists().then_some(())))?;
    Ok(d)
}
