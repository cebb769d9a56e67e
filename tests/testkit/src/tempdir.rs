//! Temporary directories removed (with their contents) when the guard drops.

use std::path::{Path, PathBuf};

use crate::{Error, Result, names};

/// `$TMPDIR/slt<tag>_…`: a directory for one test's files.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: char) -> Result<Self> {
        let path = std::env::temp_dir().join(names::unique(tag));
        std::fs::create_dir_all(&path).map_err(|source| Error::Io {
            what: "creating temp dir",
            path: path.clone(),
            source,
        })?;
        Ok(Self { path })
    }

    /// A directory at `path` (created if missing), removed like any other when dropped: for
    /// files a command keeps in a place of its own (the demo's directory).
    pub fn at(path: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&path).map_err(|source| Error::Io {
            what: "creating dir",
            path: path.clone(),
            source,
        })?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
