//! Reading one SSE event of an LLM stream: content, usage, end marker, or
//! the server's error.
//!
//! What counts as content follows aiperf and vLLM bench: a non-empty text
//! delta (answer or reasoning). Role-only deltas, usage-only chunks and the
//! end marker carry no content and never stop the TTFT clock. The end is
//! the `done` data (trimmed, or for a JSON `done` any object holding its
//! fields) or an event named `done_event`; an error is an event named in
//! `error_events` (Anthropic's `event: error`) or an error object at the
//! `error` pointer (OpenAI-compatible servers failing mid-stream).

use std::borrow::Cow;

use serde_json::Value;

use super::walk;

/// Where the interesting values sit inside each event's JSON.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// JSON pointers to text deltas; the first non-empty one counts.
    pub content: Vec<String>,
    /// JSON pointer to the server's count of generated tokens.
    pub usage_completion_tokens: Option<String>,
    /// JSON pointer to the server's count of prompt tokens.
    pub usage_prompt_tokens: Option<String>,
    /// The data payload that ends the stream.
    pub done: String,
    /// The event type that ends the stream (`message_stop`), if any.
    pub done_event: Option<String>,
    /// Event types that carry the server's error (`error`).
    pub error_events: Vec<String>,
    /// JSON pointer to an error object inside an event's data.
    pub error: Option<String>,
    /// Whether a stream that ends without `done` is broken (by default a
    /// stream that completes normally after content is fine without it).
    pub require_done: bool,
    /// `done` read as a JSON object, when it is one: an event whose data is
    /// an object holding these fields ends the stream, however spaced.
    pub done_fields: Option<serde_json::Map<String, Value>>,
    /// Use the one-pass walk (set by [`StreamSpec::finish`] when the pointers are the defaults).
    pub fast: bool,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            content: vec![
                "/choices/0/delta/content".into(),
                "/choices/0/delta/reasoning_content".into(),
                "/choices/0/delta/reasoning".into(),
            ],
            usage_completion_tokens: Some("/usage/completion_tokens".into()),
            usage_prompt_tokens: Some("/usage/prompt_tokens".into()),
            done: "[DONE]".into(),
            done_event: None,
            error_events: vec!["error".into()],
            error: Some("/error".into()),
            // `transformers serve` and others end a good stream without
            // `[DONE]`: a body that completes after content is a success.
            require_done: false,
            done_fields: None,
            fast: true,
        }
    }
}

/// What one event said.
#[derive(Debug, Default, PartialEq)]
pub struct ChunkInfo {
    /// Length in bytes of the content text, 0 when the event carries none.
    pub content_len: usize,
    /// The server's completion-token count, when this event carries usage.
    pub completion_tokens: Option<u64>,
    /// The server's prompt-token count, when this event carries usage.
    pub prompt_tokens: Option<u64>,
    /// The event is the end marker.
    pub done: bool,
    /// The server's error, as it said it (bounded): the request failed.
    pub error: Option<String>,
}

/// Longest error message kept from a stream, in bytes.
pub const MAX_ERROR_MESSAGE: usize = 512;

/// The event's data is not JSON (and not the end marker).
#[derive(Debug, PartialEq)]
pub struct MalformedChunk;

