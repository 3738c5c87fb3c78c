//! The load engine: virtual users, requests, stream parsing, recording.
//!
//! A load shape is a schedule of virtual users over time; today the shape is
//! a fixed number of users for a duration or a request count. Each user is
//! one task with its own recorder; everything is merged once at the end. Two
//! cancellation tokens carry the stop: `stop` (deadline, request count, first
//! Ctrl-C) ends the starting of new requests and lets in-flight ones finish;
//! `hard_stop` (grace over, second Ctrl-C) abandons them.

pub mod duet;
pub mod limits;
pub mod live;
pub mod monitor;
pub mod push;
mod recorder;
mod replay;
pub mod request;
mod run;
pub mod runaway;
pub mod sample;
pub mod schedule;
pub mod scrape;
pub mod selfcheck;
pub mod spill;
mod vu;
pub mod wire;

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::UserError;
use crate::scenario::{LoadSpec, Scenario};
use crate::target::Target;
use crate::tokens::UserToken;
pub use monitor::{ArrivalStats, LoadTrace, StageLoad, WindowLoad};
pub use recorder::Recorder;
pub use sample::{ErrorClass, IterationSample, Sample};
pub use selfcheck::SelfCheck;

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// Where requests go.
    pub target: Target,
    /// The reference deployment of a duet (`--baseline-target`).
    pub reference: Option<Target>,
    /// Tokens, one per user, round-robin.
    pub tokens: Arc<Vec<UserToken>>,
    /// Load settings after command-line overrides.
    pub load: LoadSpec,
    /// Draw a progress line on stderr.
    pub progress: bool,
    /// Longest wait for in-flight requests after sending stops.
    pub drain: Duration,
    /// Notes for the self-check (for example: the mock runs in this process).
    pub notes: Vec<String>,
    /// Extra trusted root certificate (PEM), from `--ca-cert`.
    pub ca_cert: Option<Vec<u8>>,
    /// Serve the live figures (Prometheus text) here during the run.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How long the live endpoint keeps serving the final figures after the
    /// run ([`RunOutput::endpoint`]); zero stops it with the run.
    pub metrics_linger: Duration,
    /// Push the live figures here with the remote-write protocol.
    pub metrics_push: Option<push::PushTarget>,
    /// An HTTP client to use instead of a new one: runs made one after the
    /// other (capacity probes) keep their warm connections.
    pub client: Option<wire::Client>,
    /// A shard's agreed start on the wall clock: the run waits for it, and
    /// one that starts late joins at its place in the schedule.
    pub start_at: Option<std::time::SystemTime>,
    /// Prometheus endpoints of the server to scrape during the run.
    pub server_metrics: Vec<scrape::ScrapeTarget>,
}

