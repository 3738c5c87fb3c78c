//! Incremental Server-Sent Events parser.
//!
//! Bytes arrive in arbitrary pieces; an event may be split anywhere, lines end
//! in LF, CRLF or CR, `:` starts a comment, and several `data:` lines of one
//! event are joined with `\n` (WHATWG HTML, "Server-sent events"). Each
//! event is handed out with its data, its type (the `event:` field, which
//! Anthropic-style streams use for `message_stop` and `error`) and the last
//! event ID (`id:`, for resuming a stream); `retry` is read past. The parser
//! never fails: what is not SSE is left for the caller to judge when it
//! reads the data as JSON.

/// Upper bound on one line; a longer line means the server is not speaking SSE.
pub const MAX_LINE: usize = 1 << 20;

/// What went wrong at the byte level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A line grew past [`MAX_LINE`] bytes without ending.
    LineTooLong,
}

/// State carried between reads.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The previous byte was a CR, so a leading LF in the next piece belongs to it.
    after_cr: bool,
    /// The last event ID buffer (`id:` lines; one holding NUL is ignored).
    last_id: Option<Vec<u8>>,
    /// The event type of the event being read (`event:`), reset at each
    /// dispatch.
    event: Option<Vec<u8>>,
}

/// One event as the stream delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The data, `data:` lines joined with `\n`.
    pub data: &'a [u8],
    /// The event type (`event:`), when the server named one.
    pub name: Option<&'a [u8]>,
    /// The last event ID seen up to this event.
    pub id: Option<&'a [u8]>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next piece of the body; `on_event` gets the data of every
    /// event completed by this piece, in order.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(&[u8])) -> Result<(), SseError> {
        self.feed_events(bytes, |e| on_event(e.data))
    }

    /// As [`Self::feed`], with each event's type and last event ID (the
    /// latest `id:` seen up to it, as the stream's reconnect would send it).
    pub fn feed_events(
        &mut self,
        mut bytes: &[u8],
        mut on_event: impl FnMut(SseEvent<'_>),
    ) -> Result<(), SseError> {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while !bytes.is_empty() {
            let end = memchr::memchr2(b'\n', b'\r', bytes);
            // The usual event, `data: ...` and a blank line, whole in this
            // piece with nothing before it: handed out where it lies.
            if let Some(i) = end {
                if self.line.is_empty()
                    && !self.has_data
                    && self.event.is_none()
                    && bytes.get(i..i + 2) == Some(b"\n\n")
                    && bytes.starts_with(b"data:")
                {
                    let v = &bytes[5..i];
                    on_event(SseEvent {
                        data: v.strip_prefix(b" ").unwrap_or(v),
                        name: None,
                        id: self.last_id.as_deref(),
                    });
                    bytes = &bytes[i + 2..];
                    continue;
                }
            }
            match end {
                Some(i) => {
                    let ending = bytes[i];
                    if self.line.is_empty() {
                        self.process_line(&bytes[..i], &mut on_event);
                    } else {
                        self.line.extend_from_slice(&bytes[..i]);
                        let line = std::mem::take(&mut self.line);
                        self.process_line(&line, &mut on_event);
                        self.line = line;
                        self.line.clear();
                    }
                    bytes = &bytes[i + 1..];
                    if ending == b'\r' {
                        match bytes.first() {
                            Some(b'\n') => bytes = &bytes[1..],
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                }
                None => {
                    if self.line.len() + bytes.len() > MAX_LINE {
                        return Err(SseError::LineTooLong);
                    }
                    self.line.extend_from_slice(bytes);
                    break;
                }
            }
        }
        Ok(())
    }

    /// True when bytes of an unfinished event are buffered: the stream ended
    /// inside an event.
    pub fn has_partial(&self) -> bool {
        self.has_data || !self.line.is_empty()
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            if self.has_data {
                on_event(SseEvent {
                    data: &self.data,
                    name: self.event.as_deref(),
                    id: self.last_id.as_deref(),
                });
                self.data.clear();
                self.has_data = false;
            }
            // The type belongs to one event, dispatched or not.
            self.event = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        } else if field == b"id" && !value.contains(&0) && value.len() <= 256 {
            self.last_id = Some(value.to_vec());
        } else if field == b"event" && value.len() <= 256 {
            self.event = Some(value.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn each_event_carries_the_last_id_seen() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 3\ndata: c\n\nid: x\0y\ndata: d\n\n";
        p.feed_events(stream, |e| {
            out.push((
                String::from_utf8_lossy(e.data).into_owned(),
                e.id.map(|i| String::from_utf8_lossy(i).into_owned()),
            ));
        })
        .expect("parses");
        let ids: Vec<Option<&str>> = out.iter().map(|(_, i)| i.as_deref()).collect();
        assert_eq!(ids, [Some("1"), Some("1"), Some("3"), Some("3")]);
    }

    use super::*;

    #[test]
    fn each_event_carries_its_own_type_wherever_the_bytes_split() {
        let stream: &[u8] = b"event: content_block_delta\ndata: {\"a\":1}\n\ndata: plain\n\nevent: ping\n\nevent: message_stop\r\ndata: {}\r\n\r\n";
        let want = [
            (
                "{\"a\":1}".to_string(),
                Some("content_block_delta".to_string()),
            ),
            ("plain".to_string(), None),
            ("{}".to_string(), Some("message_stop".to_string())),
        ];
        for cut in 0..=stream.len() {
            let mut p = SseParser::new();
            let mut out = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                p.feed_events(piece, |e| {
                    out.push((
                        String::from_utf8_lossy(e.data).into_owned(),
                        e.name.map(|n| String::from_utf8_lossy(n).into_owned()),
                    ));
                })
                .expect("parses");
            }
            assert_eq!(out, want, "cut at {cut}");
        }
    }

    fn parse_pieces(pieces: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for piece in pieces {
            p.feed(piece, |d| out.push(String::from_utf8_lossy(d).into_owned()))
                .expect("feed");
        }
        out
    }

    #[test]
    fn single_event() {
        assert_eq!(parse_pieces(&[b"data: {\"a\":1}\n\n"]), vec!["{\"a\":1}"]);
    }

    #[test]
    fn event_split_at_every_byte() {
        let stream = b"data: first\n\ndata: second\r\n\r\n: comment\ndata: [DONE]\n\n";
        let pieces: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_pieces(&pieces), vec!["first", "second", "[DONE]"]);
    }

    #[test]
    fn crlf_split_between_cr_and_lf() {
        assert_eq!(
            parse_pieces(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]),
            vec!["a", "b"]
        );
    }

    #[test]
    fn bare_cr_line_endings() {
        assert_eq!(parse_pieces(&[b"data: a\r\rdata: b\r\r"]), vec!["a", "b"]);
    }

    #[test]
    fn comments_and_other_fields_are_skipped() {
        let s = b": keep-alive\nevent: message\nid: 7\nretry: 100\ndata: x\n\n:\n\n";
        assert_eq!(parse_pieces(&[s]), vec!["x"]);
    }

    #[test]
    fn multi_line_data_joined_with_newline() {
        assert_eq!(
            parse_pieces(&[b"data: one\ndata:two\ndata\n\n"]),
            vec!["one\ntwo\n"]
        );
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        assert!(parse_pieces(&[b"\n\n\r\n\n"]).is_empty());
    }

    #[test]
    fn unfinished_event_is_partial() {
        let mut p = SseParser::new();
        let mut n = 0;
        p.feed(b"data: {\"choices\":[{\"delta\":", |_| n += 1)
            .expect("feed");
        assert_eq!(n, 0);
        assert!(p.has_partial());
        p.feed(b"{}}]}\n\n", |_| n += 1).expect("feed");
        assert_eq!(n, 1);
        assert!(!p.has_partial());
    }

    #[test]
    fn garbage_does_not_panic_and_yields_no_event_without_data_field() {
        let out = parse_pieces(&[b"\xff\xfe garbage\n<html>\n\n", b"\0\0\0\n\n"]);
        assert!(out.is_empty());
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut p = SseParser::new();
        let big = vec![b'a'; MAX_LINE + 1];
        assert_eq!(p.feed(&big, |_| {}), Err(SseError::LineTooLong));
    }
}
