//! The generator's live figures: counters the users bump as they go, read
//! by the progress line, the circuit breaker, the load monitor and the
//! `--metrics-listen` endpoint (Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::sample::{ErrorClass, Sample};

/// Upper bounds of the latency histogram buckets, seconds.
pub const BUCKETS_S: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A Prometheus histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct LiveHist {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl LiveHist {
    fn new() -> Self {
        LiveHist {
            buckets: BUCKETS_S.iter().map(|_| AtomicU64::new(0)).collect(),
            ..Self::default()
        }
    }

    fn record(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS_S.iter().position(|b| s <= *b) {
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
}

impl Live {
    /// Counters for these steps.
    pub fn new(steps: &[crate::scenario::Step]) -> Self {
        Live {
            steps: steps
                .iter()
                .map(|s| StepLive {
                    name: s.name.clone(),
                    requests: AtomicU64::new(0),
                    tokens: AtomicU64::new(0),
                    errors: Mutex::new(BTreeMap::new()),
                    ttft: LiveHist::new(),
                    tpot: LiveHist::new(),
                    e2e: LiveHist::new(),
                })
                .collect(),
            ..Live::default()
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
        header(o, "requests_total", "Finished requests by step.", "counter");
        for s in &self.steps {
            let step = esc(&s.name);
            let _ = writeln!(
                o,
                "flora_gate_requests_total{{step=\"{step}\"}} {}",
                load(&s.requests)
            );
        }
        header(
            o,
            "errors_total",
            "Failed requests by step and error class.",
            "counter",
        );
        for s in &self.steps {
            if let Ok(e) = s.errors.lock() {
                for (class, n) in e.iter() {
                    let _ = writeln!(
                        o,
                        "flora_gate_errors_total{{step=\"{}\",class=\"{}\"}} {n}",
                        esc(&s.name),
                        esc(class)
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
            let _ = writeln!(
                o,
                "flora_gate_output_tokens_total{{step=\"{step}\"}} {}",
                load(&s.tokens)
            );
        }
    }

    /// Latency histograms by step, in seconds.
    fn histograms(&self, o: &mut String) {
        type Pick = fn(&StepLive) -> &LiveHist;
        let families: [(&str, &str, Pick); 3] = [
            ("ttft_seconds", "Time to first token.", |s| &s.ttft),
            ("tpot_seconds", "Time per output token.", |s| &s.tpot),
            (
                "e2e_seconds",
                "Request start to the last token or the full body.",
                |s| &s.e2e,
            ),
        ];
        for (name, help, pick) in families {
            header(o, name, help, "histogram");
            for s in &self.steps {
                let (h, step) = (pick(s), esc(&s.name));
                let mut cum = 0;
                for (b, n) in BUCKETS_S.iter().zip(&h.buckets) {
                    cum += load(n);
                    let _ = writeln!(
                        o,
                        "flora_gate_{name}_bucket{{step=\"{step}\",le=\"{b}\"}} {cum}"
                    );
                }
                let count = h.count();
                let sum = load(&h.sum_us) as f64 / 1e6;
                let _ = writeln!(
                    o,
                    "flora_gate_{name}_bucket{{step=\"{step}\",le=\"+Inf\"}} {count}"
                );
                let _ = writeln!(o, "flora_gate_{name}_sum{{step=\"{step}\"}} {sum}");
                let _ = writeln!(o, "flora_gate_{name}_count{{step=\"{step}\"}} {count}");
            }
        }
    }

    /// The load now, open-loop arrivals and the generator's own health.
    fn gauges(&self, o: &mut String, self_check: &str) {
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
            let _ = writeln!(o, "flora_gate_{name} {v}");
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
            let _ = writeln!(o, "flora_gate_{name} {}", load(v));
        }
        header(
            o,
            "generator_saturated",
            "1 when the generator's own event loop is lagging.",
            "gauge",
        );
        let _ = writeln!(
            o,
            "flora_gate_generator_saturated{{state=\"{}\"}} {}",
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