impl Plan {
    /// A plan of `scenario` against `target` with `tokens` and `load`, and
    /// everything else at its default: no reference, no progress line, a
    /// 10 s drain, no extra certificate, live endpoint or scrapes, a client
    /// of its own, starting now.
    pub fn new(
        scenario: Arc<Scenario>,
        target: Target,
        tokens: Arc<Vec<UserToken>>,
        load: LoadSpec,
    ) -> Plan {
        Plan {
            scenario,
            target,
            reference: None,
            tokens,
            load,
            progress: false,
            drain: Duration::from_secs(10),
            notes: Vec::new(),
            ca_cert: None,
            metrics_listen: None,
            metrics_linger: Duration::ZERO,
            metrics_push: None,
            client: None,
            start_at: None,
            server_metrics: Vec::new(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// Ran its whole duration or request count.
    Complete,
    /// Stopped early by a signal; the result holds what was measured.
    Partial(String),
    /// Stopped by the circuit breaker: the target was failing.
    Aborted(String),
}

/// The raw outcome of a run, before summaries.
#[derive(Debug)]
pub struct RunOutput {
    /// Merged recordings.
    pub recorder: Recorder,
    /// Wall-clock start.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Run length.
    pub elapsed: Duration,
    /// Complete or partial.
    pub status: RunStatus,
    /// The generator's health.
    pub self_check: SelfCheck,
    /// Time this output was actually measuring, when it is not one stretch
    /// (a duet side's slots): rates are divided by it, not by the span.
    pub active: Option<Duration>,
    /// The load over time, window by window.
    pub trace: LoadTrace,
    /// How late after the agreed start a shard began (zero otherwise).
    pub late: Duration,
    /// A shard's clock minus the target's (from its `Date` header), ms.
    pub clock_offset_ms: Option<f64>,
    /// What the server's metrics endpoints gave.
    pub server: Vec<scrape::Scraped>,
    /// The live endpoint, still serving the final figures, when the plan
    /// asked it to linger.
    pub endpoint: Option<live::Lingering>,
    /// The salt of the requests' trace ids (`None`: a duet side or a merge,
    /// whose records come from several runs).
    pub trace_salt: Option<u64>,
}

struct Shared {
    scenario: Arc<Scenario>,
    client: wire::Client,
    /// Every request URL is joined to it.
    target: Target,
    /// This run's trace salt ([`sample::trace_id`]).
    trace_salt: u64,
    t0: Instant,
    warmup: Duration,
    think_time: crate::scenario::Think,
    seed: u64,
    /// The shard this process runs, if one.
    shard: Option<crate::scenario::Shard>,
    /// How late the run began after its agreed start: the plan's times
    /// before it are past.
    late: Duration,
    /// What a stopped user finishes first.
    finish: crate::scenario::Finish,
    /// Grace for in-flight requests of a retired user.
    drain: Duration,
    stop: CancellationToken,
    hard_stop: CancellationToken,
    /// A signal arrived: nothing new starts, whatever `finish` says.
    signalled: CancellationToken,
    requests_left: Option<AtomicU64>,
    /// Open loop: while the target asks to wait (`Retry-After`) or keeps
    /// failing, arrivals are held back instead of sent.
    open_hold: vu::OpenHold,
    live: live::Live,
    /// Finished requests and iterations, on disk.
    spill: Arc<spill::Spill>,
    /// Pooled gaps between content chunks, per step.
    itl: Vec<std::sync::Mutex<crate::stats::LatencyHist>>,
    /// Prefixes the run has sent (their keys): a prompt opening with one
    /// of them is a repeat.
    prefixes: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// The most streams one writer had in flight at once (`books_parallel`).
    writer_streams_max: AtomicU64,
}

impl Shared {
    /// Move a user's buffered gaps into the shared histogram of a step.
    fn flush_gaps(&self, step: usize, gaps: &mut Vec<u32>) {
        if gaps.is_empty() {
            return;
        }
        if let Some(Ok(mut h)) = self.itl.get(step).map(|m| m.lock()) {
            for g in gaps.iter() {
                h.record(Duration::from_micros(u64::from(*g)));
            }
        }
        gaps.clear();
    }

    /// Whether prefix `key` is sent for the first time in the run.
    fn first_use_of_prefix(&self, key: u64) -> bool {
        // Past a million prefixes, the oldest are not remembered.
        self.prefixes.lock().is_ok_and(|mut seen| {
            if seen.len() >= 1_000_000 {
                seen.clear();
            }
            seen.insert(key)
        })
    }

    /// Take one request from the request budget; false when it is spent.
    fn claim_request(&self) -> bool {
        match &self.requests_left {
            None => true,
            Some(left) => {
                let ok = left
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok();
                if !ok {
                    self.stop.cancel();
                }
                ok
            }
        }
    }
}

/// Build the HTTP client shared by all users.
pub fn client(
    scenario: &Scenario,
    concurrency: u32,
    ca_cert: Option<&[u8]>,
) -> Result<reqwest::Client, UserError> {
    // reqwest is built without a default TLS provider; install ring once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = ca_cert {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| UserError::Environment {
            message: format!("the extra root certificate is not PEM: {e}"),
            hint: None,
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .connect_timeout(scenario.timeouts.connect)
        .pool_max_idle_per_host(concurrency as usize)
        // Redirects are not followed: a configured auth header must never
        // reach another origin, and a redirected load test measures the
        // wrong server. A 3xx counts as the `redirect` error class.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .user_agent(concat!("flora-gate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| UserError::Environment {
            message: format!("cannot build the HTTP client: {e}"),
            hint: None,
        })
}

/// The client the users' requests go through: HTTP/1.1 read in each user's
/// task, the general client for HTTP/2 origins and other proxies.
pub fn load_client(
    scenario: &Scenario,
    concurrency: u32,
    ca_cert: Option<&[u8]>,
) -> Result<wire::Client, UserError> {
    let general = client(scenario, concurrency, ca_cert)?;
    wire::Client::new(general, scenario.timeouts.connect, concurrency, ca_cert)
}

/// Check that something listens at the target before starting users.
pub async fn preflight(target: &Target, timeout: Duration) -> Result<(), UserError> {
    let (host, port) = (target.host(), target.port());
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(UserError::Environment {
            message: format!("cannot connect to the target {host}:{port}: {e}"),
            hint: Some("start the server, or point `--target` at one that is running".into()),
        }),
        Err(_) => Err(UserError::Environment {
            message: format!("connecting to the target {host}:{port} timed out after {timeout:?}"),
            hint: Some("check `--target` and the network path to it".into()),
        }),
    }
}

