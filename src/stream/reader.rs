//! One streamed answer read event by event: the SSE framing, the meaning of
//! each event under the step's [`StreamSpec`], and what the stream has said
//! so far. No clock and no socket: the engine hands in each piece of the
//! body as it arrives and times what [`StreamReader::feed`] reports.

use super::chunk::StreamSpec;
use super::sse::SseParser;

/// A server count of output tokens above this (per request, on top of 1,000
/// per byte of content received) cannot be true: a protocol error.
pub const MAX_PLAUSIBLE_TOKENS: u64 = 100_000;

/// Whether a usage count is believable for `bytes` of content received
/// (hidden reasoning tokens make the count legitimately exceed the text).
pub fn plausible_usage(count: u64, bytes: usize) -> bool {
    count <= MAX_PLAUSIBLE_TOKENS.saturating_add((bytes as u64).saturating_mul(1_000))
}

/// Why a stream failed, as the stream itself shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An event that is not what the protocol says (not JSON, a line too
    /// long, a usage count no stream of this size can carry, usage without
    /// content).
    Malformed,
    /// The server said it failed (an error event or error object), with
    /// its message.
    ServerError(String),
    /// The body ended inside an event, before any content, or without the
    /// end marker the scenario requires.
    Broken,
}

/// How reading ended, when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The end marker.
    Done,
    /// The writer pressed stop after the step's number of content events.
    Cancelled,
    /// The stream failed.
    Fault(Fault),
}

/// What one piece of the body carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Events completed by this piece (any kind).
    pub events: u32,
    /// Of them, events with content (each a token arrival to time).
    pub contents: u32,
}

/// What the stream has said so far.
#[derive(Debug, Default)]
pub struct Said {
    /// Bytes of content text.
    pub content_bytes: usize,
    /// Content events.
    pub chunks: u32,
    /// The server's prompt-token count, the latest one sent.
    pub prompt_tokens: Option<u64>,
    /// The server's completion-token count, the latest one sent.
    pub completion_tokens: Option<u64>,
    /// The last event ID of a content event (kept when asked).
    pub last_id: Option<String>,
    /// Numeric event IDs of the content events, in order (kept when asked).
    pub event_ids: Vec<u64>,
    /// The content text (kept when asked).
    pub text: Option<String>,
    /// How it ended, once it did.
    pub end: Option<End>,
}

/// One stream being read.
pub struct StreamReader<'s> {
    spec: &'s StreamSpec,
    parser: SseParser,
    keep_ids: bool,
    stop_after: Option<u32>,
    said: Said,
}

impl<'s> StreamReader<'s> {
    /// A reader for a stream of `spec`: `keep_text` keeps the content text,
    /// `keep_ids` the content events' IDs (for a resumed stream),
    /// `stop_after` ends the reading after that many content events.
    pub fn new(
        spec: &'s StreamSpec,
        keep_text: bool,
        keep_ids: bool,
        stop_after: Option<u32>,
    ) -> Self {
        StreamReader {
            spec,
            parser: SseParser::new(),
            keep_ids,
            stop_after,
            said: Said {
                text: keep_text.then(String::new),
                ..Said::default()
            },
        }
    }

    /// What was said so far.
    pub fn said(&self) -> &Said {
        &self.said
    }

    /// True once the stream ended (done, cancelled or failed): nothing more
    /// is read.
    pub fn ended(&self) -> bool {
        self.said.end.is_some()
    }

    /// Read the next piece of the body. Events after the end are ignored.
    pub fn feed(&mut self, piece: &[u8]) -> Fed {
        let mut fed = Fed::default();
        if self.ended() {
            return fed;
        }
        let (spec, keep_ids, stop_after) = (self.spec, self.keep_ids, self.stop_after);
        let said = &mut self.said;
        let framed = self.parser.feed_events(piece, |event| {
            if said.end.is_some() {
                return;
            }
            fed.events += 1;
            let info = match spec.interpret_event(event, said.text.as_mut()) {
                Ok(info) => info,
                Err(_) => {
                    said.end = Some(End::Fault(Fault::Malformed));
                    return;
                }
            };
            if let Some(message) = info.error {
                said.end = Some(End::Fault(Fault::ServerError(message)));
                return;
            }
            if info.done {
                said.end = Some(End::Done);
                return;
            }
            if info.content_len > 0 {
                fed.contents += 1;
                if keep_ids {
                    said.last_id = event.id.map(|i| String::from_utf8_lossy(i).into_owned());
                    if let Some(n) = said.last_id.as_deref().and_then(|s| s.trim().parse().ok()) {
                        said.event_ids.push(n);
                    }
                }
                said.content_bytes += info.content_len;
                said.chunks = said.chunks.saturating_add(1);
                if stop_after.is_some_and(|k| said.chunks >= k) {
                    said.end = Some(End::Cancelled);
                    return;
                }
            }
            if let Some(n) = info.prompt_tokens {
                said.prompt_tokens = Some(n);
            }
            if let Some(n) = info.completion_tokens {
                said.completion_tokens = Some(n);
            }
        });
        if framed.is_err() && self.said.end.is_none() {
            self.said.end = Some(End::Fault(Fault::Malformed));
        }
        fed
    }

    /// The body ended: a stream cut inside an event, with no content, or
    /// without a required end marker is broken.
    pub fn body_ended(&mut self) {
        if self.said.end.is_none()
            && (self.spec.require_done || self.parser.has_partial() || self.said.chunks == 0)
        {
            self.said.end = Some(End::Fault(Fault::Broken));
        }
    }

