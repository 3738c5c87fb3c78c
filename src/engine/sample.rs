//! What one request and one workflow iteration leave behind.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// Phase in which a timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeoutPhase {
    /// TCP/TLS connect.
    Connect,
    /// Waiting for the first content token (or a JSON body).
    FirstToken,
    /// Silence inside a stream.
    Idle,
    /// The whole request.
    Total,
}

/// Why a request failed. A failure is data: counted by class, +∞ in percentiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The connection could not be made.
    Connect,
    /// The TLS handshake failed (for example an untrusted certificate).
    Tls,
    /// A timeout fired.
    Timeout(TimeoutPhase),
    /// 429 Too Many Requests.
    RateLimited,
    /// A 3xx answer: redirects are not followed (credentials stay on the
    /// target's origin).
    Redirect,
    /// Another unexpected HTTP status.
    Status(u16),
    /// The connection broke after the response started, or the stream ended
    /// without its end marker.
    StreamBroken,
    /// The server said, inside the stream, that it failed (an `error`
    /// event or an error object mid-stream); its message is an example.
    StreamError,
    /// The response is not what the protocol says (bad SSE, bad JSON, too large).
    Protocol,
    /// A variable to extract was missing from the response.
    Extract,
    /// A request template failed to render with this iteration's values.
    Template,
    /// Another transport failure before the response started.
    Transport,
    /// The load generator's own failure, not the target's: out of file
    /// descriptors (`EMFILE`/`ENFILE`) or another local resource.
    Generator,
    /// Still in flight when the run ended or a ramp-down stopped its user
    /// (the grace period over, or a second signal): cut, counted, not dropped.
    Abandoned,
    /// A class read back from a record this version does not know.
    Unknown,
}

/// Every class but `Status`, with its code in the spill file and its name
/// in results: the one table both directions read.
const CLASSES: [(u16, ErrorClass, &str); 17] = [
    (1, ErrorClass::Connect, "connect"),
    (2, ErrorClass::Tls, "tls"),
    (
        3,
        ErrorClass::Timeout(TimeoutPhase::Connect),
        "timeout_connect",
    ),
    (
        4,
        ErrorClass::Timeout(TimeoutPhase::FirstToken),
        "timeout_first_token",
    ),
    (5, ErrorClass::Timeout(TimeoutPhase::Idle), "timeout_idle"),
    (6, ErrorClass::Timeout(TimeoutPhase::Total), "timeout_total"),
    (7, ErrorClass::RateLimited, "rate_limited"),
    (8, ErrorClass::Redirect, "redirect"),
    (9, ErrorClass::StreamBroken, "stream_broken"),
    (10, ErrorClass::Protocol, "protocol"),
    (11, ErrorClass::Extract, "extract"),
    (12, ErrorClass::Template, "template"),
    (13, ErrorClass::Transport, "transport"),
    (14, ErrorClass::Abandoned, "abandoned"),
    (15, ErrorClass::Generator, "generator"),
    (16, ErrorClass::StreamError, "stream_error"),
    // Never written by a request: a code this version does not know reads
    // back as it, visible, never as an HTTP status.
    (17, ErrorClass::Unknown, "unknown"),
];

/// Status codes are stored from here (`1000 + status`, statuses ≤ 999).
const STATUS_BASE: u16 = 1000;