impl Plan {
    /// Refuse a target or reference outside the scenario's `allow_hosts`:
    /// the one check, made where a run or a duet begins, before any request,
    /// whatever built the plan.
    fn check_destinations(&self) -> Result<(), UserError> {
        let sc = &self.scenario;
        self.target
            .check_allowed(&sc.safety.allow_hosts, "the target", &sc.origin)?;
        match &self.reference {
            Some(r) => r.check_allowed(
                &sc.safety.allow_hosts,
                "the reference (`--baseline-target`)",
                &sc.origin,
            ),
            None => Ok(()),
        }
    }
}

/// Watches the error share over a sliding window and trips the breaker.
async fn breaker(
    shared: Arc<Shared>,
    limit: f64,
    window: Duration,
    min_requests: u64,
    tripped: Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut history: std::collections::VecDeque<(Instant, u64, u64)> =
        std::collections::VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let req = shared.live.requests.load(Ordering::Relaxed);
        let err = shared.live.errors.load(Ordering::Relaxed);
        history.push_back((now, req, err));
        while history
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > window)
        {
            history.pop_front();
        }
        let Some(&(_, r0, e0)) = history.front() else {
            continue;
        };
        let (dr, de) = (req - r0, err - e0);
        if dr >= min_requests && de as f64 / dr as f64 >= limit {
            let reason = format!(
                "circuit breaker: {de} of the last {dr} requests failed ({:.0}%) within {}, over the {:.0}% limit",
                de as f64 * 100.0 / dr as f64,
                humantime::format_duration(window),
                limit * 100.0
            );
            eprintln!("\n{reason}; stopping");
            if let Ok(mut t) = tripped.lock() {
                *t = Some(reason);
            }
            shared.stop.cancel();
            shared.hard_stop.cancel();
            return;
        }
    }
}

/// Stops the run at the first failed write of its records: a run whose
/// requests cannot be kept must not go on loading the target.
async fn watch_recording(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if let Some(e) = shared.spill.failure() {
            crate::output::err_line(&format!(
                "\nerror: cannot record the run's requests in {} ({e}); stopping: what was recorded is kept",
                std::env::temp_dir().display()
            ));
            shared.stop.cancel();
            shared.hard_stop.cancel();
            return;
        }
    }
}

/// Run the load test. `signals` is cancelled on the first Ctrl-C/SIGTERM and
/// `kill` on the second.
pub async fn run(
    plan: Plan,
    signals: CancellationToken,
    kill: CancellationToken,
) -> Result<RunOutput, UserError> {
    plan.check_destinations()?;
    preflight(&plan.target, plan.scenario.timeouts.connect).await?;
    let offset = match plan.start_at {
        Some(_) => clock_offset(&plan).await,
        None => None,
    };
    let mut out = run_checked(plan, signals, kill).await?;
    out.clock_offset_ms = offset;
    Ok(out)
}

/// This machine's clock minus the target's, from the `Date` header of one
/// request to the base URL (± 0.5 s: the header has whole seconds), taken
/// at the middle of the exchange. `None` when the target sends no date.
async fn clock_offset(plan: &Plan) -> Option<f64> {
    let client = client(&plan.scenario, 1, plan.ca_cert.as_deref()).ok()?;
    let before = std::time::SystemTime::now();
    let sent = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(plan.target.url().clone()).send(),
    );
    let response = sent.await.ok()?.ok()?;
    let after = std::time::SystemTime::now();
    let date = response
        .headers()
        .get(reqwest::header::DATE)?
        .to_str()
        .ok()?;
    // The header says whole seconds: its middle is the best guess (± 0.5 s).
    let theirs =
        chrono::DateTime::parse_from_rfc2822(date).ok()? + chrono::Duration::milliseconds(500);
    let mid = before + after.duration_since(before).unwrap_or_default() / 2;
    let ours = chrono::DateTime::<chrono::Utc>::from(mid);
    Some((ours - theirs.with_timezone(&chrono::Utc)).num_milliseconds() as f64)
}

