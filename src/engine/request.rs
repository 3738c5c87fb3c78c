//! One HTTP request of a step, timed from just before it is written to the
//! last content event, with a timeout per phase.

use std::time::Duration;

use reqwest::header::HeaderValue;
use tokio::time::{timeout_at, Instant};

use super::sample::{ErrorClass, Resume, Sample, TimeoutPhase};
use super::wire;
use crate::scenario::{ResponseKind, Step, Timeouts};
use crate::stream::reader::{End, Fault, StreamReader};

/// What came back from one request.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Start to the response headers (time to first byte).
    pub ttfb: Option<Duration>,
    /// Start to the first SSE event of any kind (a role-only chunk counts):
    /// far from TTFT when the server queues after answering.
    pub first_event: Option<Duration>,
    /// Start to first content event.
    pub ttft: Option<Duration>,
    /// Start to last content event (or full body).
    pub e2e: Option<Duration>,
    /// Start to response end.
    pub stream_end: Duration,
    /// Server-reported completion tokens.
    pub usage_tokens: Option<u64>,
    /// Bytes of the request body sent (the prompt's size, for the prefill analysis).
    pub sent_chars: u32,
    /// The step stopped reading by design (`cancel_after_tokens`/`cancel_after`).
    pub cancelled: bool,
    /// Prompt tokens as the server counted them (`usage.prompt_tokens`).
    pub prompt_tokens: Option<u64>,
    /// Resuming steps: the last event ID of a content event.
    pub last_event_id: Option<String>,
    /// Resuming steps: the numeric ids of the content events, in order.
    pub event_ids: Vec<u64>,
    /// How the resumed stream joined this one.
    pub resume: Option<Resume>,
    /// Content events.
    pub chunks: u32,
    /// HTTP status.
    pub status: Option<u16>,
    /// Failure class.
    pub error: Option<ErrorClass>,
    /// Seconds the server asked to wait (429 `Retry-After`).
    pub retry_after: Option<Duration>,
    /// Parsed JSON body of a JSON step.
    pub json: Option<serde_json::Value>,
    /// Generated text, when the step captures it.
    pub text: Option<String>,
    /// The start of an error response's body (what the server said was wrong).
    pub error_body: Option<String>,
}

impl Outcome {
    /// The record of this request: step `step` of `vu`'s `iteration`,
    /// started at `start` on the run's clock.
    pub fn sample(
        &self,
        step: u16,
        vu: u32,
        iteration: u64,
        start: Duration,
        warmup: bool,
    ) -> Sample {
        Sample {
            step,
            vu,
            iteration,
            start,
            ttfb: self.ttfb,
            first_event: self.first_event,
            ttft: self.ttft,
            e2e: self.e2e,
            stream_end: self.stream_end,
            usage_tokens: self.usage_tokens,
            chunks: self.chunks,
            sent_chars: self.sent_chars,
            cancelled: self.cancelled,
            resume: self.resume,
            prompt_tokens: self
                .prompt_tokens
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            status: self.status,
            error: self.error,
            warmup,
            asked: super::sample::Asked::default(),
        }
    }
}

pub use crate::stream::reader::{plausible_usage, MAX_PLAUSIBLE_TOKENS};

/// Longest error-body excerpt kept, in characters.
pub const ERROR_BODY_CHARS: usize = 300;