    /// Everything the stream said, with the last checks of a stream read to
    /// its end: a usage count it cannot carry, or usage without content,
    /// is malformed.
    pub fn finish(mut self) -> Said {
        let s = &mut self.said;
        let clean = matches!(s.end, None | Some(End::Done | End::Cancelled));
        if clean {
            let implausible = s
                .completion_tokens
                .is_some_and(|n| !plausible_usage(n, s.content_bytes));
            let no_content = s.chunks == 0 && s.completion_tokens.unwrap_or(0) > 0;
            if implausible || no_content {
                s.end = Some(End::Fault(Fault::Malformed));
            }
        }
        self.said
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(spec: &StreamSpec, body: &str) -> Said {
        let mut r = StreamReader::new(spec, true, false, None);
        r.feed(body.as_bytes());
        r.body_ended();
        r.finish()
    }

    fn anthropic() -> StreamSpec {
        StreamSpec {
            content: vec!["/delta/text".into()],
            usage_completion_tokens: Some("/usage/output_tokens".into()),
            usage_prompt_tokens: Some("/message/usage/input_tokens".into()),
            done: "[DONE]".into(),
            done_event: Some("message_stop".into()),
            ..StreamSpec::default()
        }
        .finish()
    }

    const MESSAGE_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n";
    const DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"夜色\"}}\n\n";

    #[test]
    fn an_anthropic_stream_reads_content_usage_and_its_stop_event() {
        let body = format!(
            "{MESSAGE_START}event: ping\ndata: {{\"type\": \"ping\"}}\n\n{DELTA}{DELTA}event: message_delta\ndata: {{\"type\":\"message_delta\",\"usage\":{{\"output_tokens\":2}}}}\n\nevent: message_stop\ndata: {{\"type\": \"message_stop\"}}\n\n"
        );
        let s = read(&anthropic(), &body);
        assert_eq!(s.end, Some(End::Done));
        assert_eq!((s.chunks, s.content_bytes), (2, 12));
        assert_eq!((s.prompt_tokens, s.completion_tokens), (Some(12), Some(2)));
        assert_eq!(s.text.as_deref(), Some("夜色夜色"));
    }

    #[test]
    fn an_error_event_after_content_is_the_servers_error() {
        let body = format!(
            "{MESSAGE_START}{DELTA}{DELTA}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}}}\n\n"
        );
        let s = read(&anthropic(), &body);
        assert_eq!(
            s.end,
            Some(End::Fault(Fault::ServerError("Overloaded".into())))
        );
        assert_eq!(s.chunks, 2);
    }

    #[test]
    fn an_openai_error_object_mid_stream_is_the_servers_error() {
        let chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
        let body = format!(
            "{chunk}{chunk}data: {{\"error\": {{\"message\": \"CUDA out of memory\", \"type\": \"server_error\", \"code\": 500}}}}\n\ndata: [DONE]\n\n"
        );
        let s = read(&StreamSpec::default(), &body);
        assert_eq!(
            s.end,
            Some(End::Fault(Fault::ServerError("CUDA out of memory".into())))
        );
        // A null error is no error.
        let body = format!("{chunk}data: {{\"error\": null, \"choices\": []}}\n\ndata: [DONE]\n\n");
        assert_eq!(read(&StreamSpec::default(), &body).end, Some(End::Done));
    }

    #[test]
    fn done_matches_trimmed_text_and_a_json_done_however_spaced() {
        let chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
        let s = read(
            &StreamSpec::default(),
            &format!("{chunk}data:  [DONE] \n\n"),
        );
        assert_eq!(s.end, Some(End::Done));
        let spec = StreamSpec {
            done: r#"{"type":"message_stop"}"#.into(),
            require_done: true,
            ..StreamSpec::default()
        }
        .finish();
        for stop in [
            r#"{"type": "message_stop"}"#,
            r#"{ "type" : "message_stop", "extra": 1 }"#,
            r#"{"type":"message_stop"}"#,
        ] {
            let s = read(&spec, &format!("{chunk}data: {stop}\n\n"));
            assert_eq!(s.end, Some(End::Done), "{stop}");
        }
        let s = read(
            &spec,
            &format!("{chunk}data: {{\"type\": \"message_start\"}}\n\n"),
        );
        assert_eq!(s.end, Some(End::Fault(Fault::Broken)), "not the end");
    }

    #[test]
    fn a_body_cut_short_or_empty_is_broken_and_odd_usage_is_malformed() {
        let chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
        assert_eq!(
            read(&StreamSpec::default(), chunk).end,
            None,
            "fine after content"
        );
        assert_eq!(
            read(&StreamSpec::default(), &format!("{chunk}data: {{\"cho")).end,
            Some(End::Fault(Fault::Broken))
        );
        assert_eq!(
            read(&StreamSpec::default(), "data: [DONE]\n\n").end,
            Some(End::Done),
            "an empty answer that says it is done"
        );
        assert_eq!(
            read(&StreamSpec::default(), "").end,
            Some(End::Fault(Fault::Broken))
        );
        let usage =
            "data: {\"choices\":[],\"usage\":{\"completion_tokens\":5}}\n\ndata: [DONE]\n\n";
        assert_eq!(
            read(&StreamSpec::default(), usage).end,
            Some(End::Fault(Fault::Malformed)),
            "usage without content"
        );
        assert_eq!(
            read(&StreamSpec::default(), "data: {nope\n\n").end,
            Some(End::Fault(Fault::Malformed))
        );
    }

    #[test]
    fn reading_stops_after_the_cancel_count() {
        let chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
        let spec = StreamSpec::default();
        let mut r = StreamReader::new(&spec, false, false, Some(2));
        let fed = r.feed(chunk.repeat(5).as_bytes());
        assert_eq!(fed.contents, 2);
        assert_eq!(r.finish().end, Some(End::Cancelled));
    }
}
