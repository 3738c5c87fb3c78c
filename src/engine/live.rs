//! The generator's live figures: counters the users bump as they go, read
//! by the progress line, the circuit breaker, the load monitor and the
//! `--metrics-listen` endpoint (Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::sample::{ErrorClass, Sample};

/// The smallest bucket's upper bound, seconds (1 ms).
const FIRST_BOUND_S: f64 = 0.001;
/// Each bucket's bound over the one below: a quantile read from the
/// buckets (Prometheus interpolates inside one) is within 5% of the truth.
const GROWTH: f64 = 1.05;
/// The largest finite bound is the first at or past 10 minutes.
const LAST_BOUND_S: f64 = 600.0;

/// Upper bounds of the latency histogram buckets, seconds: log-spaced by
/// [`GROWTH`] from 1 ms to 10 min (274 of them).
pub fn bounds() -> &'static [f64] {
    static BOUNDS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| {
        let mut b = vec![FIRST_BOUND_S];
        while *b.last().unwrap_or(&LAST_BOUND_S) < LAST_BOUND_S {
            let next = b[b.len() - 1] * GROWTH;
            b.push(next);
        }
        b
    })
}

/// The bucket of `s` seconds: the first bound at or above it (past the
/// last: `None`, counted in `+Inf` only). Found by its logarithm, then
/// checked against the bounds themselves.
fn bucket(s: f64) -> Option<usize> {
    let b = bounds();
    if s <= FIRST_BOUND_S {
        return Some(0);
    }
    let guess = ((s / FIRST_BOUND_S).ln() / GROWTH.ln()).ceil() as usize;
    let mut k = guess.min(b.len());
    while k > 0 && s <= b[k - 1] {
        k -= 1;
    }
    while k < b.len() && s > b[k] {
        k += 1;
    }
    (k < b.len()).then_some(k)
}

/// A Prometheus histogram over [`bounds`].
#[derive(Debug, Default)]
pub struct LiveHist {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl LiveHist {
    fn new() -> Self {
        LiveHist {
            buckets: bounds().iter().map(|_| AtomicU64::new(0)).collect(),
            ..Self::default()
        }
    }

    fn record(&self, d: Duration) {
        if let Some(i) = bucket(d.as_secs_f64()) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Their sum, µs.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }
}

/// What every live series is labelled with: the run, its scenario and the
/// target's host, so runs and shards side by side in one Prometheus stay
/// apart; and the stages' names, for the current stage's.
#[derive(Debug, Clone, Default)]
pub struct LiveLabels {
    /// A run id: the start's Unix milliseconds and this process, in hex.
    pub run_id: String,
    /// The scenario's name.
    pub scenario: String,
    /// `host:port` of the target.
    pub target: String,
    /// The stages' names, in order.
    pub stages: Vec<String>,
}

impl LiveLabels {
    /// The labels of a run of `scenario` against `target` starting now.
    pub fn new(scenario: &str, target: &crate::target::Target, stages: Vec<String>) -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        LiveLabels {
            run_id: format!("{ms:x}-{:x}", std::process::id()),
            scenario: scenario.to_string(),
            target: format!("{}:{}", target.host(), target.port()),
            stages,
        }
    }

    /// `run_id="…",scenario="…",target="…"`.
    fn text(&self) -> String {
        format!(
            "run_id=\"{}\",scenario=\"{}\",target=\"{}\"",
            esc(&self.run_id),
            esc(&self.scenario),
            esc(&self.target)
        )
    }
}

/// One step's live counters.
#[derive(Debug)]
pub struct StepLive {
    /// Step name.
    pub name: String,
    /// Finished requests (warm-up included).
    pub requests: AtomicU64,
    /// Output tokens of successful requests.
    pub tokens: AtomicU64,
    /// Failures by class.
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Time to first token of successful streamed requests.
    pub ttft: LiveHist,
    /// Time per output token.
    pub tpot: LiveHist,
    /// Gaps between content events.
    pub itl: LiveHist,
    /// Time to the first byte of the answer.
    pub ttfb: LiveHist,
    /// End-to-end latency.
    pub e2e: LiveHist,
}

