//! How the mock behaves, and what it counts.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use super::FaultRates;

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Time to first content token.
    pub ttft: Duration,
    /// Gap between content tokens.
    pub itl: Duration,
    /// Content tokens per streamed answer (OpenAI requests may ask for fewer with `max_tokens`).
    pub output_tokens: u32,
    /// Each delay is moved by a uniform amount in ±jitter.
    pub jitter: Duration,
    /// Factor on both latencies (1.3 = 30% slower).
    pub slowdown: f64,
    /// Requests served at once; more wait in a queue. `None`: unlimited.
    pub max_concurrency: Option<usize>,
    /// Injected faults.
    pub faults: FaultRates,
    /// Seconds sent in `Retry-After` with a 429.
    pub retry_after_s: u64,
    /// How long a `hang` fault stays silent before ending the stream.
    pub hang: Duration,
    /// Accepted bearer tokens; `None` accepts any (but still requires the header).
    pub tokens: Option<HashSet<String>>,
    /// Seed of the fault and jitter draws.
    pub seed: u64,
    /// Periodic bursts of an error status.
    pub burst: Option<Burst>,
    /// End streams without `data: [DONE]` (the body just completes), as
    /// `transformers serve` does.
    pub no_done: bool,
    /// Send no usage chunk (OpenAI dialect), as servers that report none.
    pub no_usage: bool,
    /// Batching: every other stream being generated adds this to each
    /// inter-token gap, as continuous batching on one accelerator does.
    pub itl_per_stream: Duration,
    /// Compute-bound prefill: every other stream being generated adds this
    /// to the time to first token (with `itl_per_stream`, TTFT and TPOT
    /// grow together with load, as on a server whose compute is full).
    pub ttft_per_stream: Duration,
    /// Requests per second allowed per bearer token; above it, 429 with
    /// `Retry-After`.
    pub rate_limit: Option<f64>,
    /// Latencies grow by this fraction per minute since the start.
    pub drift_per_min: f64,
    /// Connections of the database pool behind the JSON steps, if one.
    pub db_pool: Option<usize>,
    /// How long a JSON step holds one.
    pub db_time: Duration,
    /// Prefill: each character of a generation request's body adds this to its
    /// TTFT (long prompts answer later).
    pub prefill_per_char: Duration,
    /// Prefix cache: a prompt's leading blocks of 64 characters seen
    /// before skip the prefill (`vllm:prefix_cache_hits_total`).
    pub prefix_cache: bool,
    /// KV-cache capacity in streams: while more are generated, each
    /// stream is preempted once mid-stream and stalls for `preempt`.
    pub kv_slots: Option<usize>,
    /// How long a preempted stream stalls (its cache recomputed).
    pub preempt: Duration,
    /// Keep generating a stream's remaining tokens after its client
    /// disconnected (a fault: the server should stop).
    pub ignore_disconnect: bool,
    /// Number content events (`id: 1`, `id: 2`, …) and resume a stream
    /// asked again with `Last-Event-ID: k` from token k + 1.
    pub event_ids: bool,
    /// A fault: a resumed stream replays from the first token.
    pub resume_replays: bool,
}

/// Every `every`, answer all requests for `length` with `status`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// The error status.
    pub status: u16,
    /// How long each burst lasts.
    pub length: Duration,
    /// Period.
    pub every: Duration,
}

impl std::str::FromStr for Burst {
    type Err = String;
    /// `503:500ms/5s`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not STATUS:LENGTH/PERIOD (for example `503:500ms/5s`)");
        let (status, rest) = s.split_once(':').ok_or_else(bad)?;
        let (len, every) = rest.split_once('/').ok_or_else(bad)?;
        let status: u16 = status.trim().parse().map_err(|_| bad())?;
        if !(400..600).contains(&status) {
            return Err(bad());
        }
        let length = humantime::parse_duration(len.trim()).map_err(|_| bad())?;
        let every = humantime::parse_duration(every.trim()).map_err(|_| bad())?;
        if every.is_zero() || length > every {
            return Err(format!("`{s}`: the burst must be shorter than its period"));
        }
        Ok(Burst {
            status,
            length,
            every,
        })
    }
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            ttft: Duration::from_millis(80),
            itl: Duration::from_millis(8),
            output_tokens: 64,
            jitter: Duration::ZERO,
            slowdown: 1.0,
            max_concurrency: None,
            faults: FaultRates::default(),
            retry_after_s: 1,
            hang: Duration::from_secs(120),
            tokens: None,
            seed: 1,
            burst: None,
            no_done: false,
            no_usage: false,
            itl_per_stream: Duration::ZERO,
            ttft_per_stream: Duration::ZERO,
            rate_limit: None,
            drift_per_min: 0.0,
            db_pool: None,
            db_time: Duration::from_millis(10),
            prefill_per_char: Duration::ZERO,
            prefix_cache: false,
            kv_slots: None,
            preempt: Duration::from_millis(200),
            ignore_disconnect: false,
            event_ids: false,
            resume_replays: false,
        }
    }
}

/// Parse `--drift`: `2%/min`, `0.5%/s` or `10%/h`, as a fraction per minute.
pub fn parse_drift(s: &str) -> Result<f64, String> {
    let bad = || format!("`{s}` is not a drift like `2%/min`, `0.5%/s` or `10%/h`");
    let (pct, per) = s.trim().split_once("%/").ok_or_else(bad)?;
    let pct: f64 = pct.trim().parse().map_err(|_| bad())?;
    let minutes = match per.trim() {
        "s" => 1.0 / 60.0,
        "min" | "m" => 1.0,
        "h" => 60.0,
        _ => return Err(bad()),
    };
    if !pct.is_finite() || !(0.0..=1000.0).contains(&pct) {
        return Err(format!("`{s}`: the percentage must be between 0 and 1000"));
    }
    Ok(pct / 100.0 / minutes)
}

