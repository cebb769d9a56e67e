//! Static mode (`bgp.bird.supervise`): the agent keeps BIRD running beside it, and BIRD outlives
//! the agent so an agent restart or upgrade drops no BGP session.
//!
//! - A BIRD that answers on the control socket (an earlier agent's) is adopted, never replaced:
//!   its pid comes from the pid file, and the agent watches that pid.
//! - Otherwise BIRD is started, once the agent has a checked configuration for it, as
//!   `bird -f -c <conf> -s <socket> -P <pid file>` in its own session (no signal meant for the
//!   agent's process group reaches it) with its output appended to a log file (a pipe would
//!   break when the agent exits).
//! - When BIRD dies it is started again, after a backoff that grows while it keeps dying
//!   quickly, with `-R` (graceful restart recovery: the kernel protocol keeps the routes BIRD had
//!   installed until the sessions are back, and peers keep ours as stale meanwhile). Every
//!   restart is counted and why the process ended is kept for `status`, the CLI and metrics.
//!
//! In Kubernetes BIRD is the pod's `bird` container and the agent only connects to it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use sixlane_attach::chain;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

use super::{control::Control, paths::Paths};
use crate::{Error, Result, ops::status::unix_now, routing::status::ProcessState};

/// The first wait before starting BIRD again; doubled while it keeps dying quickly.
const MIN_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A BIRD that ran this long died for a new reason: the next restart waits [`MIN_DELAY`] again.
const STABLE: Duration = Duration::from_secs(60);
/// How often an adopted BIRD (not the agent's child) is checked.
const ADOPTED_POLL: Duration = Duration::from_secs(1);

/// How BIRD is started.
#[derive(Clone, Debug)]
pub struct Spec {
    pub binary: PathBuf,
    pub paths: Paths,
}

/// The supervising task; dropping it stops supervising and leaves BIRD running.
#[derive(Debug)]
pub struct Supervisor {
    state: Arc<watch::Sender<ProcessState>>,
    ready: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Adopts the BIRD answering on the socket, or starts one once [`Self::config_ready`].
    pub fn start(spec: Spec) -> Self {
        let state = Arc::new(watch::Sender::new(ProcessState::default()));
        let (ready, ready_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(spec, state.clone(), ready_rx));
        Self { state, ready, task }
    }

    /// A checked configuration is in place: BIRD may be started with it.
    pub fn config_ready(&self) {
        self.ready.send_replace(true);
    }

    pub fn state(&self) -> ProcessState {
        self.state.borrow().clone()
    }

    /// Changes of [`Self::state`], as they happen.
    pub fn changes(&self) -> watch::Receiver<ProcessState> {
        self.state.subscribe()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // The child handle goes with the task without killing BIRD (`kill_on_drop` is off).
        self.task.abort();
    }
}

/// Waits before the next start: short after a BIRD that ran for a while, growing while it keeps
/// dying quickly.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: MIN_DELAY }
    }
}

impl Backoff {
    /// The wait after a process that ran `ran`.
    fn after(&mut self, ran: Duration) -> Duration {
        if ran >= STABLE {
            self.next = MIN_DELAY;
        }
        let d = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        d
    }
}

async fn supervise(
    spec: Spec,
    state: Arc<watch::Sender<ProcessState>>,
    mut ready: watch::Receiver<bool>,
) {
    let control = Control::new(&spec.paths.socket);
    let set = |f: &dyn Fn(&mut ProcessState)| state.send_modify(f);
    let mut backoff = Backoff::default();
    // Whether a BIRD ran before: the next start is a restart (counted, and with recovery).
    let mut had_one = false;
    loop {
        let started = Instant::now();
        let ended = if let Ok(version) = control.version().await {
            let pid = read_pid(&spec.paths.pid_file, &spec.binary);
            info!(?pid, %version, socket = %spec.paths.socket.display(), "adopted the running BIRD");
            set(&|s| {
                s.pid = pid;
                s.adopted = true;
                s.running = true;
                s.since = Some(unix_now());
                s.error = None;
            });
            had_one = true;
            watch_adopted(&control, pid, &spec.binary).await
        } else {
            if ready.wait_for(|r| *r).await.is_err() {
                return;
            }
            // Someone may have started one while we waited: adopt it instead.
            if control.version().await.is_ok() {
                continue;
            }
            match spawn(&spec, had_one) {
                Ok(mut child) => {
                    let pid = child.id();
                    info!(?pid, recovery = had_one, "started BIRD");
                    set(&|s| {
                        s.pid = pid;
                        s.adopted = false;
                        s.running = true;
                        s.since = Some(unix_now());
                        s.error = None;
                        if had_one {
                            s.restarts += 1;
                        }
                    });
                    had_one = true;
                    match child.wait().await {
                        Ok(status) => status.to_string(),
                        Err(e) => format!("waiting for it failed: {e}"),
                    }
                }
                Err(e) => {
                    let why = chain(&e).to_string();
                    warn!(error = %why, "cannot start BIRD");
                    set(&|s| s.error = Some(why.clone()));
                    String::new()
                }
            }
        };
        let delay = backoff.after(started.elapsed());
        if !ended.is_empty() {
            warn!(how = %ended, restart_in = ?delay, "BIRD ended; starting it again");
            set(&|s| {
                s.running = false;
                s.pid = None;
                s.last_exit = Some(ended.clone());
            });
        }
        tokio::time::sleep(delay).await;
    }
}