/// The start of a body as one line of text: invalid UTF-8 replaced,
/// control characters turned into spaces, cut at [`ERROR_BODY_CHARS`].
pub fn body_excerpt(body: &[u8]) -> String {
    let head = &body[..body.len().min(ERROR_BODY_CHARS * 4)];
    let lossy = String::from_utf8_lossy(head);
    let mut chars = lossy.chars();
    let text: String = chars
        .by_ref()
        .take(ERROR_BODY_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut t = text.trim().to_string();
    if body.len() > head.len() || chars.next().is_some() {
        t.push('…');
    }
    t
}

/// A request ready to send.
#[derive(Debug)]
pub struct Prepared<'a> {
    /// The step.
    pub step: &'a Step,
    /// Full URL, built by [`crate::target::Target::join`].
    pub url: reqwest::Url,
    /// Rendered body.
    pub body: Option<String>,
    /// `Authorization` (or configured) header.
    pub auth: Option<(&'a str, HeaderValue)>,
    /// Sent as `X-Request-Id`, so server logs can be matched to the request log.
    pub request_id: String,
    /// Sent as `traceparent` (W3C Trace Context), so the server's tracing
    /// (OpenTelemetry, Jaeger, Tempo, Datadog) records the request under it.
    pub traceparent: String,
}

/// `resumed` ids against the last one delivered before the break.
pub fn resume_check(last: u64, resumed: &[u64]) -> (u32, u32) {
    let (mut dup, mut lost, mut next) = (0u64, 0u64, last + 1);
    for &id in resumed {
        if id < next {
            dup += 1;
        } else {
            lost += id - next;
            next = id + 1;
        }
    }
    (
        u32::try_from(dup).unwrap_or(u32::MAX),
        u32::try_from(lost).unwrap_or(u32::MAX),
    )
}

/// Send it and read the response to the end. A step that cancels and
/// resumes (`resume = "last-event-id"`) reconnects once, right after its
/// break, with `Last-Event-ID`, and reads the rest.
pub async fn execute(
    client: &wire::Client,
    req: Prepared<'_>,
    timeouts: &Timeouts,
    max_body: usize,
    gaps: &mut Vec<u32>,
) -> Outcome {
    let Prepared {
        step,
        url,
        body,
        auth,
        request_id,
        traceparent,
    } = req;
    let who = Who {
        step,
        request_id: &request_id,
        traceparent: &traceparent,
    };
    // Only a step that may resume keeps its request for a second send.
    let kept = step
        .resume
        .then(|| (url.clone(), body.clone(), auth.clone()));
    let first = Send {
        url,
        body,
        auth,
        last_event_id: None,
        cancel: step.cancel,
    };
    let mut out = execute_once(client, &who, first, timeouts, max_body, gaps).await;
    if !(step.resume && out.cancelled && out.error.is_none()) {
        return out;
    }
    let (Some(last), Some((url, body, auth))) = (out.last_event_id.clone(), kept) else {
        return out;
    };
    let again = Send {
        url,
        body,
        auth,
        last_event_id: Some(&last),
        cancel: None,
    };
    let again = execute_once(client, &who, again, timeouts, max_body, gaps).await;
    let (duplicates, lost) = match last.trim().parse::<u64>() {
        Ok(n) => resume_check(n, &again.event_ids),
        Err(_) => (0, 0),
    };
    out.resume = Some(Resume {
        ttft: again.ttft,
        duplicates,
        lost,
    });
    out.chunks = out.chunks.saturating_add(again.chunks);
    out.stream_end += again.stream_end;
    if let (Some(t), Some(more)) = (out.text.as_mut(), again.text.as_deref()) {
        t.push_str(more);
    }
    if again.error.is_some() {
        out.error = again.error;
        out.error_body = again.error_body;
        out.status = again.status;
    }
    out
}

/// What one send of a prepared request carries: `last_event_id` resumes a
/// stream, `cancel` may cut it.
struct Send<'a> {
    url: reqwest::Url,
    body: Option<String>,
    auth: Option<(&'a str, HeaderValue)>,
    last_event_id: Option<&'a str>,
    cancel: Option<crate::scenario::Cancel>,
}

/// The step and the request id every send of one request carries.
struct Who<'a> {
    step: &'a Step,
    request_id: &'a str,
    traceparent: &'a str,
}

/// A request's headers: the credential, the resume point, the request id
/// and the step's own.
fn headers<'a>(
    step: &'a Step,
    auth: Option<&'a (&'a str, HeaderValue)>,
    last_event_id: Option<&'a str>,
    who: &'a Who<'a>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(4 + step.headers.len());
    if let Some((name, value)) = auth {
        // A header value built from a `&str` is UTF-8.
        if let Ok(v) = std::str::from_utf8(value.as_bytes()) {
            headers.push((name, v));
        }
    }
    if let Some(v) = last_event_id {
        headers.push(("last-event-id", v));
    }
    headers.push(("x-request-id", who.request_id));
    headers.push(("traceparent", who.traceparent));
    for (k, v) in &step.headers {
        headers.push((k, v));
    }
    headers
}

/// An answer with a status the step does not expect: its class, the wait
/// it asks for (`Retry-After`) and the start of its body, read within a
/// bound so the connection can be reused.
async fn refused(
    response: &mut wire::Response,
    status: u16,
    first_deadline: Instant,
    out: &mut Outcome,
) {
    out.retry_after = response
        .retry_after
        .as_deref()
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    if let Ok(Ok(body)) = timeout_at(
        first_deadline.max(Instant::now() + Duration::from_secs(1)),
        read_capped(response, 64 << 10),
    )
    .await
    {
        out.error_body = Some(body_excerpt(&body)).filter(|s| !s.is_empty());
    }
    out.error = Some(if status == 429 {
        ErrorClass::RateLimited
    } else if (300..400).contains(&status) {
        ErrorClass::Redirect
    } else {
        ErrorClass::Status(status)
    });
}

