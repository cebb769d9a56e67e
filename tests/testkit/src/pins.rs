//! Per-test bpffs directories, removed with everything pinned in them when the guard drops.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{Error, Result, names};

/// Where bpffs is mounted on the machines sixlane supports.
pub const BPFFS: &str = "/sys/fs/bpf";

/// `/sys/fs/bpf/slt…`: a directory a test can use as sixlane's pin root.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    pub fn new() -> Result<Self> {
        let path = Path::new(BPFFS).join(names::unique('p'));
        fs::create_dir(&path).map_err(|source| Error::Io {
            what: "creating pin directory",
            path: path.clone(),
            source,
        })?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // Unlinking a link pin detaches the link once no fd holds it; map and program pins just
        // drop a reference.
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: removing {}: {e}", self.path.display());
        }
    }
}