/// Wait for the agreed start; how late the run is when it is past.
async fn wait_for_start(
    at: std::time::SystemTime,
    length: Option<Duration>,
    signals: &CancellationToken,
) -> Result<Duration, UserError> {
    stale_start(at, std::time::SystemTime::now(), length)?;
    match at.duration_since(std::time::SystemTime::now()) {
        Ok(wait) => {
            eprintln!(
                "waiting {} for the agreed start",
                humantime::format_duration(Duration::from_secs(wait.as_secs()))
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => Ok(Duration::ZERO),
                () = signals.cancelled() => Err(UserError::Environment {
                    message: "interrupted by a signal before the agreed start; nothing was sent".into(),
                    hint: None,
                }),
            }
        }
        Err(past) => Ok(past.duration()),
    }
}

/// Refuse a start that passed longer ago than the plan lasts (or than the
/// longest run, for a plan without a length): nothing of it is left to
/// join, and a forged or stale plan must not send.
fn stale_start(
    at: std::time::SystemTime,
    now: std::time::SystemTime,
    length: Option<Duration>,
) -> Result<(), UserError> {
    let limit = length.unwrap_or(crate::scenario::caps::MAX_DURATION);
    match now.duration_since(at) {
        Ok(past) if past >= limit => Err(UserError::Environment {
            message: format!(
                "the plan's start was {} ago, and the plan lasts {}: nothing of it is left to run",
                humantime::format_duration(Duration::from_secs(past.as_secs())),
                humantime::format_duration(limit)
            ),
            hint: Some(
                "make a new plan (`flora-gate plan --start-in 2m …`) and start every shard before its start".into(),
            ),
        }),
        _ => Ok(()),
    }
}

use run::run_checked;

async fn progress_line(shared: Arc<Shared>, load: LoadSpec) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut last_tokens, mut last_requests) = (0, 0);
    let live = &shared.live;
    loop {
        tick.tick().await;
        let t = shared.t0.elapsed();
        let total = load.duration.map_or_else(
            || format!("{} requests", load.requests.unwrap_or(0)),
            |d| format!("{}s", d.as_secs()),
        );
        let phase = match &load.shape {
            _ if t < load.warmup => " warm-up".to_string(),
            Some(s) => {
                let i = live.stage.load(Ordering::Relaxed) as usize;
                s.stages
                    .get(i.saturating_sub(1))
                    .map(|st| format!(" {}", st.label(i.saturating_sub(1))))
                    .unwrap_or_default()
            }
            None => String::new(),
        };
        let users = match load.shape.as_ref().map(|s| s.model) {
            Some(crate::scenario::Model::Open) => format!(
                "{:.0}/s intended, {} in flight, {} missed",
                live.intended_milli.load(Ordering::Relaxed) as f64 / 1000.0,
                live.users.load(Ordering::Relaxed),
                live.arrivals_missed.load(Ordering::Relaxed)
            ),
            _ => format!(
                "{}/{:.0} users",
                live.users.load(Ordering::Relaxed),
                live.intended_milli.load(Ordering::Relaxed) as f64 / 1000.0
            ),
        };
        let tokens = live.tokens.load(Ordering::Relaxed);
        let requests = live.requests.load(Ordering::Relaxed);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{}s/{total}{phase}] {users}, {requests} requests ({}/s), {} errors, {} tok/s",
            t.as_secs(),
            requests.saturating_sub(last_requests),
            live.errors.load(Ordering::Relaxed),
            tokens.saturating_sub(last_tokens),
        );
        let _ = err.flush();
        last_tokens = tokens;
        last_requests = requests;
    }
}

/// Whether a progress line should be drawn: stderr is a terminal.
pub fn progress_wanted() -> bool {
    std::io::stderr().is_terminal()
}