/// One request.
// Long by design: one request in its order (build, send, status, body by kind);
// each stage is a named function (`headers`, `refused`, `read_json`,
// `read_stream`).
async fn execute_once(
    client: &wire::Client,
    req: &Who<'_>,
    send: Send<'_>,
    timeouts: &Timeouts,
    max_body: usize,
    gaps: &mut Vec<u32>,
) -> Outcome {
    let step = req.step;
    let Send {
        url,
        body,
        auth,
        last_event_id,
        cancel,
    } = send;
    let headers = headers(step, auth.as_ref(), last_event_id, req);
    let sent_chars = body
        .as_ref()
        .map_or(0, |b| u32::try_from(b.chars().count()).unwrap_or(u32::MAX));
    let request = wire::Request {
        method: &step.method,
        url: &url,
        headers,
        body: body.as_deref(),
        event_stream: step.response == ResponseKind::Sse,
    };

    let start = Instant::now();
    let total_deadline = start + timeouts.total;
    let first_deadline = (start + timeouts.first_token).min(total_deadline);
    let mut out = Outcome {
        sent_chars,
        ..Outcome::default()
    };
    let phase_at = |deadline: Instant, phase: TimeoutPhase| {
        if deadline == total_deadline {
            TimeoutPhase::Total
        } else {
            phase
        }
    };

    let mut response = match timeout_at(first_deadline, client.send(&request)).await {
        Err(_) => {
            out.error = Some(ErrorClass::Timeout(phase_at(
                first_deadline,
                TimeoutPhase::FirstToken,
            )));
            out.stream_end = start.elapsed();
            return out;
        }
        Ok(Err(e)) => {
            // Why it failed (an untrusted certificate, a refused connection)
            // is kept for the error examples.
            out.error_body = Some(body_excerpt(e.detail.as_bytes()));
            out.error = Some(e.class);
            out.stream_end = start.elapsed();
            return out;
        }
        Ok(Ok(r)) => r,
    };
    out.ttfb = Some(start.elapsed());

    let status = response.status;
    out.status = Some(status);
    let expected = if step.expect_status.is_empty() {
        (200..300).contains(&status)
    } else {
        step.expect_status.contains(&status)
    };
    if !expected {
        refused(&mut response, status, first_deadline, &mut out).await;
        out.stream_end = start.elapsed();
        return out;
    }

    match step.response {
        ResponseKind::Json => {
            read_json(
                response,
                start,
                first_deadline,
                total_deadline,
                max_body,
                &mut out,
            )
            .await
        }
        ResponseKind::Sse => {
            let deadlines = Deadlines {
                start,
                first: first_deadline,
                total: total_deadline,
                idle: timeouts.idle,
                max_body,
            };
            read_stream(response, step, cancel, deadlines, gaps, &mut out).await;
        }
    }
    out
}

/// `Retry-After` in either form: delay seconds, or an HTTP date (then the
/// wait is the time from `now` to it; a date in the past is no wait).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let now = chrono::DateTime::<chrono::Utc>::from(now);
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

async fn read_capped(response: &mut wire::Response, cap: usize) -> Result<Vec<u8>, ErrorClass> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                if body.len() + bytes.len() > cap {
                    return Err(ErrorClass::Protocol);
                }
                body.extend_from_slice(bytes);
            }
            Ok(None) => return Ok(body),
            Err(wire::BodyError::Protocol) => return Err(ErrorClass::Protocol),
            Err(wire::BodyError::Broken) => return Err(ErrorClass::StreamBroken),
        }
    }
}

async fn read_json(
    mut response: wire::Response,
    start: Instant,
    first_deadline: Instant,
    total_deadline: Instant,
    max_body: usize,
    out: &mut Outcome,
) {
    let result = timeout_at(first_deadline, read_capped(&mut response, max_body)).await;
    let end = Instant::now();
    out.stream_end = end - start;
    match result {
        Err(_) => {
            out.error = Some(ErrorClass::Timeout(if first_deadline == total_deadline {
                TimeoutPhase::Total
            } else {
                TimeoutPhase::FirstToken
            }));
        }
        Ok(Err(class)) => out.error = Some(class),
        Ok(Ok(body)) => match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => {
                out.e2e = Some(end - start);
                out.prompt_tokens = v
                    .pointer("/usage/prompt_tokens")
                    .and_then(serde_json::Value::as_u64);
                out.usage_tokens = v
                    .pointer("/usage/completion_tokens")
                    .and_then(serde_json::Value::as_u64);
                if out
                    .usage_tokens
                    .is_some_and(|n| !plausible_usage(n, body.len()))
                {
                    out.error = Some(ErrorClass::Protocol);
                }
                out.json = Some(v);
            }
            Err(_) => out.error = Some(ErrorClass::Protocol),
        },
    }
}

