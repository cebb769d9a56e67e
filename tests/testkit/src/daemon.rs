//! A daemon run in the foreground inside a namespace, its stdout and stderr in a log file, so
//! a daemon that dies while a test waits for it fails the wait with its last words.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use nix::sys::signal::Signal;

use crate::{ChildGuard, Error, NetNs, Result, wait};

/// How long a killed daemon may take to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Lines of a daemon's log an error quotes.
const TAIL_LINES: usize = 20;

/// A daemon ended (by its process group) when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: ChildGuard,
    name: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `program args...` in `ns`, output appended to `log`.
    pub fn spawn(
        ns: &NetNs,
        name: &str,
        program: &str,
        args: &[String],
        log: &Path,
    ) -> Result<Self> {
        let open = || {
            File::options()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|source| Error::Io {
                    what: "opening the log",
                    path: log.to_owned(),
                    source,
                })
        };
        let mut cmd = ns.command(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?);
        Ok(Self {
            child: ChildGuard::spawn(&mut cmd)?,
            name: format!("{name} in {}", ns.name()),
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails, quoting the log, if the daemon has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.exited() {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                what: self.name.clone(),
                status,
                log: tail(&self.log),
            }),
        }
    }

    /// [`wait::until`] `f` answers, failing early if the daemon dies meanwhile.
    pub fn wait_until<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let name = self.name.clone();
        wait::until(
            || format!("{name}: {what}"),
            timeout,
            || {
                self.check_alive()?;
                f()
            },
        )
    }

    /// Ends the daemon (SIGTERM, then SIGKILL after 2 s).
    pub fn stop(&mut self) {
        self.child.terminate();
    }

    /// Kills the daemon outright (SIGKILL: a crash, no goodbye to anyone) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        self.child.signal(Signal::SIGKILL)?;
        self.child.wait_timeout(KILL_WAIT)?;
        Ok(())
    }
}

/// The last lines of `path` (what a failed daemon said last).
pub fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    lines[from..].join("\n")
}
