//! A plain BIRD 2 (Debian `bird2`) in a network namespace: a BGP speaker announcing static
//! routes, for tests that need one apart from the agent's and for the bench's floor. Its
//! configuration, control socket, pid file and log live in a temporary directory; the daemon
//! is ended by PID when [`Bird`] drops.

pub mod config;
pub mod control;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

pub use config::{BirdConfig, Peer};
pub use control::Reply;

use crate::{Error, NetNs, Result, TempDir, cmd, daemon::Daemon};

const BIRD: &str = "/usr/sbin/bird";

/// How long BIRD may take to answer on its socket after starting.
const START: Duration = Duration::from_secs(10);

/// A running BIRD. Field order is drop order: the daemon, then its directory.
#[derive(Debug)]
pub struct Bird {
    daemon: Daemon,
    dir: TempDir,
    config: BirdConfig,
}

impl Bird {
    /// Checks `config` (`bird -p`), starts BIRD with it in `ns` and waits until it answers on
    /// its control socket.
    pub fn start(ns: &NetNs, config: BirdConfig) -> Result<Self> {
        if !Path::new(BIRD).exists() {
            return Err(Error::Missing {
                program: BIRD.into(),
                package: "bird2",
            });
        }
        let dir = TempDir::new('b')?;
        let conf = dir.path().join("bird.conf");
        write(&conf, &config.render())?;
        cmd::run(BIRD, &["-p", "-c", &conf.display().to_string()])?;
        let daemon = spawn(ns, dir.path(), false)?;
        Ok(Self {
            daemon,
            dir,
            config,
        })
    }

    /// Kills BIRD outright (SIGKILL: a crash, no goodbye to its peers) and starts it again in
    /// `ns` (where it ran) with its configuration. With `recovery`, in graceful-restart recovery
    /// (`bird -R`): its sessions tell the peers the forwarding state was kept, so they keep
    /// its routes until it has sent them all again.
    pub fn crash_and_restart(&mut self, ns: &NetNs, recovery: bool) -> Result<()> {
        self.daemon.kill()?;
        self.daemon = spawn(ns, self.dir.path(), recovery)?;
        Ok(())
    }

    pub fn config(&self) -> &BirdConfig {
        &self.config
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("bird.ctl")
    }

    pub fn log(&self) -> &Path {
        self.daemon.log()
    }

    /// One request on the control socket (`show protocols all`, ...).
    pub fn request(&self, request: &str) -> Result<Reply> {
        control::request(&self.socket(), request)
    }

    /// Replaces the configuration file with `config` and has BIRD reconfigure from it in place
    /// (what `birdc configure` does: no session is reset for a change of routes). Returns once
    /// BIRD has taken the new configuration; the routes are on their way.
    pub fn configure(&mut self, config: BirdConfig) -> Result<Reply> {
        let conf = self.dir.path().join("bird.conf");
        write(&conf, &config.render())?;
        let reply = self.request(&format!("configure \"{}\"", conf.display()))?;
        self.config = config;
        Ok(reply)
    }

    /// Fails, with BIRD's log, if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.daemon.check_alive()
    }
}

/// Starts BIRD in `ns` on `dir`'s `bird.conf`, its socket, pid file and log there; waits until
/// it answers on its socket.
fn spawn(ns: &NetNs, dir: &Path, recovery: bool) -> Result<Daemon> {
    let socket = dir.join("bird.ctl");
    let mut args = vec![
        "-f".to_owned(),
        "-c".to_owned(),
        dir.join("bird.conf").display().to_string(),
        "-s".to_owned(),
        socket.display().to_string(),
        "-P".to_owned(),
        dir.join("bird.pid").display().to_string(),
    ];
    if recovery {
        args.push("-R".to_owned());
    }
    let mut daemon = Daemon::spawn(ns, "bird", BIRD, &args, &dir.join("bird.log"))?;
    daemon.wait_until("its control socket", START, || {
        Ok(control::request(&socket, "show status").ok())
    })?;
    Ok(daemon)
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|source| Error::Io {
        what: "writing",
        path: path.to_owned(),
        source,
    })
}
