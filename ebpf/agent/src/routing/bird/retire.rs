//! BGP turned off (`bgp.enabled: false`) on a node where it was on. BIRD's directory survives
//! the pod (a hostPath in the DaemonSet), so the previous pod's configuration is still there
//! and the `bird` container would start BIRD with it, announcing what the node no longer
//! should. With BGP off the agent therefore removes the configuration (and the recovery marker:
//! no later BIRD recovers from it) and brings down a BIRD answering on the socket, at start and
//! every few seconds: the `bird` container may start BIRD just before the file goes.
//!
//! The previous pod's BIRD stopped gracefully, so the peers hold the node's routes as stale
//! until its restart time runs out. A BIRD found answering is therefore first given a moment to
//! get its sessions back: shut down then, it ends them with a Cease and the peers withdraw at
//! once.

use std::{path::PathBuf, time::Duration};

use sixlane_attach::chain;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{control::Control, paths::Paths};
use crate::{Error, Result};

/// How often the directory is looked at again.
const POLL: Duration = Duration::from_secs(5);
/// How long a BIRD found answering may take to get its BGP sessions up before it is shut down.
const SETTLE: Duration = Duration::from_secs(30);

/// What one look found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retired {
    /// The files removed.
    pub removed: Vec<PathBuf>,
    /// A BIRD answered and was told to shut down.
    pub downed: bool,
}

/// Removes BIRD's configuration and recovery marker from `paths.dir` and shuts down a BIRD
/// answering on its socket.
pub async fn retire(paths: &Paths) -> Result<Retired> {
    let mut out = Retired::default();
    for file in [&paths.config, &paths.candidate, &paths.started] {
        match tokio::fs::remove_file(file).await {
            Ok(()) => out.removed.push(file.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", file, e)),
        }
    }
    let control = Control::new(&paths.socket);
    if control.version().await.is_ok() {
        sessions_up(&control, SETTLE).await;
        control.down().await?;
        out.downed = true;
    }
    Ok(out)
}

/// Waits until every BGP protocol of the BIRD on `control` is up, or `limit` has passed, or it
/// stops answering.
async fn sessions_up(control: &Control, limit: Duration) {
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        match control.protocols().await {
            Ok(ps) if ps.iter().all(|p| p.bgp.is_none() || p.state == "up") => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(_) => return,
        }
    }
}

/// Keeps `dir` retired for as long as the agent runs (the task ends with the runtime).
pub fn spawn(dir: PathBuf) -> JoinHandle<()> {
    let paths = Paths::new(&dir);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match retire(&paths).await {
                Ok(r) if r.removed.is_empty() && !r.downed => {}
                Ok(r) => info!(
                    dir = %dir.display(),
                    removed = ?r.removed,
                    bird_shut_down = r.downed,
                    "BGP is off (bgp.enabled): retired BIRD's configuration left by an earlier agent"
                ),
                Err(e) => warn!(error = %chain(&e), "BGP is off: cannot retire BIRD's state"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::{process::Stdio, time::Instant};

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sixlane-retire-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn the_configuration_and_marker_go_and_nothing_else() {
        let d = dir("files");
        let paths = Paths::new(&d);
        std::fs::write(&paths.config, "router id 1.1.1.1;\n").unwrap();
        std::fs::write(&paths.started, "").unwrap();
        std::fs::write(&paths.log, "kept\n").unwrap();
        let r = retire(&paths).await.unwrap();
        assert_eq!(
            r,
            Retired {
                removed: vec![paths.config.clone(), paths.started.clone()],
                downed: false
            }
        );
        assert!(paths.log.exists());
        assert_eq!(
            retire(&paths).await.unwrap(),
            Retired::default(),
            "idempotent"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn a_bird_answering_is_shut_down() {
        let d = dir("bird");
        let paths = Paths::new(&d);
        std::fs::write(
            &paths.config,
            "router id 1.1.1.1;\nprotocol device sixlane_device {}\n",
        )
        .unwrap();
        let mut bird = std::process::Command::new("/usr/sbin/bird")
            .args(paths.bird_args(false))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running /usr/sbin/bird (Debian's bird2)");
        let control = Control::new(&paths.socket);
        let start = Instant::now();
        while control.version().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "BIRD never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = retire(&paths).await.unwrap();
        assert!(r.downed, "{r:?}");
        assert_eq!(r.removed, std::slice::from_ref(&paths.config));
        let start = Instant::now();
        let status = loop {
            if let Some(s) = bird.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "BIRD still running"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "{status}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
