//! The framing of BIRD's control socket protocol (what `birdc` speaks; documented as stable for
//! other programs): a reply is lines of a four-digit code followed by `-` (more lines follow) or
//! a space (the reply's last line). A line continuing the previous line's code may start with a
//! single space instead of the code. Codes 0xxx say an action completed, 1xxx are table rows,
//! 2xxx table headings, 8xxx run-time and 9xxx parse errors; `+` lines are spontaneous log
//! echoes (never asked for here, skipped).

/// One line of a reply: its code and text (without the code and separator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub code: u16,
    pub text: String,
}

/// A complete reply: every line, the final one last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<Line>,
}

impl Reply {
    /// The texts of the lines with `code`.
    pub fn texts(&self, code: u16) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(move |l| l.code == code)
            .map(|l| l.text.as_str())
    }

    /// The final line (every complete reply has one).
    pub fn last(&self) -> Option<&Line> {
        self.lines.last()
    }

    /// Whether the final line is an error (8xxx run-time, 9xxx parse).
    pub fn is_error(&self) -> bool {
        self.last().is_some_and(|l| l.code >= 8000)
    }
}

/// What one raw line of the socket is.
#[derive(Debug, PartialEq, Eq)]
enum Framed {
    /// A line with more to follow.
    More(Line),
    /// The reply's last line.
    Last(Line),
    /// A spontaneous printout (`+...`).
    Echo,
}

/// Frames one raw line (without its line break); `last_code` is the previous line's, for
/// continuation lines. `None` for a line that is not BIRD's protocol.
fn frame(raw: &str, last_code: Option<u16>) -> Option<Framed> {
    if raw.starts_with('+') {
        return Some(Framed::Echo);
    }
    if let Some(text) = raw.strip_prefix(' ') {
        return Some(Framed::More(Line {
            code: last_code?,
            text: text.to_owned(),
        }));
    }
    let digits = raw.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = digits.parse().ok()?;
    let line = |text: &str| Line {
        code,
        text: text.to_owned(),
    };
    match raw.as_bytes().get(4) {
        Some(b'-') => Some(Framed::More(line(&raw[5..]))),
        Some(b' ') => Some(Framed::Last(line(&raw[5..]))),
        None => Some(Framed::Last(line(""))),
        Some(_) => None,
    }
}

/// Collects raw lines into a reply.
#[derive(Debug, Default)]
pub struct Assembler {
    reply: Reply,
}

/// A raw line that is not BIRD's protocol.
#[derive(Debug, PartialEq, Eq)]
pub struct NotProtocol;

impl Assembler {
    /// Takes one raw line (without its line break): the reply once it is complete.
    pub fn push(&mut self, raw: &str) -> Result<Option<Reply>, NotProtocol> {
        let last_code = self.reply.lines.last().map(|l| l.code);
        match frame(raw, last_code).ok_or(NotProtocol)? {
            Framed::Echo => Ok(None),
            Framed::More(l) => {
                self.reply.lines.push(l);
                Ok(None)
            }
            Framed::Last(l) => {
                self.reply.lines.push(l);
                Ok(Some(std::mem::take(&mut self.reply)))
            }
        }
    }
}

/// Assembles the reply in `text` (raw socket lines), as tests capture them.
#[cfg(test)]
pub fn parse(text: &str) -> Reply {
    let mut a = Assembler::default();
    for raw in text.lines() {
        if let Some(r) = a.push(raw).expect("BIRD's protocol") {
            return r;
        }
    }
    panic!("incomplete reply: {:?}", a.reply);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(code: u16, text: &str) -> Line {
        Line {
            code,
            text: text.into(),
        }
    }

    #[test]
    fn frames_codes_continuations_and_echoes() {
        assert_eq!(
            frame("1002-device1  Device", None),
            Some(Framed::More(line(1002, "device1  Device")))
        );
        assert_eq!(
            frame(" Neighbor AS: 65000", Some(1006)),
            Some(Framed::More(line(1006, "Neighbor AS: 65000")))
        );
        assert_eq!(frame("0000 ", None), Some(Framed::Last(line(0, ""))));
        assert_eq!(frame("0000", None), Some(Framed::Last(line(0, ""))));
        assert_eq!(
            frame("0003 Reconfigured", None),
            Some(Framed::Last(line(3, "Reconfigured")))
        );
        assert_eq!(frame("+ some log line", Some(1)), Some(Framed::Echo));
        // A continuation needs a line before it; anything else is not the protocol.
        assert_eq!(frame(" orphan", None), None);
        assert_eq!(frame("hello", None), None);
        assert_eq!(frame("12a4 x", None), None);
        assert_eq!(frame("0001x", None), None);
        assert_eq!(frame("", None), None);
    }

    #[test]
    fn assembles_a_configure_reply() {
        let r = parse("0002-Reading configuration from /run/bird/bird.conf\n0003 Reconfigured\n");
        assert_eq!(
            r.lines,
            vec![
                line(2, "Reading configuration from /run/bird/bird.conf"),
                line(3, "Reconfigured")
            ]
        );
        assert!(!r.is_error());
        let e = parse("0002-Reading configuration from /x\n8002 /x, line 3: syntax error\n");
        assert!(e.is_error());
    }

    #[test]
    fn continuation_lines_keep_the_code_and_their_indentation() {
        let r = parse(
            "1006-  BGP state:          Active\n     Neighbor AS:      65000\n+echo\n \n0000 \n",
        );
        let texts: Vec<&str> = r.texts(1006).collect();
        // The single space replaces the code; the message's own indentation stays, and an
        // empty message continues as a lone space.
        assert_eq!(
            texts,
            [
                "  BGP state:          Active",
                "    Neighbor AS:      65000",
                ""
            ]
        );
    }

    #[test]
    fn the_assembler_starts_over_after_a_reply() {
        let mut a = Assembler::default();
        assert_eq!(
            a.push("0001 BIRD 2.0.12 ready."),
            Ok(Some(Reply {
                lines: vec![line(1, "BIRD 2.0.12 ready.")]
            }))
        );
        assert_eq!(
            a.push("0000 "),
            Ok(Some(Reply {
                lines: vec![line(0, "")]
            }))
        );
        assert_eq!(a.push("what"), Err(NotProtocol));
    }
}
