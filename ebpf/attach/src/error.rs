use std::{error::Error as StdError, fmt, io, path::PathBuf};

/// Errors of pinning lookups and attachment. Each names what it was doing and on which object,
/// path or interface, so an operator can act on the message alone. A message is that context
/// only: the cause is the `#[source]`, and whoever prints an error prints its [`chain`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} is not on a bpffs mount (mount one with `mount -t bpf bpf /sys/fs/bpf`)")]
    NotBpffs { path: PathBuf },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("program {name}")]
    Program {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}")]
    Map {
        name: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("pinning {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("link {path}")]
    Link {
        path: PathBuf,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("tc: {what} on {iface}")]
    Tc {
        what: &'static str,
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("program {name} is not pinned at {path}: is sixlane-agent running?")]
    NotPinned { name: String, path: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn program(name: impl Into<String>, source: aya::programs::ProgramError) -> Self {
        Error::Program {
            name: name.into(),
            source,
        }
    }
}

/// `e` and each of its sources, joined with ": " (what anyhow's `{:#}` prints). The errors of
/// sixlane's crates give only their own context in their message, so printing one error for a
/// person (a log line, a CNI result's details, a status reason) means printing its chain.
pub fn chain<'a>(e: &'a (dyn StdError + 'a)) -> Chain<'a> {
    Chain(e)
}

/// An error with its sources, displayed on one line; see [`chain`].
#[derive(Clone, Copy, Debug)]
pub struct Chain<'a>(&'a (dyn StdError + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_says_each_cause_once() {
        let e = Error::Tc {
            what: "listing filters",
            iface: "eth0".into(),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        };
        assert_eq!(e.to_string(), "tc: listing filters on eth0");
        let text = chain(&e).to_string();
        assert_eq!(
            text,
            "tc: listing filters on eth0: No such device (os error 19)"
        );
        assert_eq!(text.matches("No such device").count(), 1, "{text}");
    }

    #[test]
    fn every_cause_of_a_nested_error_is_printed() {
        let inner = Error::io("reading link", "/sys/fs/bpf/x", io::Error::other("gone"));
        let outer = io::Error::other(inner);
        // io::Error's Display is its inner error's, its source the inner error's source.
        assert_eq!(
            chain(&outer).to_string(),
            "reading link /sys/fs/bpf/x: gone"
        );
    }
}