/// Everything counted while the run goes.
#[derive(Debug, Default)]
pub struct Live {
    /// Finished requests.
    pub requests: AtomicU64,
    /// Failed requests.
    pub errors: AtomicU64,
    /// Output tokens.
    pub tokens: AtomicU64,
    /// Users (or open-loop workflows) active now.
    pub users: AtomicU64,
    /// Requests in flight now.
    pub in_flight: AtomicU64,
    /// Open loop: arrivals due so far.
    pub arrivals_due: AtomicU64,
    /// Open loop: arrivals started.
    pub arrivals_started: AtomicU64,
    /// Open loop: arrivals missed (cap reached, or too late to start).
    pub arrivals_missed: AtomicU64,
    /// The intended load now (users or starts per second), ×1000.
    pub intended_milli: AtomicU64,
    /// The current stage, 1-based (0 before any).
    pub stage: AtomicU64,
    /// Worst event-loop lag of the last second, µs.
    pub lag_us: AtomicU64,
    /// Per step.
    pub steps: Vec<StepLive>,
    /// `run_id="…",scenario="…",target="…"`, on every series.
    labels: String,
    /// The stages' names.
    stage_names: Vec<String>,
    /// Someone reads the figures (`--metrics-listen` or `--metrics-push`):
    /// only then are the per-gap ITL histograms kept, off the hot path
    /// otherwise.
    exposed: bool,
}

impl Live {
    /// Counters for these steps, labelled with `labels`. Every error class
    /// is there from the start, at 0, so a rate over it has a series.
    pub fn new(steps: &[crate::scenario::Step], labels: &LiveLabels) -> Self {
        Live {
            steps: steps
                .iter()
                .map(|s| StepLive {
                    name: s.name.clone(),
                    requests: AtomicU64::new(0),
                    tokens: AtomicU64::new(0),
                    errors: Mutex::new(
                        ErrorClass::fixed_names()
                            .map(|n| (n.to_string(), 0))
                            .collect(),
                    ),
                    ttft: LiveHist::new(),
                    tpot: LiveHist::new(),
                    itl: LiveHist::new(),
                    ttfb: LiveHist::new(),
                    e2e: LiveHist::new(),
                })
                .collect(),
            labels: labels.text(),
            stage_names: labels.stages.clone(),
            ..Live::default()
        }
    }

    /// The figures are served or pushed: keep what only they show.
    pub fn exposed(mut self, exposed: bool) -> Self {
        self.exposed = exposed;
        self
    }

    /// Count the gaps between content events of one request of `step`, µs.
    pub fn gaps(&self, step: usize, gaps_us: &[u32]) {
        if !self.exposed {
            return;
        }
        if let Some(st) = self.steps.get(step) {
            for g in gaps_us {
                st.itl.record(Duration::from_micros(u64::from(*g)));
            }
        }
    }

