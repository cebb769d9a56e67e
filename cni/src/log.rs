//! Logging for a short-lived plugin: one line per event to stderr and, when the configuration has
//! `logFile`, appended to that file. Never stdout (that carries the one result document).

use std::{
    fs::OpenOptions,
    io::Write as _,
    path::Path,
    sync::{Mutex, OnceLock},
    time::SystemTime,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Self::Error),
            "warn" | "warning" => Some(Self::Warn),
            "info" => Some(Self::Info),
            "debug" => Some(Self::Debug),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
        }
    }
}

struct Logger {
    level: Level,
    prefix: String,
    file: Option<Mutex<std::fs::File>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging once per process; later calls are ignored. `prefix` identifies the operation
/// (`ADD <container>/<ifname>`, and ` pod=<namespace>/<name>` when the runtime names the pod).
pub fn init(level: Level, file: Option<&Path>, prefix: String) {
    let file = file.and_then(
        |p| match OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Some(Mutex::new(f)),
            Err(e) => {
                eprintln!("sixlane: cannot open log file {}: {e}", p.display());
                None
            }
        },
    );
    let _ = LOGGER.set(Logger {
        level,
        prefix,
        file,
    });
}

pub fn log(level: Level, msg: &str) {
    let Some(l) = LOGGER.get() else {
        if level <= Level::Warn {
            eprintln!("sixlane {}: {msg}", level.as_str());
        }
        return;
    };
    if level > l.level {
        return;
    }
    let line = format!(
        "{} {} sixlane[{}] {}: {msg}\n",
        timestamp(),
        level.as_str(),
        std::process::id(),
        l.prefix
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(f) = &l.file
        && let Ok(mut f) = f.lock()
    {
        let _ = f.write_all(line.as_bytes());
    }
}

pub fn error(msg: &str) {
    log(Level::Error, msg);
}
pub fn warn(msg: &str) {
    log(Level::Warn, msg);
}
pub fn info(msg: &str) {
    log(Level::Info, msg);
}
pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

fn timestamp() -> String {
    sixlane_attach::rfc3339::millis(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T');
    }

    #[test]
    fn levels() {
        assert_eq!(Level::parse("WARN"), Some(Level::Warn));
        assert!(Level::Debug > Level::Info);
        assert_eq!(Level::parse("x"), None);
    }
}
