//! The result file: schema-versioned JSON with summaries, serialized
//! histograms, time blocks (the gate's unit of evidence) and provenance.
//!
//! `schema/result.schema.json` describes it and a test validates real results
//! against it. Failed requests are +∞ in every latency distribution.

pub mod baseline;
pub mod duet;
pub mod measure;
pub mod requests;
pub mod values;

pub use measure::{measure, Current, Measured};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{RunOutput, RunStatus, Sample, SelfCheck};
use crate::error::UserError;
use crate::scenario::{ResponseKind, Scenario, Slo};
use crate::stats::{Dist, LatencyHist};

/// Version of the result format; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;
/// The `kind` field of a result file.
pub const KIND: &str = "flora-gate/result";
/// How histograms are encoded.
pub const HIST_ENCODING: &str =
    "hdrhistogram-v2-deflate+base64, microseconds; failures counted in the summary";

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// [`KIND`].
    pub kind: String,
    /// `complete`, `partial` (stopped by a signal) or `aborted` (circuit breaker).
    pub status: String,
    /// Why the run is partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Where the numbers come from.
    pub provenance: Provenance,
    /// The measured window.
    pub window: Window,
    /// All steps together.
    pub totals: Totals,
    /// Per step, in workflow order.
    pub steps: Vec<StepResult>,
    /// Whole workflow iterations.
    pub workflow: WorkflowResult,
    /// The measured window cut into equal time blocks.
    pub blocks: Vec<Block>,
    /// A few failed requests per step and error class, with what the server said.
    #[serde(default)]
    pub error_examples: Vec<ErrorExampleOut>,
    /// The generator's own health.
    pub self_check: SelfCheck,
    /// Objectives goodput was counted against.
    pub slo: Slo,
    /// The scenario's gate policy, so `compare` needs only files.
    pub gate: crate::policy::Policy,
}

/// How a run ended, as the result file says it (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Ran its whole duration or request count.
    Complete,
    /// Stopped early by a signal.
    Partial,
    /// Stopped by the circuit breaker, or a crashed user.
    Aborted,
}

impl RunState {
    /// The word in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Complete => "complete",
            RunState::Partial => "partial",
            RunState::Aborted => "aborted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [RunState::Complete, RunState::Partial, RunState::Aborted]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A failed request kept as an example of its class.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorExampleOut {
    /// Step name.
    pub step: String,
    /// Error class.
    pub class: String,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The start of the error body, credentials redacted.
    pub body: Option<String>,
    /// Its `X-Request-Id`.
    pub request_id: String,
}

impl ErrorExampleOut {
    /// One line: `HTTP 400: {"error": …}` or the class alone.
    pub fn describe(&self) -> String {
        match (self.status, self.body.as_deref()) {
            (Some(s), Some(b)) => format!("HTTP {s}: {b}"),
            (Some(s), None) => format!("HTTP {s} ({})", self.class),
            (None, Some(b)) => format!("{}: {b}", self.class),
            (None, None) => self.class.clone(),
        }
    }
}

/// Where a result comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// `flora-gate`.
    pub tool: String,
    /// Its version.
    pub tool_version: String,
    /// The scenario.
    pub scenario: ScenarioRef,
    /// Base URL of the target.
    pub target: String,
    /// Virtual users.
    pub concurrency: u32,
    /// Configured duration, seconds.
    pub duration_s: Option<f64>,
    /// Configured request count.
    pub requests_limit: Option<u64>,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Data sampling seed.
    pub seed: u64,
    /// The scenario's variables as used (part of the workload identity).
    #[serde(default)]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// The `--var` overrides given, for the reproduce command.
    #[serde(default)]
    pub var_overrides: BTreeMap<String, String>,
    /// Start, RFC 3339.
    pub started_at: String,
    /// Run length including warm-up and drain, seconds.
    pub elapsed_s: f64,
    /// The machine that generated the load.
    pub host: Host,
}

/// Which scenario, exactly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScenarioRef {
    /// Its name.
    pub name: String,
    /// Path or `bundled:NAME`.
    pub origin: String,
    /// sha256 of its text.
    pub sha256: String,
}

/// Load-generator host facts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Host {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// Cores available to the process.
    pub cores: usize,
    /// Host name, when known.
    pub hostname: Option<String>,
}