/// Waits until an adopted BIRD is gone: its pid (if the pid file named a live BIRD), else its
/// socket. A BIRD that is alive but slow to answer is left alone (a second one could not bind
/// the socket or the BGP port anyway). How it ended, as far as a non-parent can tell.
async fn watch_adopted(control: &Control, pid: Option<u32>, binary: &Path) -> String {
    loop {
        tokio::time::sleep(ADOPTED_POLL).await;
        match pid {
            Some(pid) if !is_bird(pid, binary) => return format!("pid {pid} is gone"),
            Some(_) => {}
            None => {
                if control.version().await.is_err() {
                    return format!("{} stopped answering", control.path().display());
                }
            }
        }
    }
}

/// Starts BIRD in its own session; `recover` adds `-R`.
fn spawn(spec: &Spec, recover: bool) -> Result<tokio::process::Child> {
    let p = &spec.paths;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.log)
        .map_err(|e| Error::io("opening", &p.log, e))?;
    let out = log
        .try_clone()
        .map_err(|e| Error::io("opening", &p.log, e))?;
    let mut c = tokio::process::Command::new(&spec.binary);
    c.args(p.bird_args(recover))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(log))
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which
    // is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        c.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    c.spawn().map_err(|source| Error::BirdSpawn {
        binary: spec.binary.clone(),
        source,
    })
}

/// The pid in BIRD's pid file, if that process is a live BIRD.
fn read_pid(pid_file: &Path, binary: &Path) -> Option<u32> {
    let pid = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_bird(pid, binary).then_some(pid)
}

/// Whether `pid` is a live (not zombie) process running BIRD: its command name is BIRD's
/// binary's (as the kernel truncates it) or `bird`.
fn is_bird(pid: u32, binary: &Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat_is_bird(&stat, binary)
}

/// `/proc/<pid>/stat`: `pid (comm) state ...`; comm may contain spaces and parentheses.
fn stat_is_bird(stat: &str, binary: &Path) -> bool {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].split_whitespace().next();
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("bird");
    // TASK_COMM_LEN: 15 bytes of the name.
    let name = name.get(..15).unwrap_or(name);
    state.is_some_and(|s| s != "Z" && s != "X") && (comm == name || comm == "bird")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_while_bird_keeps_dying_and_resets_after_a_stable_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_secs(1);
        let waits: Vec<Duration> = (0..9).map(|_| b.after(quick)).collect();
        assert_eq!(waits[0], MIN_DELAY);
        assert_eq!(waits[1], MIN_DELAY * 2);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), MAX_DELAY);
        assert_eq!(b.after(STABLE), MIN_DELAY);
    }

    #[test]
    fn proc_stat_names_a_live_bird() {
        let bird = Path::new("/usr/sbin/bird");
        assert!(stat_is_bird("42 (bird) S 1 42 42 0 -1", bird));
        assert!(!stat_is_bird("42 (bird) Z 1 42 42 0 -1", bird), "zombie");
        assert!(!stat_is_bird("42 (sshd) S 1 42 42 0 -1", bird));
        assert!(!stat_is_bird("garbage", bird));
        // A custom binary's name, truncated to 15 bytes like the kernel's comm.
        let custom = Path::new("/opt/bird/sbin/bird-2.0.12-custom");
        assert!(stat_is_bird("7 (bird-2.0.12-cus) R 1 7 7 0 -1", custom));
        assert!(stat_is_bird("7 (a (b) c) S 1", Path::new("a (b) c")));
    }

    #[test]
    fn the_pid_file_must_name_a_live_bird() {
        let dir = std::env::temp_dir().join(format!("sixlane-bird-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bird.pid");
        assert_eq!(read_pid(&f, Path::new("bird")), None, "no file");
        std::fs::write(&f, "not a pid\n").unwrap();
        assert_eq!(read_pid(&f, Path::new("bird")), None);
        // This test process is alive but not BIRD.
        std::fs::write(&f, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(read_pid(&f, Path::new("bird")), None);
        let me = std::env::current_exe().unwrap();
        assert_eq!(read_pid(&f, &me), Some(std::process::id()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