impl StreamSpec {
    /// Settle the reader after the pointers were changed.
    #[must_use]
    pub fn finish(mut self) -> Self {
        self.fast = self.is_default_shape();
        self.done_fields = match serde_json::from_str(self.done.trim()) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        };
        self
    }

    /// True when the pointers are the defaults, so the walk applies.
    fn is_default_shape(&self) -> bool {
        let d = StreamSpec::default();
        self.content == d.content
            && self.usage_completion_tokens == d.usage_completion_tokens
            && self.usage_prompt_tokens == d.usage_prompt_tokens
            && self.error == d.error
    }

    /// The data is the end marker: equal once trimmed, or (for a JSON
    /// `done`) an object holding every field of it.
    fn is_done(&self, data: &[u8]) -> bool {
        if data.trim_ascii() == self.done.trim().as_bytes() {
            return true;
        }
        let Some(fields) = &self.done_fields else {
            return false;
        };
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(data) else {
            return false;
        };
        fields.iter().all(|(k, v)| m.get(k) == Some(v))
    }

    /// Interpret one event with its type: an error event, the end event,
    /// or data read by [`Self::interpret`].
    pub fn interpret_event(
        &self,
        event: super::sse::SseEvent<'_>,
        text: Option<&mut String>,
    ) -> Result<ChunkInfo, MalformedChunk> {
        if let Some(name) = event.name.map(<[u8]>::trim_ascii) {
            if self.error_events.iter().any(|e| e.as_bytes() == name) {
                let said = match serde_json::from_slice::<Value>(event.data) {
                    Ok(v) => {
                        error_message(&v, self.error.as_deref()).unwrap_or_else(|| message_of(&v))
                    }
                    Err(_) => bounded(&String::from_utf8_lossy(event.data)),
                };
                return Ok(ChunkInfo {
                    error: Some(said),
                    ..ChunkInfo::default()
                });
            }
            if self
                .done_event
                .as_deref()
                .is_some_and(|d| d.as_bytes() == name)
            {
                return Ok(ChunkInfo {
                    done: true,
                    ..ChunkInfo::default()
                });
            }
        }
        self.interpret(event.data, text)
    }

    /// The default pointers read by [`walk`]; `None` when the walk leaves
    /// the answer to the generic reader.
    fn interpret_fast(data: &[u8], text: Option<&mut String>) -> Option<ChunkInfo> {
        let found = walk::walk(data)?;
        let mut info = ChunkInfo {
            completion_tokens: found.completion_tokens,
            prompt_tokens: found.prompt_tokens,
            ..ChunkInfo::default()
        };
        // The first non-empty text counts; an escaped string is never empty.
        let Some(piece) = found
            .content
            .iter()
            .flatten()
            .find(|s| s.escaped || !s.raw().is_empty())
        else {
            return Some(info);
        };
        let piece: Cow<'_, str> = if piece.escaped {
            Cow::Owned(serde_json::from_slice(piece.quoted).ok()?)
        } else {
            Cow::Borrowed(std::str::from_utf8(piece.raw()).ok()?)
        };
        info.content_len = piece.len();
        if let Some(t) = text {
            t.push_str(&piece);
        }
        Some(info)
    }

    /// Interpret one event. `text` receives the content when present, so a
    /// caller that needs the generated text (to carry it to a later step) can
    /// keep it.
    pub fn interpret(
        &self,
        data: &[u8],
        mut text: Option<&mut String>,
    ) -> Result<ChunkInfo, MalformedChunk> {
        if self.is_done(data) {
            return Ok(ChunkInfo {
                done: true,
                ..ChunkInfo::default()
            });
        }
        if self.fast {
            // The walk reads the usual shapes; what it cannot vouch for goes
            // to the generic reader, which defines the meaning, so both
            // always agree. (Text is written only once the whole event was
            // read, so a fallback never sees half of it.)
            if let Some(info) = Self::interpret_fast(data, text.as_deref_mut()) {
                return Ok(info);
            }
        }
        let value: Value = serde_json::from_slice(data).map_err(|_| MalformedChunk)?;
        let mut info = ChunkInfo::default();
        if let Some(said) = error_message(&value, self.error.as_deref()) {
            info.error = Some(said);
            return Ok(info);
        }
        for ptr in &self.content {
            if let Some(Value::String(s)) = value.pointer(ptr) {
                if !s.is_empty() {
                    info.content_len = s.len();
                    if let Some(t) = text {
                        t.push_str(s);
                    }
                    break;
                }
            }
        }
        let count = |ptr: &Option<String>| {
            ptr.as_deref()
                .and_then(|p| value.pointer(p))
                .and_then(Value::as_u64)
        };
        info.completion_tokens = count(&self.usage_completion_tokens);
        info.prompt_tokens = count(&self.usage_prompt_tokens);
        Ok(info)
    }
}

/// The error at `pointer` in `value`, as a message: its `message` when it
/// has one, else its text; `None` when there is none (absent or null).
fn error_message(value: &Value, pointer: Option<&str>) -> Option<String> {
    let e = value.pointer(pointer?)?;
    (!e.is_null()).then(|| message_of(e))
}

/// What an error value says: a `message` (or `error.message`) string, a
/// string, or the JSON, bounded.
fn message_of(e: &Value) -> String {
    let said = [e.pointer("/message"), e.pointer("/error/message")]
        .into_iter()
        .flatten()
        .find_map(Value::as_str)
        .map(str::to_string)
        .or_else(|| e.as_str().map(str::to_string))
        .unwrap_or_else(|| e.to_string());
    bounded(&said)
}