/// The clock a stream is read against.
struct Deadlines {
    start: Instant,
    first: Instant,
    total: Instant,
    idle: Duration,
    max_body: usize,
}

/// Gaps kept in the stream's own state before they go to the step's list.
const GAP_BATCH: usize = 24;

/// What every piece of a stream updates, kept together: with thousands of
/// streams, each wake-up finds its stream's memory gone from the cache, and
/// the lines it touches are what it costs.
struct Tally {
    /// When the latest piece arrived.
    latest: Instant,
    /// The deadline the timer was last set to (read here, not from the timer).
    armed: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    first_event: Option<Instant>,
    received: usize,
    gaps: [u32; GAP_BATCH],
    n_gaps: usize,
}

impl Tally {
    fn gap(&mut self, gap: Duration, itl: &mut Vec<u32>) {
        if self.n_gaps == GAP_BATCH {
            itl.extend_from_slice(&self.gaps);
            self.n_gaps = 0;
        }
        self.gaps[self.n_gaps] = u32::try_from(gap.as_micros()).unwrap_or(u32::MAX);
        self.n_gaps += 1;
    }
}

/// Why the read of a stream stopped.
enum Stop {
    /// The reader has its end, or the body ended.
    Ended,
    /// The writer pressed stop (`cancel.after`) in time.
    Cancelled,
    /// A deadline passed or the body broke.
    Failed(ErrorClass),
}

impl Deadlines {
    /// When the read must give up: the first-token deadline, then the idle
    /// time after the latest piece, never past the total or the cancel.
    fn due(&self, first: Option<Instant>, latest: Instant, cancel_at: Option<Instant>) -> Instant {
        let d = match first {
            None => self.first,
            Some(_) => (latest + self.idle).min(self.total),
        };
        cancel_at.map_or(d, |c| d.min(c))
    }

    /// Which deadline `deadline` was.
    fn phase(&self, deadline: Instant, first: Option<Instant>) -> TimeoutPhase {
        if deadline == self.total {
            TimeoutPhase::Total
        } else if first.is_none() {
            TimeoutPhase::FirstToken
        } else {
            TimeoutPhase::Idle
        }
    }
}

impl Tally {
    fn new(start: Instant, armed: Instant) -> Tally {
        Tally {
            latest: start,
            armed,
            first: None,
            last: None,
            first_event: None,
            received: 0,
            gaps: [0; GAP_BATCH],
            n_gaps: 0,
        }
    }

    /// A piece arrived now: feed it to the reader and time what it held.
    /// Every content event of a piece arrived at once: the first of them
    /// closes the gap since the last one, the rest are gaps of zero.
    fn piece(
        &mut self,
        piece: &[u8],
        reader: &mut StreamReader<'_>,
        max_body: usize,
        itl: &mut Vec<u32>,
    ) -> Result<(), ErrorClass> {
        let now = Instant::now();
        self.latest = now;
        self.received += piece.len();
        if self.received > max_body {
            return Err(ErrorClass::Protocol);
        }
        let fed = reader.feed(piece);
        if fed.events > 0 && self.first_event.is_none() {
            self.first_event = Some(now);
        }
        for _ in 0..fed.contents {
            if self.first.is_none() {
                self.first = Some(now);
            }
            if let Some(prev) = self.last {
                self.gap(now - prev, itl);
            }
            self.last = Some(now);
        }
        Ok(())
    }
}

