//! The mock Dreaminkflora + OpenAI-compatible server.
//!
//! It serves the API contract that `scenarios/novel.toml` assumes and OpenAI
//! `/v1/chat/completions`, streaming Chinese prose as chat-completion chunks
//! with a configurable time to first token, inter-token latency, output length,
//! jitter and slowdown. A concurrency limit queues requests beyond it, so a
//! saturation knee exists; faults are injected at configured rates. It times
//! its own first content token per request (`GET /_mock/stats`), which is what
//! the client's TTFT is checked against.

#![allow(
    clippy::result_large_err,
    reason = "handlers return a ready response on the error path; boxing it buys nothing"
)]

mod faults;
mod prose;
mod stream;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use faults::{Fault, FaultRates};

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
        }
    }
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
    /// Server-side TTFT in microseconds: handler entry (queueing included) to
    /// the first content chunk handed to the connection.
    pub ttft_us: Mutex<Histogram<u64>>,
    /// Server-side TTFT per `X-Request-Id`, for pairing with the client's log
    /// (bounded; the oldest entries are kept).
    pub timings: Mutex<Vec<(String, u64)>>,
    started: Instant,
}

/// Most per-request timings kept.
const MAX_TIMINGS: usize = 1_000_000;

impl MockStats {
    fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            sse_events: AtomicU64::new(0),
            faults: AtomicU64::new(0),
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
            "ttft_ms": {
                "count": h.as_ref().map_or(0, Histogram::len),
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
            },
        })
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.sse_events.store(0, Ordering::Relaxed);
        self.faults.store(0, Ordering::Relaxed);
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

struct App {
    cfg: MockConfig,
    stats: Arc<MockStats>,
    limit: Option<Arc<Semaphore>>,
    next_book: AtomicU64,
    next_request: AtomicU64,
    prose: prose::Prose,
    shutdown: CancellationToken,
}

/// A running mock server.
#[derive(Debug)]
pub struct MockHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<MockStats>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl MockHandle {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop serving and wait for the server task.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Bind and serve in a background task.
pub async fn start(cfg: MockConfig, addr: SocketAddr) -> std::io::Result<MockHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let (router, stats) = router(cfg, shutdown.clone());
    let token = shutdown.clone();
    // Without TCP_NODELAY, Nagle's algorithm holds each small SSE write until
    // the client's delayed ACK: tokens would arrive in 40 ms batches.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
    });
    Ok(MockHandle {
        addr,
        stats,
        shutdown,
        task,
    })
}

/// The mock's routes.
pub fn router(cfg: MockConfig, shutdown: CancellationToken) -> (Router, Arc<MockStats>) {
    let stats = Arc::new(MockStats::new());
    let app = Arc::new(App {
        limit: cfg
            .max_concurrency
            .map(|n| Arc::new(Semaphore::new(n.max(1)))),
        cfg,
        stats: stats.clone(),
        next_book: AtomicU64::new(1),
        next_request: AtomicU64::new(1),
        prose: prose::Prose::new(),
        shutdown,
    });
    let r = Router::new()
        .route("/api/v1/books", post(create_book))
        .route("/api/v1/books/{id}/outline", post(outline))
        .route("/api/v1/books/{id}/summary", post(summary))
        .route("/api/v1/books/{id}/chapters/{n}/draft", post(chapter_step))
        .route(
            "/api/v1/books/{id}/chapters/{n}/continue",
            post(chapter_step),
        )
        .route("/api/v1/books/{id}/chapters/{n}/expand", post(chapter_step))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/_mock/stats", get(get_stats))
        .route("/_mock/reset", post(reset_stats))
        .route("/_mock/timings", get(get_timings))
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .with_state(app);
    (r, stats)
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// Everything a request must pass before it is served: auth, then an
/// injected fault draw.
enum Gate {
    Serve(RequestCtx),
    Reject(Response),
}

struct RequestCtx {
    t0: Instant,
    request_id: Option<String>,
    rng: SmallRng,
    fault: Option<Fault>,
    id: u64,
}

impl App {
    fn admit(&self, headers: &HeaderMap) -> Gate {
        let t0 = Instant::now();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let authorized = match (&self.cfg.tokens, token) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(set), Some(t)) => set.contains(t),
        };
        if !authorized {
            return Gate::Reject(error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or unknown bearer token",
            ));
        }
        if let Some(b) = self.cfg.burst {
            let phase = self.stats.started.elapsed().as_nanos() % b.every.as_nanos().max(1);
            if phase < b.length.as_nanos() {
                self.stats.faults.fetch_add(1, Ordering::Relaxed);
                let status =
                    StatusCode::from_u16(b.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return Gate::Reject(error_response(status, "burst", "injected error burst"));
            }
        }
        let mut rng =
            SmallRng::seed_from_u64(self.cfg.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let fault = self.cfg.faults.draw(&mut rng);
        if let Some(f) = fault {
            self.stats.faults.fetch_add(1, Ordering::Relaxed);
            if let Some(status) = f.status() {
                let mut resp = error_response(status, f.code(), "injected fault");
                if f == Fault::RateLimited {
                    if let Ok(v) = HeaderValue::from_str(&self.cfg.retry_after_s.to_string()) {
                        resp.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                return Gate::Reject(resp);
            }
        }
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128)
            .map(str::to_owned);
        Gate::Serve(RequestCtx {
            t0,
            request_id,
            rng,
            fault,
            id,
        })
    }

    fn delay(&self, base: Duration, rng: &mut SmallRng) -> Duration {
        let mut d = base.as_secs_f64() * self.cfg.slowdown;
        let j = self.cfg.jitter.as_secs_f64();
        if j > 0.0 {
            d += rng.random_range(-j..=j);
        }
        Duration::from_secs_f64(d.max(0.0))
    }

    fn check_book(&self, id: &str) -> Result<(), Response> {
        let known = id
            .strip_prefix("bk_")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 1 && n < self.next_book.load(Ordering::Relaxed));
        if known {
            Ok(())
        } else {
            Err(error_response(
                StatusCode::NOT_FOUND,
                "book_not_found",
                "no such book",
            ))
        }
    }
}

