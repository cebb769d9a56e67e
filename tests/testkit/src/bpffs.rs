//! A fresh bpffs instance of one test's own: each `mount -t bpf` makes a new, empty filesystem,
//! so what a test pins there (through a container's `/sys/fs/bpf`, say) is neither seen by nor
//! mixed with the host's `/sys/fs/bpf`. Unmounting drops every pin in it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::{Error, Result};

/// A bpffs mounted at a directory; unmounted (lazily, in case a process still has it as its
/// working directory) and the directory removed when dropped.
#[derive(Debug)]
pub struct BpfFs {
    path: PathBuf,
}

impl BpfFs {
    /// Mounts a new bpffs at `path` (created if missing).
    pub fn mount(path: &Path) -> Result<Self> {
        fs::create_dir_all(path).map_err(|source| Error::Io {
            what: "creating bpffs mount point",
            path: path.to_owned(),
            source,
        })?;
        mount(
            Some("bpf"),
            path,
            Some("bpf"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.path, MntFlags::MNT_DETACH) {
            eprintln!("warning: unmounting {}: {e}", self.path.display());
        }
        let _ = fs::remove_dir(&self.path);
    }
}
