//! A client for BIRD's control socket, the protocol `birdc` speaks ([`super::reply`]): BIRD
//! greets with `0001 BIRD <version> ready.`, then each request is one line answered by one
//! reply. The agent talks to the socket itself, so its container needs no `birdc`.
//!
//! Every request has a deadline: a BIRD that hangs costs the caller a timeout, never a hang.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::Ipv6Net;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
};

use super::{
    reply::{Assembler, Line, Reply},
    show::{self, Protocol},
};
use crate::{Error, Result};

/// How long one request (connecting and the greeting included) may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What `configure` achieved (BIRD's 0xxx answers to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Configured {
    /// `0003`: the new configuration is active.
    Done,
    /// `0004`: accepted; protocols that must restart are shutting down first.
    InProgress,
    /// `0005`: accepted after the reconfiguration already running.
    Queued,
    /// Any other success code (BIRD's own message is in the log).
    Other(u16),
}

impl Configured {
    fn from_code(code: u16) -> Self {
        match code {
            3 => Configured::Done,
            4 => Configured::InProgress,
            5 => Configured::Queued,
            c => Configured::Other(c),
        }
    }
}

/// Which routes `routes` lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routes {
    /// Routes a protocol brought into its table (`show route protocol P`): what a BGP peer sent
    /// and the import filter accepted.
    From(String),
    /// Routes exported to a protocol (`show route export P`): what BIRD announces to a peer.
    ExportedTo(String),
    /// Routes a protocol's import filter refused (`show route filtered protocol P`; kept by
    /// `import keep filtered`).
    FilteredFrom(String),
}

/// One look at BIRD: its version, its protocols, and the prefixes some of them brought in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub version: String,
    pub protocols: Vec<Protocol>,
    /// Per protocol asked for (and up): the prefixes it brought in.
    pub received: BTreeMap<String, Vec<Ipv6Net>>,
}

/// BIRD's control socket at `path`. Each call opens its own connection (BIRD serves one
/// request at a time per connection; connections are cheap), so a `Control` is freely shared.
#[derive(Clone, Debug)]
pub struct Control {
    path: PathBuf,
    timeout: Duration,
}

impl Control {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: TIMEOUT,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connects and reads the greeting: BIRD's version (`2.0.12`).
    pub async fn version(&self) -> Result<String> {
        Ok(self.session().await?.version)
    }

    /// A connection for several requests in a row.
    pub async fn session(&self) -> Result<Session> {
        const GREETING: &str = "(connect)";
        let connect = async {
            let stream =
                UnixStream::connect(&self.path)
                    .await
                    .map_err(|source| Error::BirdConnect {
                        path: self.path.clone(),
                        source,
                    })?;
            let mut s = Session {
                path: self.path.clone(),
                timeout: self.timeout,
                stream: BufReader::new(stream),
                version: String::new(),
            };
            let hello = s.read_reply(GREETING).await?;
            match hello.last() {
                Some(Line { code: 1, text }) => {
                    s.version = greeting_version(text).unwrap_or(text).to_owned();
                    Ok(s)
                }
                _ => Err(Error::BirdProtocol {
                    path: self.path.clone(),
                    command: GREETING.into(),
                    line: format!("{hello:?}"),
                }),
            }
        };
        tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| Error::BirdTimeout {
                path: self.path.clone(),
                command: GREETING.into(),
                secs: self.timeout.as_secs(),
            })?
    }

    /// `configure "<file>"`: BIRD reads `file` and switches to it in place (changed routes and
    /// filters are re-announced; sessions are only restarted for changes that need it).
    pub async fn configure(&self, file: &Path) -> Result<Configured> {
        let cmd = format!("configure {}", quoted(file)?);
        let reply = self.session().await?.request(&cmd).await?;
        Ok(Configured::from_code(reply.last().map_or(0, |l| l.code)))
    }

    /// `configure check "<file>"`: whether the running BIRD would accept `file`.
    pub async fn check(&self, file: &Path) -> Result<()> {
        let cmd = format!("configure check {}", quoted(file)?);
        self.session().await?.request(&cmd).await.map(drop)
    }

    /// `down`: BIRD shuts down (each session ends with a Cease, so peers withdraw its
    /// routes at once) and exits.
    pub async fn down(&self) -> Result<()> {
        self.session().await?.request("down").await.map(drop)
    }

    /// `show protocols all`, parsed.
    pub async fn protocols(&self) -> Result<Vec<Protocol>> {
        self.session().await?.protocols().await
    }

    /// The prefixes of `which` routes.
    pub async fn routes(&self, which: &Routes) -> Result<Vec<Ipv6Net>> {
        self.session().await?.routes(which).await
    }

    /// BIRD's version, its protocols, and what each protocol that is up and `wanted` brought
    /// in, on one connection.
    pub async fn snapshot(&self, wanted: impl Fn(&Protocol) -> bool) -> Result<Snapshot> {
        let mut s = self.session().await?;
        let protocols = s.protocols().await?;
        let mut received = BTreeMap::new();
        for p in protocols.iter().filter(|p| p.state == "up" && wanted(p)) {
            let routes = s.routes(&Routes::From(p.name.clone())).await?;
            received.insert(p.name.clone(), routes);
        }
        Ok(Snapshot {
            version: s.version,
            protocols,
            received,
        })
    }
}