impl ErrorClass {
    /// Every class's name but an HTTP status's (`http_503` is made when one
    /// is seen), in code order.
    pub fn fixed_names() -> impl Iterator<Item = &'static str> {
        CLASSES.iter().map(|(_, _, n)| *n)
    }

    /// The name used in results and reports.
    pub fn name(&self) -> String {
        match self {
            ErrorClass::Status(s) => format!("http_{s}"),
            other => CLASSES
                .iter()
                .find(|(_, c, _)| c == other)
                .map_or("unknown", |(_, _, n)| n)
                .to_string(),
        }
    }

    /// The class's code in the spill file (0 is no error).
    pub fn code(&self) -> u16 {
        match self {
            ErrorClass::Status(s) => STATUS_BASE + (*s).min(999),
            other => CLASSES
                .iter()
                .find(|(_, c, _)| c == other)
                .map_or(17, |(code, _, _)| *code),
        }
    }

    /// The class a spill code stands for; 0 is none, and a code this
    /// version does not know is [`ErrorClass::Unknown`].
    pub fn from_code(code: u16) -> Option<ErrorClass> {
        match code {
            0 => None,
            s @ STATUS_BASE..=1999 => Some(ErrorClass::Status(s - STATUS_BASE)),
            c => Some(
                CLASSES
                    .iter()
                    .find(|(k, _, _)| *k == c)
                    .map_or(ErrorClass::Unknown, |(_, class, _)| *class),
            ),
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for ErrorClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// One request, with explicit timestamps from the run's monotonic clock.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Step index in the workflow.
    pub step: u16,
    /// Virtual user.
    pub vu: u32,
    /// The user's workflow iteration.
    pub iteration: u64,
    /// Offset of the request start from the run start.
    pub start: Duration,
    /// Request start to the response headers.
    pub ttfb: Option<Duration>,
    /// Request start to the first SSE event of any kind (streams only).
    pub first_event: Option<Duration>,
    /// Request start to the first content event (streams only).
    pub ttft: Option<Duration>,
    /// Request start to the last content event (streams) or the full body (JSON).
    pub e2e: Option<Duration>,
    /// Request start to the end of the response.
    pub stream_end: Duration,
    /// Completion tokens as the server reported them.
    pub usage_tokens: Option<u64>,
    /// Content events received.
    pub chunks: u32,
    /// Bytes of the request body sent.
    pub sent_chars: u32,
    /// Stopped reading by design mid-stream (the client disconnected).
    pub cancelled: bool,
    /// Prompt tokens as the server counted them.
    pub prompt_tokens: Option<u32>,
    /// The resumed stream after the break (`resume = "last-event-id"`).
    pub resume: Option<Resume>,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<ErrorClass>,
    /// Started inside the warm-up: written to the request log, not measured.
    pub warmup: bool,
    /// What the request asked: its drawn lengths, prefix and book.
    pub asked: Asked,
}

/// What one request asked for, as the scenario (or the trace) drew it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Asked {
    /// Characters of the drawn `prompt`, its prefix included (0: none drawn).
    pub prompt_chars: u32,
    /// The drawn `max_tokens` (0: none drawn).
    pub max_tokens: u32,
    /// Whether it opened with a prefix the run had sent before.
    pub prefix: PrefixUse,
    /// The writer's book it was for, from 1 (0: one book).
    pub book: u8,
    /// Which prefix it opened with (its key; 0 without one).
    pub prefix_key: u64,
    /// The prefix's characters.
    pub prefix_chars: u32,
}

/// A request's shared prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PrefixUse {
    /// None.
    #[default]
    None,
    /// The first request of the run with this prefix.
    First,
    /// A prefix the run had already sent.
    Repeated,
}

impl PrefixUse {
    /// Its code in the record file.
    pub fn code(self) -> u8 {
        match self {
            PrefixUse::None => 0,
            PrefixUse::First => 1,
            PrefixUse::Repeated => 2,
        }
    }

    /// `first` or `repeated`; `None` without a prefix.
    pub fn name(self) -> Option<&'static str> {
        match self {
            PrefixUse::None => None,
            PrefixUse::First => Some("first"),
            PrefixUse::Repeated => Some("repeated"),
        }
    }

    /// From its code.
    pub fn from_code(c: u8) -> Self {
        match c {
            1 => PrefixUse::First,
            2 => PrefixUse::Repeated,
            _ => PrefixUse::None,
        }
    }
}

/// How a resumed stream joined the one it continues.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resume {
    /// Reconnect to its first content event.
    pub ttft: Option<Duration>,
    /// Events whose id the first stream had already delivered.
    pub duplicates: u32,
    /// Ids skipped between the break and the resumed events.
    pub lost: u32,
}

/// The W3C trace id of a request, from the run's salt and what its record
/// keeps (user, iteration, step, start): sent as `traceparent`, and found
/// again from the record for the result's slowest requests. Hex, 32 digits.
pub fn trace_id(salt: u64, vu: u32, iteration: u64, step: u16, start: Duration) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(salt.to_le_bytes());
    h.update(vu.to_le_bytes());
    h.update(iteration.to_le_bytes());
    h.update(step.to_le_bytes());
    h.update(
        u64::try_from(start.as_micros())
            .unwrap_or(u64::MAX)
            .to_le_bytes(),
    );
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `traceparent` header of a trace id: version 00, a span id from the
/// trace id's second half, sampled.
pub fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-{}-01", &trace_id[16..32])
}

/// A run's trace salt: the clock and the process, so two runs' trace ids
/// never meet in the tracing backend.
pub fn trace_salt() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// The id sent as `X-Request-Id` and written to the request log.
pub fn request_id(vu: u32, iteration: u64, step: u16) -> String {
    format!("fg-{vu}-{iteration}-{step}")
}