/// The measured window: warm-up excluded, from the first measured request
/// sent to the last measured response ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// Offset from run start, ms.
    pub start_ms: f64,
    /// Offset from run start, ms.
    pub end_ms: f64,
    /// Length, seconds.
    pub duration_s: f64,
}

/// All steps together.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Measured requests.
    pub requests: u64,
    /// Succeeded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// failed / requests.
    pub error_rate: f64,
    /// Requests per second over the window.
    pub requests_per_s: f64,
    /// Output tokens per second over the window.
    pub output_tokens_per_s: f64,
    /// Requests meeting every SLO, per second.
    pub goodput_per_s: f64,
    /// Failures by class.
    pub errors: BTreeMap<String, u64>,
}

/// One step's figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    /// Step name.
    pub name: String,
    /// `sse` or `json`.
    pub response: ResponseKind,
    /// Measured requests.
    pub requests: u64,
    /// Succeeded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// ok / requests.
    pub success_rate: f64,
    /// Failures by class.
    pub errors: BTreeMap<String, u64>,
    /// HTTP statuses seen.
    pub statuses: BTreeMap<String, u64>,
    /// Time to the response headers (first byte); failures are +∞.
    #[serde(default)]
    pub ttfb_ms: Dist,
    /// Time to the first SSE event of any kind (streams); failures are +∞.
    /// Headers and a role chunk fast but content late is queueing.
    #[serde(default)]
    pub first_event_ms: Dist,
    /// Time to first content token (streams).
    pub ttft_ms: Dist,
    /// Start to last content token (streams) or full body (JSON).
    pub e2e_ms: Dist,
    /// Start to end of the response.
    pub stream_end_ms: Dist,
    /// Time per output token.
    pub tpot_ms: Dist,
    /// Pooled gaps between content chunks (successful requests).
    pub itl_ms: Dist,
    /// Token counts.
    pub output_tokens: TokenCounts,
    /// Rates over the measured window.
    pub throughput: Throughput,
    /// Serialized histograms, for exact merging.
    pub histograms: Histograms,
}

/// Output-token accounting.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TokenCounts {
    /// Output tokens of successful requests (server count, else chunks).
    pub total: u64,
    /// Mean per successful request.
    pub mean_per_request: Option<f64>,
    /// Successful requests whose server reported usage.
    pub usage_reported: u64,
    /// Content chunks of successful requests.
    pub chunks: u64,
    /// Sum of (usage − chunks) over requests that have both.
    pub usage_minus_chunks: i64,
}

/// Rates over the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Throughput {
    /// Completed requests per second.
    pub requests_per_s: f64,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
    /// Requests meeting every SLO, per second.
    pub goodput_per_s: f64,
    /// Median of per-request output tokens / E2E seconds.
    pub per_user_tokens_per_s_p50: Option<f64>,
}

/// Serialized HdrHistograms (see [`HIST_ENCODING`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Histograms {
    /// Encoding of the strings below.
    pub encoding: String,
    /// Time to first byte.
    #[serde(default)]
    pub ttfb: String,
    /// Time to the first SSE event.
    #[serde(default)]
    pub first_event: String,
    /// TTFT.
    pub ttft: String,
    /// E2E.
    pub e2e: String,
    /// Stream end.
    pub stream_end: String,
    /// TPOT.
    pub tpot: String,
    /// ITL.
    pub itl: String,
}

/// Whole workflow iterations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkflowResult {
    /// Measured iterations.
    pub iterations: u64,
    /// All steps succeeded.
    pub ok: u64,
    /// Some step failed.
    pub failed: u64,
    /// ok / iterations.
    pub success_rate: f64,
    /// Iteration duration; failures are +∞.
    pub duration_ms: Dist,
    /// Iterations per second.
    pub iterations_per_s: f64,
    /// Serialized duration histogram.
    pub histogram: String,
}

/// One time block of the measured window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Block {
    /// 0-based.
    pub index: u32,
    /// Offset from run start, ms.
    pub start_ms: f64,
    /// Offset from run start, ms.
    pub end_ms: f64,
    /// Per step, requests started in this block.
    pub steps: BTreeMap<String, BlockStats>,
    /// Workflow iterations started in this block.
    pub workflow: BlockStats,
}

