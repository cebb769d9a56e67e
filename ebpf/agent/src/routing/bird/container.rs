//! `sixlane-agent bird-run`: the DaemonSet's `bird` container. It waits until the agent (the
//! pod's other container, sharing BIRD's directory) has put a configuration there, then
//! replaces itself with BIRD (`exec`): BIRD is the container's main process, so kubelet's
//! SIGTERM reaches it, the preStop hook's `birdc` talks to it, and its exit is the container's.
//!
//! BIRD starts in graceful restart recovery (`-R`) when an earlier BIRD was started in the
//! directory since the node booted ([`Paths::started`]; `/run` is a tmpfs): the pod was
//! replaced (a rollout), the previous BIRD stopped gracefully (the preStop hook), the peers kept
//! the node's routes as stale, and this BIRD takes over with the previous pod's configuration
//! until the agent reconciles.

use std::{os::unix::process::CommandExt as _, path::PathBuf, time::Duration};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use super::paths::{DEFAULT_DIR, Paths};

/// How often the directory is looked at while waiting for the configuration.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// BIRD's directory (configuration, control socket, pid file), shared with the agent.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// BIRD's binary.
    #[arg(long, default_value = "/usr/sbin/bird")]
    pub binary: PathBuf,
}

/// Waits for the configuration, then execs BIRD; returns only when stopped while waiting
/// (SIGTERM, SIGINT) or when BIRD cannot be executed.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let paths = Paths::new(&args.dir);
    if !wait_for_config(&paths)? {
        info!("stopped before BIRD had a configuration");
        return Ok(());
    }
    let recover = recovering(&paths);
    std::fs::write(&paths.started, b"")
        .with_context(|| format!("writing {}", paths.started.display()))?;
    info!(config = %paths.config.display(), recover, "starting BIRD");
    let err = std::process::Command::new(&args.binary)
        .args(paths.bird_args(recover))
        .exec();
    Err(err).with_context(|| format!("executing {}", args.binary.display()))
}

/// Whether BIRD starts in graceful restart recovery: an earlier one was started here.
fn recovering(paths: &Paths) -> bool {
    paths.started.exists()
}

/// Waits until `paths.config` exists (`true`) or a stop signal comes (`false`). As a
/// container's first process, signals without a handler would be ignored: both are handled.
fn wait_for_config(paths: &Paths) -> anyhow::Result<bool> {
    if paths.config.exists() {
        return Ok(true);
    }
    info!(config = %paths.config.display(), "waiting for the agent to write BIRD's configuration");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(false),
                _ = int.recv() => return Ok(false),
                _ = tick.tick() => {
                    if paths.config.exists() {
                        return Ok(true);
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bird_recovers_when_an_earlier_one_was_started_in_the_directory() {
        let dir = std::env::temp_dir().join(format!("sixlane-bird-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = Paths::new(&dir);
        assert!(!recovering(&paths), "first BIRD since boot");
        // A pid file alone says nothing: BIRD removes it when it stops.
        std::fs::write(&paths.pid_file, "42\n").unwrap();
        assert!(!recovering(&paths));
        std::fs::write(&paths.started, b"").unwrap();
        assert!(recovering(&paths), "the pod was replaced");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_configuration_there_ends_the_wait_at_once() {
        let dir = std::env::temp_dir().join(format!("sixlane-bird-wait-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = Paths::new(&dir);
        std::fs::write(&paths.config, "router id 1.1.1.1;\n").unwrap();
        assert!(wait_for_config(&paths).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