/// Read pieces until the reader has its end, the body ends, the writer
/// presses stop or a deadline passes, timing every event on the way.
///
/// One timer per stream, not one per piece: it is set to the deadline
/// known when it was armed, moved earlier at once when the deadline is (the
/// first content event shortens it to the idle time), and moved later only
/// when it fires early.
async fn pump(
    response: &mut wire::Response,
    reader: &mut StreamReader<'_>,
    dl: &Deadlines,
    cancel_at: Option<Instant>,
    itl: &mut Vec<u32>,
) -> (Tally, Stop) {
    let mut t = Tally::new(dl.start, dl.due(None, dl.start, cancel_at));
    let timer = tokio::time::sleep_until(t.armed);
    tokio::pin!(timer);
    while !reader.ended() {
        let deadline = dl.due(t.first, t.latest, cancel_at);
        if deadline < t.armed {
            t.armed = deadline;
            timer.as_mut().reset(deadline);
        }
        let read = tokio::select! {
            biased;
            r = response.chunk() => Ok(r),
            () = &mut timer => Err(()),
        };
        let piece = match read {
            Err(()) if Instant::now() < deadline => {
                t.armed = deadline;
                timer.as_mut().reset(deadline);
                continue;
            }
            Err(()) if cancel_at.is_some_and(|c| Instant::now() >= c) => {
                return (t, Stop::Cancelled)
            }
            Err(()) => {
                let phase = dl.phase(deadline, t.first);
                return (t, Stop::Failed(ErrorClass::Timeout(phase)));
            }
            Ok(Err(wire::BodyError::Protocol)) => return (t, Stop::Failed(ErrorClass::Protocol)),
            Ok(Err(wire::BodyError::Broken)) => return (t, Stop::Failed(ErrorClass::StreamBroken)),
            Ok(Ok(None)) => {
                reader.body_ended();
                break;
            }
            Ok(Ok(Some(bytes))) => bytes,
        };
        if let Err(class) = t.piece(piece, reader, dl.max_body, itl) {
            return (t, Stop::Failed(class));
        }
    }
    (t, Stop::Ended)
}

/// Read a streamed answer: the socket and the clocks. What each event
/// means (content, usage, the end, the server's error) is the stream
/// reader's ([`crate::stream::reader`]); this times the events it reports
/// ([`pump`]) and enforces the deadlines.
async fn read_stream(
    mut response: wire::Response,
    step: &Step,
    cancel: Option<crate::scenario::Cancel>,
    dl: Deadlines,
    itl: &mut Vec<u32>,
    out: &mut Outcome,
) {
    let keep_text = step.capture_text.is_some() || step.append_text.is_some();
    let mut reader = StreamReader::new(
        &step.stream,
        keep_text,
        step.resume,
        cancel.and_then(|c| c.tokens),
    );
    // Gaps go into the step's list as the stream goes, and are taken back
    // out if it fails.
    let kept = itl.len();
    // The writer presses stop after so long.
    let cancel_at = cancel.and_then(|c| c.after).map(|a| dl.start + a);
    let (t, stop) = pump(&mut response, &mut reader, &dl, cancel_at, itl).await;
    itl.extend_from_slice(&t.gaps[..t.n_gaps]);
    let cut_by_reader = matches!(reader.said().end, Some(End::Cancelled));
    let done = matches!(reader.said().end, Some(End::Done));
    let said = reader.finish();
    let error = match stop {
        Stop::Failed(class) => Some(class),
        Stop::Ended | Stop::Cancelled => match &said.end {
            Some(End::Fault(Fault::Malformed)) => Some(ErrorClass::Protocol),
            Some(End::Fault(Fault::Broken)) => Some(ErrorClass::StreamBroken),
            Some(End::Fault(Fault::ServerError(message))) => {
                out.error_body = Some(body_excerpt(message.as_bytes()));
                Some(ErrorClass::StreamError)
            }
            _ => None,
        },
    };
    out.error = out.error.or(error);
    out.chunks = said.chunks;
    out.last_event_id = said.last_id;
    out.event_ids = said.event_ids;
    out.prompt_tokens = said.prompt_tokens;
    out.usage_tokens = said.completion_tokens;
    if matches!(stop, Stop::Cancelled) || cut_by_reader {
        // Disconnect now, as a client whose writer pressed stop: the
        // connection is closed, never drained.
        drop(response);
        out.cancelled = true;
    } else if done {
        // Read to the end of the body so the connection goes back to the pool;
        // a server that stays open after its end marker is not waited for long.
        let drain_until = (Instant::now() + dl.idle.min(Duration::from_secs(2))).min(dl.total);
        while let Ok(Ok(Some(_))) = timeout_at(drain_until, response.chunk()).await {}
    }
    out.stream_end = dl.start.elapsed();
    out.ttft = t.first.map(|f| f - dl.start);
    out.first_event = t.first_event.map(|f| f - dl.start);
    out.e2e = t.last.map(|l| l - dl.start);
    if out.error.is_some() {
        itl.truncate(kept);
    }
    out.text = said.text;
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_resume_is_checked_against_the_break() {
        assert_eq!(resume_check(5, &[6, 7, 8]), (0, 0));
        // Replayed from the start: five repeats.
        assert_eq!(resume_check(5, &[1, 2, 3, 4, 5, 6, 7]), (5, 0));
        // Skipped two, then one repeated.
        assert_eq!(resume_check(5, &[8, 9, 9, 10]), (1, 2));
    }

    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37 UTC
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