/// Figures of one step in one block. A latency is `null` when nothing was
/// measured or when failures push it to +∞ (then `failed` > 0).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlockStats {
    /// Requests (or iterations).
    pub requests: u64,
    /// Failures.
    pub failed: u64,
    /// TTFT median.
    pub ttft_p50_ms: Option<f64>,
    /// TTFT 90th percentile.
    pub ttft_p90_ms: Option<f64>,
    /// TPOT median.
    pub tpot_p50_ms: Option<f64>,
    /// E2E (or iteration duration) median.
    pub e2e_p50_ms: Option<f64>,
    /// Output tokens per second of the block.
    pub output_tokens_per_s: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn meets_slo(s: &Sample, slo: &Slo) -> bool {
    let within = |limit: Option<f64>, v: Option<Duration>| match (limit, v) {
        (Some(l), Some(v)) => ms(v) <= l,
        (Some(_), None) => false,
        (None, _) => true,
    };
    s.ok()
        && (slo.ttft_ms.is_none()
            || s.ttft.is_none() && s.e2e.is_some()
            || within(slo.ttft_ms, s.ttft))
        && (slo.tpot_ms.is_none() || s.tpot().is_none() || within(slo.tpot_ms, s.tpot()))
        && within(slo.e2e_ms, s.e2e)
}

/// Latency histograms of a set of requests of one step.
#[derive(Default)]
struct StepHists {
    ttfb: LatencyHist,
    first_event: LatencyHist,
    ttft: LatencyHist,
    e2e: LatencyHist,
    stream_end: LatencyHist,
    tpot: LatencyHist,
    per_user_tps: Vec<f64>,
    tokens: TokenCounts,
    errors: BTreeMap<String, u64>,
    statuses: BTreeMap<String, u64>,
    requests: u64,
    failed: u64,
    good: u64,
}

