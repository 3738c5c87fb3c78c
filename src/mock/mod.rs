//! The mock Dreaminkflora + OpenAI-compatible server.
//!
//! It serves the API contract that `scenarios/novel.toml` assumes, OpenAI
//! `/v1/chat/completions` and Anthropic `/v1/messages`, streaming Chinese
//! prose as chat-completion chunks (or Anthropic's named events)
//! with a configurable time to first token, inter-token latency, output length,
//! jitter and slowdown. A concurrency limit queues requests beyond it, so a
//! saturation knee exists; faults are injected at configured rates. It times
//! its own first content token per request (`GET /_mock/stats`), which is what
//! the client's TTFT is checked against.

#![allow(
    clippy::result_large_err,
    reason = "handlers return a ready response on the error path; boxing it buys nothing"
)]

mod config;
mod faults;
mod metrics;
mod prose;
mod stream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use config::{parse_drift, Burst, MockConfig, MockStats};
pub use faults::{Fault, FaultRates};

struct App {
    cfg: MockConfig,
    /// Per-token buckets of the rate limit: tokens left, last refill.
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, Instant)>>,
    stats: Arc<MockStats>,
    limit: Option<Arc<Semaphore>>,
    /// The database pool behind the JSON steps.
    db: Option<Arc<Semaphore>>,
    next_book: AtomicU64,
    /// Per book (id − 1): its owner's token hash and the steps it saw.
    books: std::sync::Mutex<Vec<BookLog>>,
    next_request: AtomicU64,
    prose: prose::Prose,
    /// The prefix cache's blocks (chained hashes), `--prefix-cache`.
    prefix_blocks: std::sync::Mutex<std::collections::HashSet<u64>>,
    shutdown: CancellationToken,
}

/// A book's owner (a hash of the token that created it) and the steps
/// asked of it, in order.
#[derive(Debug, Clone)]
struct BookLog {
    owner: u64,
    steps: Vec<&'static str>,
}

/// Books logged at most (the first ones; later books are owned but not logged).
const BOOK_LOG: usize = 100_000;

/// A token's hash: books are owned by it, never by the token itself.
fn owner_of(token: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut h);
    h.finish()
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

    /// `http://addr` as a checked target.
    pub fn target(&self) -> crate::target::Target {
        let source = crate::target::Source { name: "--target" };
        // A socket address in an http URL is always a valid base.
        crate::target::Target::parse(&self.url(), source).expect("a socket address URL")
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
        db: cfg.db_pool.map(|n| Arc::new(Semaphore::new(n.max(1)))),
        cfg,
        buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
        stats: stats.clone(),
        next_book: AtomicU64::new(1),
        books: std::sync::Mutex::new(Vec::new()),
        next_request: AtomicU64::new(1),
        prefix_blocks: std::sync::Mutex::default(),
        prose: prose::Prose::new(),
        shutdown,
    });
    let r = Router::new()
        .route("/api/v1/books", post(create_book))
        .route("/api/v1/books/{id}/outline", post(outline))
        .route("/api/v1/books/{id}/summary", post(summary))
        .route("/api/v1/books/{id}/chapters/{n}/{step}", post(chapter_step))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models))
        .route("/metrics", get(get_metrics))
        .route("/_mock/stats", get(get_stats))
        .route("/_mock/books", get(get_books))
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
    /// Counts the request in flight until it is answered in full.
    _in_flight: config::Held,
    t0: Instant,
    request_id: Option<String>,
    rng: SmallRng,
    fault: Option<Fault>,
    id: u64,
    /// Added to the TTFT: the prompt's prefill (`--prefill-us-per-char`).
    prefill: Duration,
    /// The bearer token's hash: who owns the books it creates.
    owner: u64,
    /// Characters of a generation request's body: its usage reports two
    /// prompt tokens for every three (about what a tokenizer makes of Chinese).
    prompt_chars: u32,
    /// A resumed stream starts after this many tokens (`Last-Event-ID`
    /// with `--event-ids`, unless `--resume-replays`).
    resume_from: u32,
}

impl RequestCtx {
    /// What the usage reports as prompt tokens.
    fn prompt_tokens(&self) -> u32 {
        if self.prompt_chars == 0 {
            32
        } else {
            (self.prompt_chars.saturating_mul(2)).div_ceil(3)
        }
    }
}

/// Characters a prefix-cache block holds.
const PREFIX_BLOCK: usize = 64;
/// Blocks the prefix cache keeps (emptied when full).
const PREFIX_BLOCKS: usize = 200_000;