/// `BIRD 2.0.12 ready.` → `2.0.12`.
fn greeting_version(text: &str) -> Option<&str> {
    text.strip_prefix("BIRD ")?
        .strip_suffix(" ready.")
        .map(str::trim)
}

/// A path as a BIRD string literal (BIRD's strings have no escapes).
fn quoted(path: &Path) -> Result<String> {
    let s = path.to_str().filter(|s| !s.contains(['"', '\n', '\r']));
    match s {
        Some(s) => Ok(format!("\"{s}\"")),
        None => Err(Error::BirdPath {
            path: path.to_owned(),
        }),
    }
}

/// One open connection to BIRD's control socket.
#[derive(Debug)]
pub struct Session {
    path: PathBuf,
    timeout: Duration,
    stream: BufReader<UnixStream>,
    version: String,
}

impl Session {
    /// BIRD's version from the greeting.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Sends `command` and reads its whole reply; an 8xxx/9xxx final line is an error.
    pub async fn request(&mut self, command: &str) -> Result<Reply> {
        let (timeout, path) = (self.timeout, self.path.clone());
        let exchange = async {
            let line = format!("{command}\n");
            self.stream
                .get_mut()
                .write_all(line.as_bytes())
                .await
                .map_err(|source| self.io(command, source))?;
            self.read_reply(command).await
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::BirdTimeout {
                path,
                command: command.into(),
                secs: timeout.as_secs(),
            })??;
        match reply.last() {
            Some(l) if reply.is_error() => Err(Error::BirdRefused {
                command: command.into(),
                code: l.code,
                message: l.text.trim().to_owned(),
            }),
            _ => Ok(reply),
        }
    }

    /// `show protocols all`, parsed.
    pub async fn protocols(&mut self) -> Result<Vec<Protocol>> {
        Ok(show::protocols(&self.request("show protocols all").await?))
    }

    /// The prefixes of `which` routes.
    pub async fn routes(&mut self, which: &Routes) -> Result<Vec<Ipv6Net>> {
        let cmd = match which {
            Routes::From(p) => format!("show route protocol {p}"),
            Routes::ExportedTo(p) => format!("show route export {p}"),
            Routes::FilteredFrom(p) => format!("show route filtered protocol {p}"),
        };
        Ok(show::prefixes(&self.request(&cmd).await?))
    }

    async fn read_reply(&mut self, command: &str) -> Result<Reply> {
        let mut a = Assembler::default();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = self
                .stream
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|source| self.io(command, source))?;
            if n == 0 {
                return Err(self.io(command, std::io::ErrorKind::UnexpectedEof.into()));
            }
            let raw = String::from_utf8_lossy(&buf);
            let raw = raw.trim_end_matches(['\n', '\r']);
            match a.push(raw) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(_) => {
                    return Err(Error::BirdProtocol {
                        path: self.path.clone(),
                        command: command.into(),
                        line: raw.to_owned(),
                    });
                }
            }
        }
    }

    fn io(&self, command: &str, source: std::io::Error) -> Error {
        Error::BirdIo {
            path: self.path.clone(),
            command: command.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_answers() {
        assert_eq!(Configured::from_code(3), Configured::Done);
        assert_eq!(Configured::from_code(4), Configured::InProgress);
        assert_eq!(Configured::from_code(5), Configured::Queued);
        assert_eq!(Configured::from_code(19), Configured::Other(19));
    }

    #[test]
    fn greeting_and_quoting() {
        assert_eq!(greeting_version("BIRD 2.0.12 ready."), Some("2.0.12"));
        assert_eq!(greeting_version("BIRD v3.1.0 ready."), Some("v3.1.0"));
        assert_eq!(greeting_version("hello"), None);
        assert_eq!(
            quoted(Path::new("/run/sixlane/bird/bird.conf")).unwrap(),
            "\"/run/sixlane/bird/bird.conf\""
        );
        assert!(matches!(
            quoted(Path::new("/tmp/a\"b")),
            Err(Error::BirdPath { .. })
        ));
    }
}