impl StepHists {
    fn add(&mut self, s: &Sample, kind: ResponseKind, slo: &Slo) {
        self.requests += 1;
        if let Some(st) = s.status {
            *self.statuses.entry(st.to_string()).or_default() += 1;
        }
        match s.error {
            Some(e) => {
                self.failed += 1;
                *self.errors.entry(e.name()).or_default() += 1;
                self.ttfb.record_failure();
                if kind == ResponseKind::Sse {
                    self.first_event.record_failure();
                    self.ttft.record_failure();
                    self.tpot.record_failure();
                }
                self.e2e.record_failure();
                self.stream_end.record_failure();
            }
            None => {
                if let Some(t) = s.ttfb {
                    self.ttfb.record(t);
                }
                if let Some(t) = s.first_event {
                    self.first_event.record(t);
                }
                if let Some(t) = s.ttft {
                    self.ttft.record(t);
                }
                if let Some(t) = s.tpot() {
                    self.tpot.record(t);
                }
                if let Some(e) = s.e2e {
                    self.e2e.record(e);
                }
                self.stream_end.record(s.stream_end);
                let n = s.output_tokens();
                // Counts come from servers: sums saturate, never wrap.
                self.tokens.total = self.tokens.total.saturating_add(n);
                self.tokens.chunks = self.tokens.chunks.saturating_add(u64::from(s.chunks));
                if let Some(u) = s.usage_tokens {
                    self.tokens.usage_reported += 1;
                    self.tokens.usage_minus_chunks = self.tokens.usage_minus_chunks.saturating_add(
                        i64::try_from(u)
                            .unwrap_or(i64::MAX)
                            .saturating_sub(i64::from(s.chunks)),
                    );
                }
                if let Some(e) = s.e2e.filter(|e| !e.is_zero() && kind == ResponseKind::Sse) {
                    self.per_user_tps.push(n as f64 / e.as_secs_f64());
                }
                if meets_slo(s, slo) {
                    self.good += 1;
                }
            }
        }
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn host() -> Host {
    Host {
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        hostname: std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    }
}

/// Everything about the run that is not a measurement.
#[derive(Debug, Clone)]
pub struct RunMeta<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Base URL.
    pub target: &'a str,
    /// Load settings used.
    pub load: &'a crate::scenario::LoadSpec,
}

/// Summarise a run.
pub fn build(meta: &RunMeta<'_>, out: &RunOutput) -> RunResult {
    let sc = meta.scenario;
    let measured: Vec<&Sample> = out.recorder.samples.iter().filter(|s| !s.warmup).collect();
    let w_start = measured.iter().map(|s| s.start).min().unwrap_or_default();
    let w_end = measured
        .iter()
        .map(|s| s.start + s.stream_end)
        .max()
        .unwrap_or(w_start);
    // Rates are over the time that was measuring: one stretch for a run,
    // the sum of its own slots for a duet side.
    let window_s = out
        .active
        .unwrap_or(w_end - w_start)
        .as_secs_f64()
        .max(1e-3);

    let mut totals_errors = BTreeMap::new();
    let mut steps = Vec::with_capacity(sc.steps.len());
    let (mut t_req, mut t_failed, mut t_tokens, mut t_good) = (0u64, 0u64, 0u64, 0u64);
    for (i, step) in sc.steps.iter().enumerate() {
        let mut h = StepHists::default();
        for s in measured.iter().filter(|s| usize::from(s.step) == i) {
            h.add(s, step.response, &sc.slo);
        }
        let no_gaps = LatencyHist::new();
        let itl = out.recorder.itl.get(i).unwrap_or(&no_gaps);
        for (k, v) in &h.errors {
            *totals_errors.entry(k.clone()).or_insert(0) += v;
        }
        t_req += h.requests;
        t_failed += h.failed;
        t_tokens = t_tokens.saturating_add(h.tokens.total);
        t_good += h.good;
        let ok = h.requests - h.failed;
        h.tokens.mean_per_request = (ok > 0).then(|| h.tokens.total as f64 / ok as f64);
        steps.push(StepResult {
            name: step.name.clone(),
            response: step.response,
            requests: h.requests,
            ok,
            failed: h.failed,
            success_rate: if h.requests == 0 {
                0.0
            } else {
                ok as f64 / h.requests as f64
            },
            errors: h.errors.clone(),
            statuses: h.statuses.clone(),
            ttfb_ms: h.ttfb.dist(),
            first_event_ms: h.first_event.dist(),
            ttft_ms: h.ttft.dist(),
            e2e_ms: h.e2e.dist(),
            stream_end_ms: h.stream_end.dist(),
            tpot_ms: h.tpot.dist(),
            itl_ms: itl.dist(),
            output_tokens: h.tokens.clone(),
            throughput: Throughput {
                requests_per_s: h.requests as f64 / window_s,
                output_tokens_per_s: h.tokens.total as f64 / window_s,
                goodput_per_s: h.good as f64 / window_s,
                per_user_tokens_per_s_p50: median(&mut h.per_user_tps),
            },
            histograms: Histograms {
                encoding: HIST_ENCODING.into(),
                ttfb: h.ttfb.encode(),
                first_event: h.first_event.encode(),
                ttft: h.ttft.encode(),
                e2e: h.e2e.encode(),
                stream_end: h.stream_end.encode(),
                tpot: h.tpot.encode(),
                itl: itl.encode(),
            },
        });
    }

    let iters: Vec<_> = out
        .recorder
        .iterations
        .iter()
        .filter(|i| !i.warmup)
        .collect();
    let mut wf = LatencyHist::new();
    for it in &iters {
        if it.ok {
            wf.record(it.duration);
        } else {
            wf.record_failure();
        }
    }
    let wf_ok = iters.iter().filter(|i| i.ok).count() as u64;
    let workflow = WorkflowResult {
        iterations: iters.len() as u64,
        ok: wf_ok,
        failed: iters.len() as u64 - wf_ok,
        success_rate: if iters.is_empty() {
            0.0
        } else {
            wf_ok as f64 / iters.len() as f64
        },
        duration_ms: wf.dist(),
        iterations_per_s: iters.len() as f64 / window_s,
        histogram: wf.encode(),
    };

    let blocks = build_blocks(sc, &measured, &iters, w_start, meta.load.blocks);

    let (status, status_reason) = match &out.status {
        RunStatus::Complete => (RunState::Complete.as_str().to_string(), None),
        RunStatus::Partial(r) => (RunState::Partial.as_str().to_string(), Some(r.clone())),
        RunStatus::Aborted(r) => (RunState::Aborted.as_str().to_string(), Some(r.clone())),
    };
    RunResult {
        schema_version: SCHEMA_VERSION,
        kind: KIND.into(),
        status,
        status_reason,
        provenance: Provenance {
            tool: "flora-gate".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            scenario: ScenarioRef {
                name: sc.name.clone(),
                origin: sc.origin.clone(),
                sha256: sc.sha256.clone(),
            },
            target: crate::target::redact_userinfo(meta.target),
            concurrency: meta.load.concurrency,
            duration_s: meta.load.duration.map(|d| d.as_secs_f64()),
            requests_limit: meta.load.requests,
            warmup_s: meta.load.warmup.as_secs_f64(),
            seed: meta.load.seed,
            vars: sc.vars.clone(),
            var_overrides: sc.var_overrides.clone(),
            started_at: out.started_at.to_rfc3339(),
            elapsed_s: out.elapsed.as_secs_f64(),
            host: host(),
        },
        window: Window {
            start_ms: ms(w_start),
            end_ms: ms(w_end),
            duration_s: window_s,
        },
        totals: Totals {
            requests: t_req,
            ok: t_req - t_failed,
            failed: t_failed,
            error_rate: if t_req == 0 {
                0.0
            } else {
                t_failed as f64 / t_req as f64
            },
            requests_per_s: t_req as f64 / window_s,
            output_tokens_per_s: t_tokens as f64 / window_s,
            goodput_per_s: t_good as f64 / window_s,
            errors: totals_errors,
        },
        steps,
        workflow,
        blocks,
        error_examples: out
            .recorder
            .examples
            .iter()
            .map(|e| ErrorExampleOut {
                step: sc
                    .steps
                    .get(usize::from(e.step))
                    .map_or_else(|| "?".into(), |s| s.name.clone()),
                class: e.class.name(),
                status: e.status,
                body: e.body.clone(),
                request_id: e.request_id.clone(),
            })
            .collect(),
        self_check: out.self_check.clone(),
        slo: sc.slo.clone(),
        gate: sc.gate.clone(),
    }
}

/// Cut the sending part of the window into `n` equal blocks and summarise
/// the requests that started in each.
fn build_blocks(
    sc: &Scenario,
    measured: &[&Sample],
    iters: &[&crate::engine::IterationSample],
    w_start: Duration,
    n: u32,
) -> Vec<Block> {
    let last_start = measured.iter().map(|s| s.start).max().unwrap_or(w_start);
    let span = (last_start - w_start).max(Duration::from_millis(1));
    let width = span.as_secs_f64() / f64::from(n);
    let index_of = |start: Duration| -> usize {
        let x = (start.saturating_sub(w_start)).as_secs_f64() / width;
        (x.floor() as usize).min(n as usize - 1)
    };
    let mut per_block: Vec<Vec<StepHists>> = (0..n)
        .map(|_| sc.steps.iter().map(|_| StepHists::default()).collect())
        .collect();
    for s in measured {
        let b = index_of(s.start);
        per_block[b][usize::from(s.step)].add(s, sc.steps[usize::from(s.step)].response, &sc.slo);
    }
    let mut wf: Vec<(LatencyHist, u64)> = (0..n).map(|_| (LatencyHist::new(), 0)).collect();
    for it in iters {
        let b = index_of(it.start);
        if it.ok {
            wf[b].0.record(it.duration);
        } else {
            wf[b].0.record_failure();
            wf[b].1 += 1;
        }
    }
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    (0..n as usize)
        .map(|b| {
            let start = w_start.as_secs_f64() + width * b as f64;
            let steps = sc
                .steps
                .iter()
                .zip(&per_block[b])
                .map(|(step, h)| {
                    (
                        step.name.clone(),
                        BlockStats {
                            requests: h.requests,
                            failed: h.failed,
                            ttft_p50_ms: finite(h.ttft.quantile_ms(0.5)),
                            ttft_p90_ms: finite(h.ttft.quantile_ms(0.9)),
                            tpot_p50_ms: finite(h.tpot.quantile_ms(0.5)),
                            e2e_p50_ms: finite(h.e2e.quantile_ms(0.5)),
                            output_tokens_per_s: h.tokens.total as f64 / width,
                        },
                    )
                })
                .collect();
            let tokens: u64 = per_block[b]
                .iter()
                .fold(0u64, |a, h| a.saturating_add(h.tokens.total));
            Block {
                index: b as u32,
                start_ms: start * 1000.0,
                end_ms: (start + width) * 1000.0,
                steps,
                workflow: BlockStats {
                    requests: wf[b].0.count(),
                    failed: wf[b].1,
                    ttft_p50_ms: None,
                    ttft_p90_ms: None,
                    tpot_p50_ms: None,
                    e2e_p50_ms: finite(wf[b].0.quantile_ms(0.5)),
                    output_tokens_per_s: tokens as f64 / width,
                },
            }
        })
        .collect()
}

/// Collects the first invalid number of a file.
#[derive(Default)]
pub(crate) struct Validator {
    first: Option<(String, String)>,
}

impl Validator {
    pub(crate) fn fail(&mut self, field: &str, why: &str) {
        self.first
            .get_or_insert_with(|| (field.to_string(), why.to_string()));
    }