impl App {
    /// Characters of `body` the prefill must compute: all of them, or with
    /// `--prefix-cache` those after the leading whole blocks seen before
    /// (each block's hash chains the ones before it, as vLLM's do). Counts
    /// queries and hits in prompt tokens (two for every three characters).
    fn uncached_chars(&self, body: &Bytes, chars: u32) -> u32 {
        if !self.cfg.prefix_cache {
            return chars;
        }
        use std::hash::{Hash, Hasher};
        let text = String::from_utf8_lossy(body);
        let all: Vec<char> = text.chars().collect();
        let Ok(mut seen) = self.prefix_blocks.lock() else {
            return chars;
        };
        if seen.len() > PREFIX_BLOCKS {
            seen.clear();
        }
        let (mut chain, mut cached, mut hit) = (0u64, 0usize, true);
        for block in all.chunks_exact(PREFIX_BLOCK) {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            chain.hash(&mut h);
            block.hash(&mut h);
            chain = h.finish();
            hit = !seen.insert(chain) && hit;
            if hit {
                cached += PREFIX_BLOCK;
            }
        }
        let tokens = |c: usize| (c as u64 * 2).div_ceil(3);
        self.stats
            .prefix_queries
            .fetch_add(tokens(all.len()), Ordering::Relaxed);
        self.stats
            .prefix_hits
            .fetch_add(tokens(cached), Ordering::Relaxed);
        chars.saturating_sub(cached as u32)
    }

    fn admit(&self, headers: &HeaderMap) -> Gate {
        let t0 = Instant::now();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let in_flight = config::Held::new(&self.stats, |s| &s.in_flight);
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        // A bearer token, or Anthropic's `x-api-key`.
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
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
        if let (Some(rate), Some(t)) = (self.cfg.rate_limit, token) {
            if let Some(wait) = self.take_from_bucket(t, rate) {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                let mut resp = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests for this token",
                );
                if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return Gate::Reject(resp);
            }
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
            _in_flight: in_flight,
            t0,
            request_id,
            rng,
            fault,
            id,
            prefill: Duration::ZERO,
            owner: token.map_or(0, owner_of),
            prompt_chars: 0,
            resume_from: if self.cfg.event_ids && !self.cfg.resume_replays {
                headers
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .unwrap_or(0)
            } else {
                0
            },
        })
    }

    /// Take one request from a token's bucket (capacity: one second's
    /// worth); `Some(seconds to wait)` when it is empty.
    fn take_from_bucket(&self, token: &str, rate: f64) -> Option<u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().ok()?;
        let (left, last) = buckets
            .entry(token.to_string())
            .or_insert((rate.max(1.0), now));
        *left = (*left + now.duration_since(*last).as_secs_f64() * rate).min(rate.max(1.0));
        *last = now;
        if *left >= 1.0 {
            *left -= 1.0;
            None
        } else {
            Some(((1.0 - *left) / rate).ceil().max(1.0) as u64)
        }
    }

    /// The current latency factor of `--drift`.
    fn drift(&self) -> f64 {
        1.0 + self.cfg.drift_per_min * self.stats.started.elapsed().as_secs_f64() / 60.0
    }

    /// An inter-token gap: the base, plus the batching cost of the other
    /// streams being generated.
    fn itl(&self, rng: &mut SmallRng) -> Duration {
        let others = self
            .stats
            .streaming
            .load(Ordering::Relaxed)
            .saturating_sub(1);
        let batch = self.cfg.itl_per_stream.mul_f64(others as f64);
        self.delay(self.cfg.itl + batch, rng)
    }

    /// The time to first token: the base, plus the compute the other
    /// streams being generated take from the prefill.
    fn ttft(&self, rng: &mut SmallRng) -> Duration {
        let others = self
            .stats
            .streaming
            .load(Ordering::Relaxed)
            .saturating_sub(1);
        let busy = self.cfg.ttft_per_stream.mul_f64(others as f64);
        self.delay(self.cfg.ttft + busy, rng)
    }

    fn delay(&self, base: Duration, rng: &mut SmallRng) -> Duration {
        let mut d = base.as_secs_f64() * self.cfg.slowdown * self.drift();
        let j = self.cfg.jitter.as_secs_f64();
        if j > 0.0 {
            d += rng.random_range(-j..=j);
        }
        Duration::from_secs_f64(d.max(0.0))
    }

    /// The book exists and belongs to the token asking (404 otherwise, as
    /// for a book that does not exist); the step is logged against it.
    fn check_book(&self, id: &str, owner: u64, step: &'static str) -> Result<(), Response> {
        let n = id
            .strip_prefix("bk_")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n >= 1 && *n < self.next_book.load(Ordering::Relaxed));
        let owned = n.is_some_and(|n| {
            let Ok(mut books) = self.books.lock() else {
                return false;
            };
            match books.get_mut(usize::try_from(n - 1).unwrap_or(usize::MAX)) {
                Some(b) if b.owner == owner => {
                    b.steps.push(step);
                    true
                }
                Some(_) => false,
                // Past the log: known, ownership not kept.
                None => true,
            }
        });
        if owned {
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

/// Characters of a request body (bytes when it is not UTF-8).
fn chars(body: &Bytes) -> u32 {
    let n = std::str::from_utf8(body).map_or(body.len(), |s| s.chars().count());
    u32::try_from(n).unwrap_or(u32::MAX)
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
    if let Some(db) = &app.db {
        // A database round trip on a pooled connection, waiting for one.
        let waiting = config::Held::new(&app.stats, |s| &s.db_waiting);
        let conn = db.clone().acquire_owned().await.ok();
        drop(waiting);
        let _in_use = config::Held::new(&app.stats, |s| &s.db_in_use);
        tokio::time::sleep(app.cfg.db_time).await;
        drop(conn);
    }
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
    let n = {
        // Numbered and logged under one lock, so ids and log stay aligned.
        let mut books = app
            .books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = app.next_book.fetch_add(1, Ordering::Relaxed);
        if books.len() < BOOK_LOG && books.len() as u64 == n - 1 {
            books.push(BookLog {
                owner: ctx.owner,
                steps: vec!["create_book"],
            });
        }
        n
    };
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
    book_stream(state, headers, &id, "outline", body).await
}

async fn summary(
    state: State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    book_stream(state, headers, &id, "summarize", body).await
}

async fn chapter_step(
    state: State<Arc<App>>,
    headers: HeaderMap,
    Path((id, chapter, step)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    if chapter.parse::<u32>().is_err() {
        return error_response(
            StatusCode::NOT_FOUND,
            "chapter_not_found",
            "chapter must be a number",
        );
    }
    let step = match step.as_str() {
        "draft" => "draft",
        "continue" => "continue",
        "expand" => "expand",
        _ => return error_response(StatusCode::NOT_FOUND, "not_found", "no such step"),
    };
    book_stream(state, headers, &id, step, body).await
}

async fn book_stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    id: &str,
    step: &'static str,
    body: Bytes,
) -> Response {
    let mut ctx = match app.admit(&headers) {
        Gate::Serve(c) => c,
        Gate::Reject(r) => return r,
    };
    ctx.prompt_chars = chars(&body);
    ctx.prefill = app
        .cfg
        .prefill_per_char
        .saturating_mul(app.uncached_chars(&body, ctx.prompt_chars));
    if let Err(r) = app.check_book(id, ctx.owner, step) {
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
        stream::Dialect::OpenAi,
    )
    .await
}

async fn chat_completions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    completion(app, headers, body, stream::Dialect::OpenAi).await
}

