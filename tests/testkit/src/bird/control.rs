//! BIRD's control socket, the protocol birdc speaks (documented as stable for other programs):
//! a greeting `0001 BIRD <version> ready.`, then one request line at a time; a reply is lines
//! `NNNN-text` (more follows), ` text` (continues the previous code) and a last `NNNN text`.
//! Codes 0xxx say done, 1xxx/2xxx are table rows and headings, 8xxx and 9xxx errors.
//!
//! The harness's own client, written apart from the agent's (`routing/bird/control.rs`), so a
//! test of one never leans on the other.

use std::{
    io::{BufRead, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use crate::{Error, Result};

/// A reply: each line's code (a continuation takes the code before it) and text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<(u16, String)>,
}

impl Reply {
    /// The last line's code.
    pub fn code(&self) -> u16 {
        self.lines.last().map_or(0, |l| l.0)
    }

    /// The text of every line, one per line.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One parsed line: its code (none for a ` ` continuation), whether the reply goes on, text.
fn parse_line(line: &str) -> Option<(Option<u16>, bool, &str)> {
    if let Some(rest) = line.strip_prefix(' ') {
        return Some((None, true, rest));
    }
    let code = line.get(..4)?.parse().ok()?;
    match line.as_bytes().get(4) {
        Some(b'-') => Some((Some(code), true, &line[5..])),
        Some(b' ') => Some((Some(code), false, &line[5..])),
        None => Some((Some(code), false, "")),
        _ => None,
    }
}

/// Reads one reply to `request` from `socket`; `Err` if the socket closes or a line is not
/// BIRD's.
fn read_reply(r: &mut impl BufRead, socket: &Path, request: &str) -> Result<Reply> {
    let mut reply = Reply::default();
    let mut code = 0;
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).map_err(|source| Error::Io {
            what: "reading BIRD's reply from",
            path: socket.to_owned(),
            source,
        })?;
        if n == 0 {
            return Err(Error::BirdClosed {
                request: request.into(),
            });
        }
        let line = line.trim_end_matches('\n');
        let (c, more, text) = parse_line(line).ok_or_else(|| Error::BirdProtocol {
            request: request.into(),
            line: line.to_owned(),
        })?;
        code = c.unwrap_or(code);
        reply.lines.push((code, text.to_owned()));
        if !more {
            return Ok(reply);
        }
    }
}

/// Sends `request` to the BIRD listening on `socket` and returns its reply; a reply ending in
/// an error code (≥ 8000) is an error carrying its text.
pub fn request(socket: &Path, request: &str) -> Result<Reply> {
    let stream = UnixStream::connect(socket).map_err(|source| Error::Io {
        what: "connecting to BIRD's control socket",
        path: socket.to_owned(),
        source,
    })?;
    let io = |source| Error::Io {
        what: "talking to BIRD on",
        path: socket.to_owned(),
        source,
    };
    // `configure` of a large file or a busy BIRD answers within seconds; never hang a test.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut w = stream.try_clone().map_err(io)?;
    let mut r = BufReader::new(stream);
    let hello = read_reply(&mut r, socket, "(greeting)")?;
    if hello.code() != 1 {
        return Err(Error::Bird {
            request: "(greeting)".into(),
            reply: hello.text(),
        });
    }
    writeln!(w, "{request}").map_err(io)?;
    let reply = read_reply(&mut r, socket, request)?;
    if reply.code() >= 8000 {
        return Err(Error::Bird {
            request: request.into(),
            reply: reply.text(),
        });
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Reply {
        read_reply(&mut text.as_bytes(), Path::new("/t"), "test").unwrap()
    }

    #[test]
    fn replies_end_at_the_first_line_without_a_dash() {
        let r = parse("0002-Reading configuration from /x/bird.conf\n0003 Reconfigured\nnext");
        assert_eq!(
            r.lines,
            [
                (2, "Reading configuration from /x/bird.conf".into()),
                (3, "Reconfigured".into())
            ]
        );
        assert_eq!(r.code(), 3);
    }

    #[test]
    fn continuation_lines_take_the_previous_code() {
        let r = parse(concat!(
            "2002-Name       Proto      Table      State  Since         Info\n",
            "1002-up1        BGP        ---        up     12:00:00.000  Established\n",
            "   BGP state:          Established\n",
            "0000 \n",
        ));
        assert_eq!(r.lines.len(), 4);
        assert_eq!(
            r.lines[2],
            (1002, "  BGP state:          Established".into())
        );
        assert_eq!(r.code(), 0);
    }

    #[test]
    fn errors_and_garbage() {
        let e = parse("8002 /x/bird.conf:3:1 syntax error\n");
        assert_eq!(e.code(), 8002);
        let socket = Path::new("/t");
        assert!(read_reply(&mut "hello\n".as_bytes(), socket, "t").is_err());
        assert!(read_reply(&mut "0002-half\n".as_bytes(), socket, "t").is_err());
    }
}