    /// Count one finished request.
    pub fn record(&self, s: &Sample, failed: Option<ErrorClass>, _warmup: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let step = self.steps.get(usize::from(s.step));
        if let Some(st) = step {
            st.requests.fetch_add(1, Ordering::Relaxed);
        }
        match failed {
            Some(class) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(Ok(mut e)) = step.map(|st| st.errors.lock()) {
                    *e.entry(class.name()).or_default() += 1;
                }
            }
            None => {
                let n = s.output_tokens();
                self.tokens.fetch_add(n, Ordering::Relaxed);
                if let Some(st) = step {
                    st.tokens.fetch_add(n, Ordering::Relaxed);
                    if let Some(t) = s.ttft {
                        st.ttft.record(t);
                    }
                    if let Some(t) = s.tpot() {
                        st.tpot.record(t);
                    }
                    if let Some(t) = s.ttfb {
                        st.ttfb.record(t);
                    }
                    if let Some(t) = s.e2e {
                        st.e2e.record(t);
                    }
                }
            }
        }
    }

    /// The figures in the Prometheus text exposition format (0.0.4).
    pub fn prometheus(&self, self_check: &str) -> String {
        let mut o = String::with_capacity(8192);
        self.step_counters(&mut o);
        self.histograms(&mut o);
        self.gauges(&mut o, self_check);
        o
    }

    /// Requests, errors and tokens by step.
    fn step_counters(&self, o: &mut String) {
        let l = &self.labels;
        header(o, "requests_total", "Finished requests by step.", "counter");
        for s in &self.steps {
            let step = esc(&s.name);
            let n = load(&s.requests);
            let _ = writeln!(o, "flora_gate_requests_total{{{l},step=\"{step}\"}} {n}");
        }
        header(
            o,
            "errors_total",
            "Failed requests by step and error class.",
            "counter",
        );
        for s in &self.steps {
            let step = esc(&s.name);
            if let Ok(e) = s.errors.lock() {
                for (class, n) in e.iter() {
                    let class = esc(class);
                    let _ = writeln!(
                        o,
                        "flora_gate_errors_total{{{l},step=\"{step}\",class=\"{class}\"}} {n}"
                    );
                }
            }
        }
        header(
            o,
            "output_tokens_total",
            "Output tokens of successful requests by step.",
            "counter",
        );
        for s in &self.steps {
            let step = esc(&s.name);
            let n = load(&s.tokens);
            let _ = writeln!(
                o,
                "flora_gate_output_tokens_total{{{l},step=\"{step}\"}} {n}"
            );
        }
    }

    /// Latency histograms by step, in seconds, over [`bounds`].
    fn histograms(&self, o: &mut String) {
        type Pick = fn(&StepLive) -> &LiveHist;
        let families: [(&str, &str, Pick); 5] = [
            ("ttft_seconds", "Time to first token.", |s| &s.ttft),
            ("tpot_seconds", "Time per output token.", |s| &s.tpot),
            ("itl_seconds", "Gaps between content events.", |s| &s.itl),
            ("ttfb_seconds", "Time to the answer's first byte.", |s| {
                &s.ttfb
            }),
            (
                "e2e_seconds",
                "Request start to the last token or the full body.",
                |s| &s.e2e,
            ),
        ];
        let l = &self.labels;
        for (name, help, pick) in families {
            header(o, name, help, "histogram");
            for s in &self.steps {
                let (h, step) = (pick(s), esc(&s.name));
                let mut cum = 0;
                for (b, n) in bounds().iter().zip(&h.buckets) {
                    cum += load(n);
                    let _ = writeln!(
                        o,
                        "flora_gate_{name}_bucket{{{l},step=\"{step}\",le=\"{b:.6}\"}} {cum}"
                    );
                }
                let count = h.count();
                let sum = load(&h.sum_us) as f64 / 1e6;
                let _ = writeln!(
                    o,
                    "flora_gate_{name}_bucket{{{l},step=\"{step}\",le=\"+Inf\"}} {count}"
                );
                let _ = writeln!(o, "flora_gate_{name}_sum{{{l},step=\"{step}\"}} {sum}");
                let _ = writeln!(o, "flora_gate_{name}_count{{{l},step=\"{step}\"}} {count}");
            }
        }
    }

    /// The load now, open-loop arrivals and the generator's own health.
    fn gauges(&self, o: &mut String, self_check: &str) {
        let l = &self.labels;
        let gauges = [
            (
                "users_active",
                "Users (or open-loop workflows) active now.",
                load(&self.users) as f64,
            ),
            (
                "users_intended",
                "The load the plan intends now (users, or starts per second).",
                load(&self.intended_milli) as f64 / 1000.0,
            ),
            (
                "requests_in_flight",
                "Requests in flight now.",
                load(&self.in_flight) as f64,
            ),
            (
                "stage",
                "The current stage, 1-based.",
                load(&self.stage) as f64,
            ),
            (
                "event_loop_lag_seconds",
                "Worst event-loop lag of the last second.",
                load(&self.lag_us) as f64 / 1e6,
            ),
        ];
        for (name, help, v) in gauges {
            header(o, name, help, "gauge");
            let _ = writeln!(o, "flora_gate_{name}{{{l}}} {v}");
        }
        // The current stage by name (1 on its series), for dashboards.
        header(o, "stage_info", "The current stage's name.", "gauge");
        let current = usize::try_from(load(&self.stage)).unwrap_or(0);
        for (i, name) in self.stage_names.iter().enumerate() {
            let on = u8::from(i + 1 == current);
            let _ = writeln!(
                o,
                "flora_gate_stage_info{{{l},stage_name=\"{}\"}} {on}",
                esc(name)
            );
        }
        let arrivals = [
            (
                "arrivals_due_total",
                "Open loop: arrivals due.",
                &self.arrivals_due,
            ),
            (
                "arrivals_started_total",
                "Open loop: arrivals started on time.",
                &self.arrivals_started,
            ),
            (
                "arrivals_missed_total",
                "Open loop: arrivals not started (cap reached or late).",
                &self.arrivals_missed,
            ),
        ];
        for (name, help, v) in arrivals {
            header(o, name, help, "counter");
            let _ = writeln!(o, "flora_gate_{name}{{{l}}} {}", load(v));
        }
        header(
            o,
            "generator_saturated",
            "1 when the generator's own event loop is lagging.",
            "gauge",
        );
        let _ = writeln!(
            o,
            "flora_gate_generator_saturated{{{l},state=\"{}\"}} {}",
            esc(self_check),
            u8::from(self_check != "ok")
        );
    }
}