    pub(crate) fn hash(&mut self, field: &str, s: &str) {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.fail(field, "must be 64 hexadecimal characters");
        }
    }

    pub(crate) fn fraction(&mut self, field: &str, x: f64) {
        if !(x.is_finite() && (0.0..=1.0).contains(&x)) {
            self.fail(field, &format!("{x} is not a fraction between 0 and 1"));
        }
    }

    pub(crate) fn rate(&mut self, field: &str, x: f64) {
        if !(x.is_finite() && x >= 0.0) {
            self.fail(field, &format!("{x} is not a rate (finite, 0 or more)"));
        }
    }

    pub(crate) fn latency(&mut self, field: &str, x: f64) {
        if !(x.is_finite() && x > 0.0) {
            self.fail(
                field,
                &format!("{x} is not a latency (finite, more than 0)"),
            );
        }
    }

    pub(crate) fn blocks(&mut self, field: &str, blocks: &[Block]) {
        for (b, block) in blocks.iter().enumerate() {
            for (name, s) in block
                .steps
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .chain([("workflow", &block.workflow)])
            {
                let f = |k: &str| format!("{field}[{b}].{name}.{k}");
                for (k, x) in [
                    ("ttft_p50_ms", s.ttft_p50_ms),
                    ("ttft_p90_ms", s.ttft_p90_ms),
                    ("tpot_p50_ms", s.tpot_p50_ms),
                    ("e2e_p50_ms", s.e2e_p50_ms),
                ] {
                    if let Some(x) = x {
                        self.latency(&f(k), x);
                    }
                }
                self.rate(&f("output_tokens_per_s"), s.output_tokens_per_s);
                if s.failed > s.requests {
                    self.fail(&f("failed"), "more failures than requests");
                }
            }
        }
    }

