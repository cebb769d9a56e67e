//! Peers' TCP MD5 passwords, read from their `passwordFile`s (a mounted Secret) when BIRD's
//! configuration is written, and written again when a file changes ([`Watch`]: a rotated
//! Secret). A password is only ever written into that configuration: its `Debug` hides it, and
//! errors name the peer and the file, never the content.

use std::{
    collections::BTreeMap,
    fmt, io,
    path::{Path, PathBuf},
};

use crate::{Error, Result, routing::config::PeerConfig};

/// The longest TCP MD5 key Linux takes (`TCP_MD5SIG_MAXKEYLEN`).
const MAX_LEN: usize = 80;

/// A password that fits in BIRD's configuration: a quoted string there has no escapes.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub(crate) fn for_test(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Passwords by peer name.
pub type Passwords = BTreeMap<String, Password>;

/// The passwords of the `peers` that have a `passwordFile`.
pub fn read(peers: &[PeerConfig]) -> Result<Passwords> {
    let mut out = Passwords::new();
    for peer in peers {
        let Some(path) = &peer.password_file else {
            continue;
        };
        let bytes = std::fs::read(path).map_err(|source| Error::BgpPasswordRead {
            peer: peer.name.clone(),
            path: path.clone(),
            source,
        })?;
        out.insert(peer.name.clone(), parse(&peer.name, path, bytes)?);
    }
    Ok(out)
}

/// Notices the peers' password files changing between two looks: a Secret rotated (kubelet
/// swaps the mounted files), a file created, removed or unreadable.
#[derive(Debug, Default)]
pub struct Watch {
    /// Each file's content, or why it could not be read; `None` before the first look.
    seen: Option<BTreeMap<PathBuf, std::result::Result<Vec<u8>, io::ErrorKind>>>,
}

impl Watch {
    /// Whether any of the `peers`' password files differs from the last look (the first look
    /// only records them).
    pub fn changed(&mut self, peers: &[PeerConfig]) -> bool {
        let now: BTreeMap<_, _> = peers
            .iter()
            .filter_map(|p| p.password_file.clone())
            .map(|path| {
                let content = std::fs::read(&path).map_err(|e| e.kind());
                (path, content)
            })
            .collect();
        let changed = self.seen.as_ref().is_some_and(|seen| *seen != now);
        self.seen = Some(now);
        changed
    }
}

/// A password file's content as the password: one trailing newline (`echo`'s) is not part of
/// it.
fn parse(peer: &str, path: &Path, mut bytes: Vec<u8>) -> Result<Password> {
    let unusable = |why| Error::BgpPasswordUnusable {
        peer: peer.to_owned(),
        path: path.to_owned(),
        why,
    };
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| unusable("is not UTF-8"))?;
    if text.is_empty() {
        return Err(unusable("is empty"));
    }
    if text.len() > MAX_LEN {
        return Err(unusable("holds more than 80 bytes (TCP MD5's longest key)"));
    }
    if text.chars().any(|c| c == '"' || c.is_control()) {
        return Err(unusable(
            "holds a double quote or a control character (BIRD's configuration cannot quote them)",
        ));
    }
    Ok(Password(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(bytes: &[u8]) -> std::result::Result<String, String> {
        parse("tor1", Path::new("/s/tor1"), bytes.to_vec())
            .map(|p| p.as_str().to_owned())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn content_rules() {
        assert_eq!(p(b"s3cret"), Ok("s3cret".into()));
        assert_eq!(p(b"s3cret\n"), Ok("s3cret".into()));
        assert_eq!(p(b"s3cret\r\n"), Ok("s3cret".into()));
        assert_eq!(p(b"with space'"), Ok("with space'".into()));
        assert_eq!(p(&[b'x'; 80]), Ok("x".repeat(80)));
        for (bad, why) in [
            (&b""[..], "is empty"),
            (b"\n", "is empty"),
            (b"two\n\n", "control character"),
            (b"a\"b", "double quote"),
            (b"a\tb", "control character"),
            (&[0xff, 0xfe], "not UTF-8"),
            (&[b'x'; 81], "more than 80 bytes"),
        ] {
            let e = p(bad).unwrap_err();
            assert!(
                e.starts_with("bgp peer tor1: passwordFile /s/tor1 ") && e.contains(why),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn read_names_the_peer_and_file_and_never_shows_the_password() {
        let dir = std::env::temp_dir().join(format!("sixlane-bgp-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tor1"), "hunter2\n").unwrap();
        let peer = |name: &str, file: Option<&str>| {
            serde_yaml_ng::from_str::<PeerConfig>(&format!(
                "{{name: {name}, address: '2001:db8::1', asn: 1}}"
            ))
            .map(|mut p| {
                p.password_file = file.map(|f| dir.join(f));
                p
            })
            .unwrap()
        };
        let got = read(&[peer("tor1", Some("tor1")), peer("tor2", None)]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got["tor1"].as_str(), "hunter2");
        assert_eq!(format!("{got:?}"), "{\"tor1\": Password(..)}");

        let e = read(&[peer("tor3", Some("missing"))]).unwrap_err();
        let chain = sixlane_attach::chain(&e).to_string();
        assert!(
            chain.starts_with(&format!(
                "bgp peer tor3: reading its passwordFile {}",
                dir.join("missing").display()
            )) && chain.contains("No such file"),
            "{chain}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn watch_notices_rotation_creation_and_removal() {
        let dir = std::env::temp_dir().join(format!("sixlane-bgp-pw-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut peer: PeerConfig =
            serde_yaml_ng::from_str("{name: tor1, address: '2001:db8::1', asn: 1}").unwrap();
        peer.password_file = Some(dir.join("tor1"));
        let peers = [peer];
        let mut w = Watch::default();
        assert!(!w.changed(&peers), "the first look records");
        assert!(!w.changed(&peers), "still missing");
        std::fs::write(dir.join("tor1"), "one\n").unwrap();
        assert!(w.changed(&peers), "created");
        assert!(!w.changed(&peers));
        std::fs::write(dir.join("tor1"), "two\n").unwrap();
        assert!(w.changed(&peers), "rotated");
        assert!(!w.changed(&peers));
        std::fs::remove_file(dir.join("tor1")).unwrap();
        assert!(w.changed(&peers), "removed");
        assert!(!Watch::default().changed(&[]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