/// `# HELP` and `# TYPE` of one family.
fn header(o: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(
        o,
        "# HELP flora_gate_{name} {help}\n# TYPE flora_gate_{name} {kind}"
    );
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// A label value escaped for the text format.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Most scrapers served at once; a connection beyond them is closed at
/// once, so idle connections can never take the generator's descriptors.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest a scraper may take to send its request and read the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Serve `GET /metrics` at `addr` until the returned task is aborted: one
/// answer per connection (`Connection: close`), at most
/// [`MAX_CONNECTIONS`] at once, each within [`CONNECTION_TIMEOUT`]. Prints
/// the address bound (the port when `:0` was asked), and warns when it is
/// reachable beyond this machine.
pub(super) async fn serve(
    shared: std::sync::Arc<super::Shared>,
    addr: std::net::SocketAddr,
) -> Result<tokio::task::JoinHandle<()>, crate::error::UserError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        crate::error::UserError::Environment {
            message: format!("cannot serve the live metrics on {addr}: {e}"),
            hint: Some("choose another address or port for `--metrics-listen`".into()),
        }
    })?;
    let bound = listener.local_addr().unwrap_or(addr);
    crate::output::err_line(&format!("live metrics: http://{bound}/metrics"));
    if !bound.ip().is_loopback() {
        crate::output::err_line(&format!(
            "warning: the live metrics listen on {bound}, beyond this machine: whoever reaches it sees the run's steps and figures"
        ));
    }
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                // Out of descriptors, say: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(sock);
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, answer(&mut sock, &shared)).await;
            });
        }
    }))
}

/// The live endpoint after the run: it serves the final figures until
/// [`Lingering::linger`] has waited its time (or a signal came), and stops
/// when dropped.
#[derive(Debug)]
pub struct Lingering {
    task: tokio::task::JoinHandle<()>,
    linger: Duration,
}

impl Lingering {
    pub(super) fn new(task: tokio::task::JoinHandle<()>, linger: Duration) -> Self {
        Lingering { task, linger }
    }

    /// How long it stays.
    pub fn duration(&self) -> Duration {
        self.linger
    }

