//! The files BIRD and the agent share in `bgp.bird.dir`.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

/// `bgp.bird.dir`'s default: on a tmpfs, so it does not survive a reboot (a hostPath in the
/// DaemonSet, so it does survive a pod's replacement).
pub const DEFAULT_DIR: &str = "/run/sixlane/bird";

/// The configuration BIRD runs, in `bgp.bird.dir`. The agent writes it (mode 0600: it may hold
/// peer passwords); BIRD reads it at start and on `configure`.
pub const CONFIG_FILE: &str = "bird.conf";
/// The next configuration, checked with `bird -p` before it is renamed over [`CONFIG_FILE`].
pub const CANDIDATE_FILE: &str = "bird.conf.new";
/// BIRD's control socket (`bird -s`).
pub const SOCKET_FILE: &str = "bird.ctl";
/// BIRD's pid file (`bird -P`), how a restarted agent finds the BIRD it adopts.
pub const PID_FILE: &str = "bird.pid";
/// BIRD's standard output and error when the agent starts it (never a pipe to the agent: BIRD
/// outlives it).
pub const LOG_FILE: &str = "bird.log";
/// Left by `sixlane-agent bird-run` when it starts BIRD: a BIRD ran in this directory before
/// (since boot, `/run` being a tmpfs), so the next one starts in graceful restart recovery.
pub const STARTED_FILE: &str = "bird.started";

/// The files of one BIRD in `dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub candidate: PathBuf,
    pub socket: PathBuf,
    pub pid_file: PathBuf,
    pub log: PathBuf,
    pub started: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            config: dir.join(CONFIG_FILE),
            candidate: dir.join(CANDIDATE_FILE),
            socket: dir.join(SOCKET_FILE),
            pid_file: dir.join(PID_FILE),
            log: dir.join(LOG_FILE),
            started: dir.join(STARTED_FILE),
        }
    }

    /// BIRD's arguments for running these files in the foreground; `recover` adds `-R`
    /// (graceful restart recovery: kernel routes and peers' stale routes are kept until the
    /// sessions are back).
    pub fn bird_args(&self, recover: bool) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "-f".into(),
            "-c".into(),
            self.config.clone().into(),
            "-s".into(),
            self.socket.clone().into(),
            "-P".into(),
            self.pid_file.clone().into(),
        ];
        if recover {
            a.push("-R".into());
        }
        a
    }
}