    pub(crate) fn done(self) -> Result<(), (String, String)> {
        self.first.map_or(Ok(()), Err)
    }
}

const FILE_TYPE: crate::jsonfile::FileType = crate::jsonfile::FileType {
    what: "result",
    kind: KIND,
    version: SCHEMA_VERSION,
    stale_hint: "re-run `flora-gate run` with this version to make a current result",
};

impl RunResult {
    /// Write as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), UserError> {
        crate::jsonfile::write(path, self, "result")
    }

    /// Read a result file, refusing other kinds and schema versions.
    pub fn read(path: &Path) -> Result<Self, UserError> {
        crate::jsonfile::read(path, &FILE_TYPE)
    }

    /// Parse result JSON; `path` names it in errors. The numbers are
    /// checked too: a file that says a latency is negative or an error rate
    /// is 3 would otherwise pass every gate.
    pub fn parse(text: &str, path: &Path) -> Result<Self, UserError> {
        let r: Self = crate::jsonfile::parse(text, path, &FILE_TYPE)?;
        r.validate().map_err(|(field, msg)| {
            UserError::invalid("result", path, Some(format!("`{field}`")), msg)
        })?;
        Ok(r)
    }

    /// Check every number a verdict could rest on: `Err((field, why))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut v = Validator::default();
        if RunState::parse(&self.status).is_none() {
            v.fail("status", "must be `complete`, `partial` or `aborted`");
        }
        v.hash(
            "provenance.scenario.sha256",
            &self.provenance.scenario.sha256,
        );
        let t = &self.totals;
        v.fraction("totals.error_rate", t.error_rate);
        v.rate("totals.requests_per_s", t.requests_per_s);
        v.rate("totals.output_tokens_per_s", t.output_tokens_per_s);
        v.rate("totals.goodput_per_s", t.goodput_per_s);
        if t.ok.checked_add(t.failed) != Some(t.requests) {
            v.fail("totals.failed", "ok + failed is not the number of requests");
        }
        for (i, s) in self.steps.iter().enumerate() {
            let f = |k: &str| format!("steps[{i}].{k}");
            v.fraction(&f("success_rate"), s.success_rate);
            for (k, d) in [
                ("ttfb_ms", &s.ttfb_ms),
                ("first_event_ms", &s.first_event_ms),
                ("ttft_ms", &s.ttft_ms),
                ("e2e_ms", &s.e2e_ms),
                ("stream_end_ms", &s.stream_end_ms),
                ("tpot_ms", &s.tpot_ms),
                ("itl_ms", &s.itl_ms),
            ] {
                for (p, x) in [
                    ("p50", d.p50),
                    ("p90", d.p90),
                    ("p95", d.p95),
                    ("p99", d.p99),
                ] {
                    if let Some(x) = x {
                        v.latency(&f(&format!("{k}.{p}")), x);
                    }
                }
            }
            v.rate(&f("throughput.requests_per_s"), s.throughput.requests_per_s);
            v.rate(
                &f("throughput.output_tokens_per_s"),
                s.throughput.output_tokens_per_s,
            );
            v.rate(&f("throughput.goodput_per_s"), s.throughput.goodput_per_s);
        }
        v.blocks("blocks", &self.blocks);
        v.done()
    }

    /// When nothing (or nothing of some step) succeeded, what to tell the
    /// user: the dominant error class and what the server said.
    pub fn failure_diagnosis(&self) -> Option<String> {
        if self.totals.requests == 0 {
            return Some(if self.provenance.warmup_s > 0.0 {
                format!(
                    "nothing was measured: every request fell inside the {}s warm-up, or none was sent",
                    self.provenance.warmup_s
                )
            } else {
                "nothing was measured: no request was sent".to_string()
            });
        }
        let dead: Vec<&StepResult> = self
            .steps
            .iter()
            .filter(|s| s.requests > 0 && s.ok == 0)
            .collect();
        if dead.is_empty() {
            return None;
        }
        let what = if self.totals.ok == 0 {
            format!(
                "every request failed ({} of {})",
                self.totals.failed, self.totals.requests
            )
        } else {
            format!(
                "every request of step{} {} failed",
                if dead.len() > 1 { "s" } else { "" },
                dead.iter()
                    .map(|s| format!("`{}`", s.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut lines = vec![what];
        for s in dead {
            let Some((class, n)) = s.errors.iter().max_by_key(|(_, n)| **n) else {
                continue;
            };
            let example = self
                .error_examples
                .iter()
                .find(|e| e.step == s.name && &e.class == class)
                .map(|e| format!("; e.g. {}", e.describe()))
                .unwrap_or_default();
            lines.push(format!(
                "  step `{}`: mostly `{class}` ({n} of {}){example}",
                s.name, s.requests
            ));
        }
        Some(lines.join("\n"))
    }

    /// How the run ended (a file that validated always has a known status;
    /// anything else reads as aborted, never as complete).
    pub fn state(&self) -> RunState {
        RunState::parse(&self.status).unwrap_or(RunState::Aborted)
    }

    /// Why the run did not complete, for messages.
    pub fn reason(&self) -> &str {
        self.status_reason.as_deref().unwrap_or(&self.status)
    }

    /// What to tell the reader when the generator could not keep up, and why.
    pub fn saturation_note(&self) -> Option<String> {
        let sc = &self.self_check;
        sc.saturated.then(|| match sc.cause.as_deref() {
            Some("machine") => "the machine running the load was busy with other work and starved the generator: latencies may measure that, not the target".to_string(),
            _ => "the load generator itself was saturated (its own CPU or event loop): latencies may measure it, not the target".to_string(),
        })
    }

    /// True if the generator reported itself saturated.
    pub fn saturated(&self) -> bool {
        self.self_check.saturated
    }
}