    /// Keep serving for the linger time, or until `signals` fires.
    pub async fn linger(self, signals: &tokio_util::sync::CancellationToken) {
        tokio::select! {
            () = tokio::time::sleep(self.linger) => {}
            () = signals.cancelled() => {}
        }
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read one request head and answer it.
async fn answer(sock: &mut tokio::net::TcpStream, shared: &super::Shared) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let (method, path) = (words.next(), words.next());
    let (status, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            let lag = shared.live.lag_us.load(Ordering::Relaxed);
            let state = if lag > 100_000 { "lagging" } else { "ok" };
            ("200 OK", shared.live.prometheus(state))
        }
        _ => (
            "404 Not Found",
            "not found: the live metrics are at /metrics\n".to_string(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(reply.as_bytes()).await?;
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus' `histogram_quantile`: the bucket holding the rank, then
    /// linear inside it (from 0 below the first bound).
    fn histogram_quantile(h: &LiveHist, q: f64) -> f64 {
        let rank = q * h.count() as f64;
        let (mut below, mut lower) = (0.0, 0.0);
        for (b, n) in bounds().iter().zip(&h.buckets) {
            let n = load(n) as f64;
            if below + n >= rank && n > 0.0 {
                return lower + (b - lower) * (rank - below) / n;
            }
            below += n;
            lower = *b;
        }
        f64::INFINITY
    }

    #[test]
    fn every_value_lands_in_the_first_bucket_that_holds_it() {
        let b = bounds();
        let expected = ((LAST_BOUND_S / FIRST_BOUND_S).ln() / GROWTH.ln()).ceil() as usize + 1;
        assert_eq!(b.len(), expected);
        assert!(b[b.len() - 1] >= LAST_BOUND_S && b[b.len() - 2] < LAST_BOUND_S);
        let mut s = 1e-4;
        while s < 1e3 {
            match bucket(s) {
                Some(k) => {
                    assert!(s <= b[k], "{s} above bucket {k} ({})", b[k]);
                    assert!(k == 0 || s > b[k - 1], "{s} belongs below bucket {k}");
                }
                None => assert!(s > b[b.len() - 1], "{s}"),
            }
            s *= 1.0123;
        }
        for (k, bound) in b.iter().enumerate() {
            assert_eq!(bucket(*bound), Some(k), "a bound is in its own bucket");
        }
    }

    #[test]
    fn quantiles_read_from_the_buckets_are_within_five_percent() {
        // Latency-like samples from 1 ms to 40 s.
        for (scale, spread) in [(0.02, 1.0), (0.08, 0.3), (2.0, 1.0)] {
            let h = LiveHist::new();
            let mut xs: Vec<f64> = (0..5000)
                .map(|i| {
                    let u = (f64::from(i) * 0.618_034).fract();
                    scale * (spread * (u * 6.0 - 3.0)).exp()
                })
                .collect();
            for x in &xs {
                h.record(Duration::from_secs_f64(*x));
            }
            xs.sort_by(f64::total_cmp);
            for q in [0.5, 0.9, 0.99] {
                let exact = xs[(q * xs.len() as f64).ceil() as usize - 1];
                let read = histogram_quantile(&h, q);
                let err = (read / exact - 1.0).abs();
                assert!(
                    err <= 0.05,
                    "scale {scale}, q {q}: {read} against {exact} ({err:.3})"
                );
            }
        }
    }

    #[test]
    fn every_series_carries_the_runs_labels_and_counters_start_at_zero() {
        let sc = crate::scenario::Scenario::load("openai-chat", &[]).expect("bundled");
        let target = crate::target::Target::parse(
            "http://127.0.0.1:8000",
            crate::target::Source { name: "--target" },
        )
        .expect("a URL");
        let labels = LiveLabels::new("openai-chat", &target, vec!["warm".into(), "hold".into()]);
        let live = Live::new(&sc.steps, &labels);
        live.stage.store(2, Ordering::Relaxed);
        let text = live.prometheus("ok");
        let e = crate::stats::prom::parse(&text).expect("valid exposition");
        assert!(!e.samples.is_empty());
        for s in &e.samples {
            assert_eq!(
                s.label("run_id"),
                Some(labels.run_id.as_str()),
                "{}",
                s.name
            );
            assert_eq!(s.label("scenario"), Some("openai-chat"));
            assert_eq!(s.label("target"), Some("127.0.0.1:8000"));
        }
        let zero_errors = e
            .samples
            .iter()
            .filter(|s| s.name == "flora_gate_errors_total" && s.value == 0.0)
            .count();
        assert_eq!(
            zero_errors,
            ErrorClass::fixed_names().count() * sc.steps.len()
        );
        for family in ["ttft", "tpot", "itl", "ttfb", "e2e"] {
            let name = format!("flora_gate_{family}_seconds_count");
            assert!(e.samples.iter().any(|s| s.name == name), "{name}");
        }
        let stage = |n: &str| {
            e.samples
                .iter()
                .find(|s| s.name == "flora_gate_stage_info" && s.label("stage_name") == Some(n))
                .map(|s| s.value)
        };
        assert_eq!((stage("warm"), stage("hold")), (Some(0.0), Some(1.0)));
    }
}