/// Counters and the server's own timing, shared by all requests.
#[derive(Debug)]
pub struct MockStats {
    /// Requests received.
    pub requests: AtomicU64,
    /// SSE events written (every `data:` event, `[DONE]` included).
    pub sse_events: AtomicU64,
    /// Requests answered with an injected fault.
    pub faults: AtomicU64,
    /// Requests being served now (a stream counts until its last byte).
    pub in_flight: AtomicU64,
    /// Streams being generated now (queued ones not counted).
    pub streaming: AtomicU64,
    /// Requests refused by the per-token rate limit.
    pub rate_limited: AtomicU64,
    /// Content tokens streamed.
    pub generated_tokens: AtomicU64,
    /// Database pool connections in use now.
    pub db_in_use: AtomicU64,
    /// JSON steps waiting for a pool connection now.
    pub db_waiting: AtomicU64,
    /// Streams preempted for want of KV-cache room (`--kv-slots`).
    pub preemptions: AtomicU64,
    /// Streams whose client left before the last token.
    pub disconnects: AtomicU64,
    /// Server-side TTFT in microseconds: handler entry (queueing included) to
    /// the first content chunk handed to the connection.
    pub ttft_us: Mutex<Histogram<u64>>,
    /// Server-side TTFT per `X-Request-Id`, for pairing with the client's log
    /// (bounded; the oldest entries are kept).
    pub timings: Mutex<Vec<(String, u64)>>,
    pub(super) started: Instant,
    /// Prompt tokens looked up in the prefix cache (`--prefix-cache`).
    pub prefix_queries: AtomicU64,
    /// Of those, tokens found there.
    pub prefix_hits: AtomicU64,
    /// Streams being generated now per bearer token (its hash).
    pub per_token: Mutex<std::collections::HashMap<u64, u64>>,
    /// The most streams one bearer token had at once.
    pub per_token_max: AtomicU64,
}

/// Counts one stream of a bearer token while it lives.
#[derive(Debug)]
pub(super) struct TokenStream(Arc<MockStats>, u64);

impl TokenStream {
    pub(super) fn new(stats: &Arc<MockStats>, owner: u64) -> Self {
        if let Ok(mut m) = stats.per_token.lock() {
            let n = m.entry(owner).or_insert(0);
            *n += 1;
            stats.per_token_max.fetch_max(*n, Ordering::Relaxed);
        }
        TokenStream(stats.clone(), owner)
    }
}

impl Drop for TokenStream {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0.per_token.lock() {
            if let Some(n) = m.get_mut(&self.1) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.1);
                }
            }
        }
    }
}

/// Counts one unit of a gauge while it lives.
#[derive(Debug)]
pub(super) struct Held(Arc<MockStats>, fn(&MockStats) -> &AtomicU64);

impl Held {
    pub(super) fn new(stats: &Arc<MockStats>, gauge: fn(&MockStats) -> &AtomicU64) -> Self {
        gauge(stats).fetch_add(1, Ordering::Relaxed);
        Held(stats.clone(), gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::Relaxed);
    }
}

/// Most per-request timings kept.
const MAX_TIMINGS: usize = 1_000_000;

impl MockStats {
    pub(super) fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            sse_events: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            streaming: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            db_in_use: AtomicU64::new(0),
            db_waiting: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            prefix_queries: AtomicU64::new(0),
            prefix_hits: AtomicU64::new(0),
            per_token: Mutex::default(),
            per_token_max: AtomicU64::new(0),
            #[allow(clippy::expect_used, reason = "constant, valid bounds")]
            ttft_us: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            ),
            timings: Mutex::new(Vec::new()),
            started: Instant::now(),
        }
    }

    /// A JSON snapshot, as `GET /_mock/stats` returns it.
    pub fn snapshot(&self) -> serde_json::Value {
        let h = self.ttft_us.lock().map(|h| h.clone()).ok();
        let q = |p: f64| {
            h.as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(p) as f64 / 1000.0)
        };
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "requests": self.requests.load(Ordering::Relaxed),
            "sse_events": self.sse_events.load(Ordering::Relaxed),
            "faults": self.faults.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "streaming": self.streaming.load(Ordering::Relaxed),
            "rate_limited": self.rate_limited.load(Ordering::Relaxed),
            "ttft_ms": {
                "count": h.as_ref().map_or(0, Histogram::len),
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
            },
        })
    }

    pub(super) fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.sse_events.store(0, Ordering::Relaxed);
        self.faults.store(0, Ordering::Relaxed);
        self.rate_limited.store(0, Ordering::Relaxed);
        if let Ok(mut h) = self.ttft_us.lock() {
            h.reset();
        }
        if let Ok(mut t) = self.timings.lock() {
            t.clear();
        }
    }

    /// Record the server-side TTFT of one request.
    pub(crate) fn record_ttft(&self, us: u64, request_id: Option<&str>) {
        if let Ok(mut h) = self.ttft_us.lock() {
            let _ = h.record(us.max(1));
        }
        if let Some(id) = request_id {
            if let Ok(mut t) = self.timings.lock() {
                if t.len() < MAX_TIMINGS {
                    t.push((id.to_string(), us));
                }
            }
        }
    }
}
