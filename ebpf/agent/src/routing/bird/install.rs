//! Putting a configuration in place for BIRD: written next to the live one (mode 0600: it may
//! hold peer passwords), checked with `bird -p`, then renamed over it, so BIRD (at start or on
//! `configure`) only ever reads a complete configuration that parses.

use std::path::Path;

use tokio::io::AsyncWriteExt as _;
use tracing::info;

use super::paths::Paths;
use crate::{Error, Result};

/// Writes `text` to `paths.candidate`, has `binary -p` check it and renames it over
/// `paths.config`. On an error the live configuration is untouched.
pub async fn install(binary: &Path, paths: &Paths, text: &str) -> Result<()> {
    write_private(&paths.candidate, text).await?;
    check(binary, &paths.candidate).await?;
    tokio::fs::rename(&paths.candidate, &paths.config)
        .await
        .map_err(|e| Error::io("renaming into place", &paths.config, e))?;
    info!(path = %paths.config.display(), "BIRD configuration written");
    Ok(())
}

/// Writes `text` to `path`, readable by its owner only.
async fn write_private(path: &Path, text: &str) -> Result<()> {
    let io = |e| Error::io("writing", path, e);
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(io)?;
    f.write_all(text.as_bytes()).await.map_err(io)?;
    f.flush().await.map_err(io)
}

/// `bird -p -c <path>`: BIRD parses the configuration and exits.
pub async fn check(binary: &Path, path: &Path) -> Result<()> {
    let out = tokio::process::Command::new(binary)
        .arg("-p")
        .arg("-c")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| Error::BirdSpawn {
            binary: binary.to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if output.is_empty() {
        output = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    if output.is_empty() {
        output = out.status.to_string();
    }
    Err(Error::BirdConfigInvalid {
        binary: binary.to_owned(),
        path: path.to_owned(),
        output,
    })
}