impl Sample {
    /// Output tokens: the server's count when present, else content events.
    pub fn output_tokens(&self) -> u64 {
        self.usage_tokens.unwrap_or(u64::from(self.chunks))
    }

    /// Time per output token: (E2E − TTFT) / (tokens − 1), defined from 2 tokens.
    pub fn tpot(&self) -> Option<Duration> {
        let (ttft, e2e) = (self.ttft?, self.e2e?);
        let n = self.output_tokens();
        (n >= 2).then(|| e2e.saturating_sub(ttft) / u32::try_from(n - 1).unwrap_or(u32::MAX))
    }

    /// True when it succeeded.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// One workflow iteration of one user.
#[derive(Debug, Clone)]
pub struct IterationSample {
    /// Virtual user.
    pub vu: u32,
    /// Which of the scenario's workflows it ran.
    pub workflow: u16,
    /// Iteration number of that user.
    pub iteration: u64,
    /// Offset of its first request from the run start.
    pub start: Duration,
    /// First request start to last response end.
    pub duration: Duration,
    /// Every step succeeded.
    pub ok: bool,
    /// Started inside the warm-up.
    pub warmup: bool,
}

/// Most examples kept per step and error class.
pub const EXAMPLES_PER_CLASS: usize = 3;

/// A failed request kept as an example of its class: what the server said.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorExample {
    /// Step index.
    pub step: u16,
    /// The class.
    pub class: ErrorClass,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The start of the error body, credentials redacted.
    pub body: Option<String>,
    /// The request's `X-Request-Id`.
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ttft: u64, e2e: u64, chunks: u32, usage: Option<u64>) -> Sample {
        Sample {
            step: 0,
            vu: 0,
            iteration: 0,
            start: Duration::ZERO,
            ttfb: Some(Duration::from_millis(1)),
            first_event: Some(Duration::from_millis(1)),
            ttft: Some(Duration::from_millis(ttft)),
            e2e: Some(Duration::from_millis(e2e)),
            stream_end: Duration::from_millis(e2e),
            usage_tokens: usage,
            sent_chars: 0,
            cancelled: false,
            resume: None,
            prompt_tokens: None,
            chunks,
            status: Some(200),
            error: None,
            warmup: false,
            asked: Asked::default(),
        }
    }

    #[test]
    fn tpot_uses_usage_when_present() {
        let s = sample(100, 1100, 50, Some(101));
        assert_eq!(s.tpot(), Some(Duration::from_millis(10)));
        let s = sample(100, 1100, 11, None);
        assert_eq!(s.tpot(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn tpot_undefined_below_two_tokens() {
        assert_eq!(sample(100, 100, 1, None).tpot(), None);
        assert_eq!(sample(100, 100, 0, Some(1)).tpot(), None);
    }

    #[test]
    fn error_class_names() {
        assert_eq!(ErrorClass::Status(503).name(), "http_503");
        // Every class round-trips through its code, and has its own name.
        // (The match is exhaustive: a new class is a compile error here
        // until it is listed, and then must be in the table.)
        let listed = |c: ErrorClass| match c {
            ErrorClass::Connect
            | ErrorClass::Tls
            | ErrorClass::Timeout(_)
            | ErrorClass::RateLimited
            | ErrorClass::Redirect
            | ErrorClass::Status(_)
            | ErrorClass::StreamBroken
            | ErrorClass::StreamError
            | ErrorClass::Protocol
            | ErrorClass::Extract
            | ErrorClass::Template
            | ErrorClass::Transport
            | ErrorClass::Generator
            | ErrorClass::Abandoned
            | ErrorClass::Unknown => c,
        };
        let mut all: Vec<ErrorClass> = CLASSES.iter().map(|(_, c, _)| listed(*c)).collect();
        all.extend([100, 200, 429, 503, 999].map(ErrorClass::Status));
        let mut names = std::collections::BTreeSet::new();
        for c in all {
            assert_eq!(ErrorClass::from_code(c.code()), Some(c), "{c}");
            assert!(names.insert(c.name()), "two classes named {c}");
        }
        assert_eq!(ErrorClass::from_code(0), None);
        assert_eq!(ErrorClass::from_code(999), Some(ErrorClass::Unknown));
        assert_eq!(ErrorClass::from_code(2500), Some(ErrorClass::Unknown));
        assert_eq!(
            ErrorClass::Timeout(TimeoutPhase::FirstToken).name(),
            "timeout_first_token"
        );
    }
}
