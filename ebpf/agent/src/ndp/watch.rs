//! Notice of the IPAM store changing, within milliseconds of the CNI plugin's ADD or DEL
//! (inotify on the network's directory: a reservation is a file created or renamed into place,
//! a release a file removed), so a new pod is answered for before anything tries to reach it.

use std::{
    os::fd::{AsFd as _, AsRawFd, RawFd},
    path::Path,
};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

use crate::{Error, Result};

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub struct StoreWatch {
    fd: AsyncFd<Fd>,
}

impl StoreWatch {
    /// Watches `dir`, created first if the plugin has not yet (it is host-local's directory
    /// for the network; an empty one is what the plugin would create).
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let err = |e: nix::Error| Error::io("watching", dir, e.into());
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(err)?;
        ino.add_watch(
            dir,
            AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_DELETE_SELF,
        )
        .map_err(err)?;
        // SAFETY: the AsyncFd owns the Inotify, whose fd therefore stays open for as long as it
        // is registered.
        let fd = unsafe { AsyncFd::register(Fd(ino)) }
            .map_err(|e| Error::io("watching", dir, e.into()))?;
        Ok(Self { fd })
    }

    /// Waits for the next change (of any number of files); false once the directory itself
    /// is gone (the watch with it: make a new one).
    pub async fn changed(&self) -> bool {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return false;
            };
            match guard.get_inner().0.read_events() {
                Ok(events) if !events.is_empty() => {
                    return !events
                        .iter()
                        .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED));
                }
                Ok(_) | Err(nix::Error::EAGAIN) => guard.clear_ready(),
                Err(_) => return false,
            }
        }
    }
}