/// Anthropic's Messages API: the same answer as named events.
async fn messages(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    completion(app, headers, body, stream::Dialect::Anthropic).await
}

async fn completion(
    app: Arc<App>,
    headers: HeaderMap,
    body: Bytes,
    dialect: stream::Dialect,
) -> Response {
    let mut ctx = match app.admit(&headers) {
        Gate::Serve(c) => c,
        Gate::Reject(r) => return r,
    };
    ctx.prompt_chars = chars(&body);
    ctx.prefill = app
        .cfg
        .prefill_per_char
        .saturating_mul(app.uncached_chars(&body, ctx.prompt_chars));
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
    respond(app, ctx, n, streamed, &model, dialect).await
}

async fn respond(
    app: Arc<App>,
    mut ctx: RequestCtx,
    tokens: u32,
    streamed: bool,
    model: &str,
    dialect: stream::Dialect,
) -> Response {
    let permit = match &app.limit {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    };
    if streamed {
        let s = stream::ChunkStream::new(app, ctx, tokens, model.to_string(), permit, dialect);
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
    let mut total = app.ttft(&mut ctx.rng) + ctx.prefill;
    for _ in 1..tokens {
        total += app.itl(&mut ctx.rng);
    }
    tokio::time::sleep(total).await;
    drop(permit);
    let text: String = (0..tokens as usize)
        .map(|i| app.prose.token(ctx.id as usize + i))
        .collect();
    if dialect == stream::Dialect::Anthropic {
        return axum::Json(json!({
            "id": format!("msg_{}", ctx.id),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": ctx.prompt_tokens(), "output_tokens": tokens},
        }))
        .into_response();
    }
    axum::Json(json!({
        "id": format!("chatcmpl-{}", ctx.id),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": ctx.prompt_tokens(), "completion_tokens": tokens, "total_tokens": ctx.prompt_tokens() + tokens},
    }))
    .into_response()
}

async fn models() -> Response {
    axum::Json(json!({"object": "list", "data": [{"id": "mock-novelist", "object": "model"}]}))
        .into_response()
}

async fn get_metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(
            &app.stats,
            app.cfg.kv_slots.or(app.cfg.max_concurrency),
            app.cfg.db_pool,
            "mock-novelist",
        ),
    )
        .into_response()
}

/// `[{"id": "bk_1", "owner": "<token hash>", "steps": [...]}, …]`: who owns
/// each book and the steps asked of it, in order (tests check isolation).
async fn get_books(State(app): State<Arc<App>>) -> Response {
    let books: Vec<serde_json::Value> = app.books.lock().map_or_else(
        |_| Vec::new(),
        |b| {
            b.iter()
                .enumerate()
                .map(|(i, l)| json!({"id": format!("bk_{}", i + 1), "owner": format!("{:016x}", l.owner), "steps": l.steps}))
                .collect()
        },
    );
    axum::Json(books).into_response()
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