fn parse_body(body: &Bytes) -> Result<serde_json::Map<String, serde_json::Value>, Response> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "the body must be a JSON object",
        )),
    }
}

async fn create_book(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let ctx = match app.admit(&headers) {
        Gate::Serve(c) => c,
        Gate::Reject(r) => return r,
    };
    let fields = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(title) = fields.get("title").and_then(|v| v.as_str()) else {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "`title` is required",
        );
    };
    let mut rng = ctx.rng;
    let _permit = match &app.limit {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    };
    tokio::time::sleep(app.delay(app.cfg.ttft / 4, &mut rng)).await;
    if ctx.fault == Some(Fault::BadJson) {
        return (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"id\": \"bk_",
        )
            .into_response();
    }
    let n = app.next_book.fetch_add(1, Ordering::Relaxed);
    let book = json!({
        "id": format!("bk_{n}"),
        "title": title,
        "genre": fields.get("genre"),
        "premise": fields.get("premise"),
        "chapters": 0,
        "created_at": chrono::Utc::now().to_rfc3339(),
    });
    (StatusCode::CREATED, axum::Json(book)).into_response()
}

async fn outline(
    state: State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    book_stream(state, headers, &id, body).await
}

async fn summary(
    state: State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    book_stream(state, headers, &id, body).await
}

async fn chapter_step(
    state: State<Arc<App>>,
    headers: HeaderMap,
    Path((id, chapter)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if chapter.parse::<u32>().is_err() {
        return error_response(
            StatusCode::NOT_FOUND,
            "chapter_not_found",
            "chapter must be a number",
        );
    }
    book_stream(state, headers, &id, body).await
}

async fn book_stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    id: &str,
    body: Bytes,
) -> Response {
    let ctx = match app.admit(&headers) {
        Gate::Serve(c) => c,
        Gate::Reject(r) => return r,
    };
    if let Err(r) = app.check_book(id) {
        return r;
    }
    let fields = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let streamed = fields
        .get("stream")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    respond(
        app.clone(),
        ctx,
        app.cfg.output_tokens,
        streamed,
        "dreaminkflora-writer",
    )
    .await
}

async fn chat_completions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match app.admit(&headers) {
        Gate::Serve(c) => c,
        Gate::Reject(r) => return r,
    };
    let fields = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !fields.get("messages").is_some_and(|m| m.is_array()) {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "`messages` must be an array",
        );
    }
    let n = fields
        .get("max_tokens")
        .or_else(|| fields.get("max_completion_tokens"))
        .and_then(|v| v.as_u64())
        .map_or(app.cfg.output_tokens, |m| {
            m.min(u64::from(app.cfg.output_tokens)) as u32
        });
    let streamed = fields
        .get("stream")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let model = fields
        .get("model")
        .and_then(|v| v.as_str())
        .unwrap_or("mock-novelist")
        .to_string();
    respond(app, ctx, n, streamed, &model).await
}

async fn respond(
    app: Arc<App>,
    mut ctx: RequestCtx,
    tokens: u32,
    streamed: bool,
    model: &str,
) -> Response {
    let permit = match &app.limit {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    };
    if streamed {
        let s = stream::ChunkStream::new(app, ctx, tokens, model.to_string(), permit);
        let mut resp = Body::from_stream(s.into_stream()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return resp;
    }
    // Not streamed: the whole answer after the whole generation time.
    let mut total = app.delay(app.cfg.ttft, &mut ctx.rng);
    for _ in 1..tokens {
        total += app.delay(app.cfg.itl, &mut ctx.rng);
    }
    tokio::time::sleep(total).await;
    drop(permit);
    let text: String = (0..tokens as usize)
        .map(|i| app.prose.token(ctx.id as usize + i))
        .collect();
    axum::Json(json!({
        "id": format!("chatcmpl-{}", ctx.id),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 32, "completion_tokens": tokens, "total_tokens": 32 + tokens},
    }))
    .into_response()
}

async fn models() -> Response {
    axum::Json(json!({"object": "list", "data": [{"id": "mock-novelist", "object": "model"}]}))
        .into_response()
}

async fn get_stats(State(app): State<Arc<App>>) -> Response {
    axum::Json(app.stats.snapshot()).into_response()
}

/// `{"<x-request-id>": server TTFT in ms, …}`.
async fn get_timings(State(app): State<Arc<App>>) -> Response {
    let map: serde_json::Map<String, serde_json::Value> = app
        .stats
        .timings
        .lock()
        .map(|t| {
            t.iter()
                .map(|(id, us)| (id.clone(), json!(*us as f64 / 1000.0)))
                .collect()
        })
        .unwrap_or_default();
    axum::Json(serde_json::Value::Object(map)).into_response()
}

async fn reset_stats(State(app): State<Arc<App>>) -> Response {
    app.stats.reset();
    StatusCode::NO_CONTENT.into_response()
}