/// At most [`MAX_ERROR_MESSAGE`] bytes, cut at a character boundary.
fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_ERROR_MESSAGE);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readers must agree on every input.
    fn read(data: &str) -> Result<ChunkInfo, MalformedChunk> {
        let fast = StreamSpec::default().interpret(data.as_bytes(), None);
        let generic = StreamSpec {
            fast: false,
            ..StreamSpec::default()
        }
        .interpret(data.as_bytes(), None);
        assert_eq!(fast, generic, "readers disagree on {data}");
        fast
    }

    #[test]
    fn custom_pointers_use_the_generic_reader() {
        let spec = StreamSpec {
            content: vec!["/text".into()],
            usage_completion_tokens: Some("/n".into()),
            ..StreamSpec::default()
        }
        .finish();
        assert!(!spec.fast);
        let i = spec
            .interpret(br#"{"text":"abc","n":3}"#, None)
            .expect("json");
        assert_eq!((i.content_len, i.completion_tokens), (3, Some(3)));
    }

    #[test]
    fn escaped_content_is_read() {
        let i = read(r#"{"choices":[{"delta":{"content":"\u591c\n"}}]}"#).expect("json");
        assert_eq!(i.content_len, "夜\n".len());
    }

    #[test]
    fn content_delta_counts() {
        let i = read(r#"{"choices":[{"delta":{"content":"夜色"}}]}"#).expect("json");
        assert_eq!(i.content_len, "夜色".len());
        assert!(!i.done);
    }

    #[test]
    fn role_only_first_chunk_is_not_content() {
        let i = read(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#).expect("json");
        assert_eq!(i.content_len, 0);
        let i = read(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#).expect("json");
        assert_eq!(i.content_len, 0);
    }

    #[test]
    fn reasoning_text_is_content() {
        let i = read(r#"{"choices":[{"delta":{"reasoning_content":"思考"}}]}"#).expect("json");
        assert_eq!(i.content_len, "思考".len());
    }

    #[test]
    fn usage_only_chunk_carries_counts_but_no_content() {
        let i = read(r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":64}}"#)
            .expect("json");
        assert_eq!(i.content_len, 0);
        assert_eq!(i.completion_tokens, Some(64));
        assert_eq!(i.prompt_tokens, Some(12));
    }

    #[test]
    fn odd_counts_are_ignored_by_both_readers() {
        for count in ["-3", "2.5", "\"12\"", "null", "1e3", "{}"] {
            let i = read(&format!(
                r#"{{"choices":[{{"delta":{{"content":"a"}}}}],"usage":{{"completion_tokens":{count}}}}}"#
            ))
            .expect("json");
            assert_eq!(i.completion_tokens, None, "{count}");
            assert_eq!(i.content_len, 1, "{count}");
        }
        let i = read(r#"{"choices":[{"delta":{"content":7}}]}"#).expect("json");
        assert_eq!(i.content_len, 0);
        let i = read(r#"{"usage":{"completion_tokens":18446744073709551615}}"#).expect("json");
        assert_eq!(i.completion_tokens, Some(u64::MAX));
    }

    /// Both readers, text included, on `data` as bytes.
    fn agree(data: &[u8]) {
        let (mut a, mut b) = (String::new(), String::new());
        let fast = StreamSpec::default().interpret(data, Some(&mut a));
        let generic = StreamSpec {
            fast: false,
            ..StreamSpec::default()
        }
        .interpret(data, Some(&mut b));
        let shown = String::from_utf8_lossy(data);
        assert_eq!(fast, generic, "readers disagree on {shown}");
        assert_eq!(a, b, "texts differ on {shown}");
    }

    #[test]
    fn the_walk_agrees_with_the_generic_reader_on_mutated_chunks() {
        let seeds: [&[u8]; 6] = [
            br#"{"choices":[{"delta":{"content":"a"},"delta":{"reasoning":"b"}}],"usage":{"prompt_tokens":1},"usage":{"completion_tokens":2}}"#,
            br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"a\n\"b\" \u00e9"},"logprobs":null,"finish_reason":null}]}"#,
            br#"{"choices":[{"delta":{"content":"","reasoning_content":"think"}},{"delta":{"content":"second"}}],"usage":null}"#,
            br#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":64,"total_tokens":76}}"#,
            br#"{"choices":[{"delta":{"reasoning":"r","content":"c"},"finish_reason":"stop"}],"usage":{"completion_tokens":-0,"prompt_tokens":1.5e2}}"#,
            " { \"choices\" : [ { \"delta\" : { \"content\" : \"夜色\\t\" } } ] , \"x\" : [ true , false , null , -0.5E-3 ] } ".as_bytes(),
        ];
        // Bytes that change a chunk's structure or meaning.
        const SIGNIFICANT: &[u8] = b"{}[]\":,\\0-.eE unt\x01\xc3\xa9";
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for seed in seeds {
            agree(seed);
            for _ in 0..4000 {
                let mut data = seed.to_vec();
                for _ in 0..1 + next(3) {
                    let at = next(data.len() + 1);
                    let byte = SIGNIFICANT[next(SIGNIFICANT.len())];
                    match next(3) {
                        0 if at < data.len() => data[at] = byte,
                        1 if at < data.len() => {
                            data.remove(at);
                        }
                        _ => data.insert(at, byte),
                    }
                }
                agree(&data);
            }
        }
    }

    #[test]
    fn done_marker() {
        assert!(read("[DONE]").expect("done").done);
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(read("{\"choices\":[{\"delta\":"), Err(MalformedChunk));
        assert_eq!(read("<html>"), Err(MalformedChunk));
    }

    #[test]
    fn text_is_collected() {
        let mut text = String::new();
        let spec = StreamSpec::default();
        spec.interpret(
            br#"{"choices":[{"delta":{"content":"a"}}]}"#,
            Some(&mut text),
        )
        .expect("json");
        spec.interpret(
            br#"{"choices":[{"delta":{"content":"b"}}]}"#,
            Some(&mut text),
        )
        .expect("json");
        assert_eq!(text, "ab");
    }
}
