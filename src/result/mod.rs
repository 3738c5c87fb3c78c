//! The result file: schema-versioned JSON with summaries, serialized
//! histograms, time blocks (the gate's unit of evidence) and provenance.
//!
//! `schema/result.schema.json` describes it and a test validates real results
//! against it. Failed requests are +∞ in every latency distribution.

pub mod baseline;
mod build;
pub mod calibrate;
pub mod capacity;
pub mod duet;
pub mod dynamics;
pub mod history;
pub mod invented;
pub mod lengths;
pub mod measure;
mod passes;
pub mod requests;
pub mod resources;
pub mod server;
pub mod shard;
pub mod time;
pub mod usage;
mod validate;
pub mod values;

pub use build::build;
pub use measure::{measure, Current, Measured};
pub(crate) use validate::Validator;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::SelfCheck;
use crate::error::UserError;
use crate::scenario::{ResponseKind, Slo};
use crate::stats::Dist;

/// Version of the result format; bumped on any incompatible change.
/// Version 2 added the load shape, stages, windows, arrivals, dynamics
/// and the workflow mix; version 1 files are still read.
pub const SCHEMA_VERSION: u32 = 2;
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
    pub status: RunState,
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
    /// The slowest successful measured requests, with the trace id each
    /// was sent under (`traceparent`), to find them in the server's tracing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slowest: Vec<SlowRequest>,
    /// The generator's own health.
    pub self_check: SelfCheck,
    /// Objectives goodput was counted against.
    pub slo: Slo,
    /// The scenario's gate policy, so `compare` needs only files.
    pub gate: crate::policy::Policy,
    /// The load as planned: model, stages, window (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<time::LoadInfo>,
    /// Per stage of a shaped load (schema 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<time::StageResult>,
    /// The run as a time series of windows (schema 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<time::WindowResult>,
    /// Open-loop arrivals due, started and missed (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<time::ArrivalResult>,
    /// Writers' parallel books and a replayed trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<lengths::Traffic>,
    /// Spike recovery and drift (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamics: Option<dynamics::Dynamics>,
    /// Per workflow of a weighted mix (schema 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workflows: Vec<time::WorkflowMix>,
    /// A shard of a distributed run: which, of which plan, how late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<shard::ShardInfo>,
    /// A merge of shards: the per-shard table and what is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<shard::Merged>,
    /// The scenario's hypotheses, judged by `compare`, `gate` and `report`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypotheses: Vec<crate::scenario::hypothesis::Hypothesis>,
    /// The server's own metrics, scraped during the run (`--server-metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_metrics: Option<server::ServerMetrics>,
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

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RunState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RunState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        RunState::parse(&word).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`status` is `{word}`; it must be `complete`, `partial` or `aborted`"
            ))
        })
    }
}

/// A slow request and where to find it in the server's traces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlowRequest {
    /// Step name.
    pub step: String,
    /// Its `X-Request-Id`.
    pub request_id: String,
    /// Its W3C trace id (32 hex digits).
    pub trace_id: String,
    /// Time to first token, ms (streamed steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// End to end, ms.
    pub e2e_ms: f64,
}

/// How many slow requests a result keeps.
pub const SLOWEST: usize = 5;

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
    /// A variable swept over the iterations (`--sweep NAME=V1,V2,...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<String>,
    /// `--time-scale`: the factor on the scenario's own times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_scale: Option<f64>,
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
    /// Streams the step stopped by design mid-stream (`cancel_after_tokens`,
    /// `cancel_after`): counted as successful, with what arrived.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cancelled: u64,
    /// Streamed steps: TTFT (ms) against the prompt's length (characters of
    /// the request body), fitted over every successful request — the
    /// prefill cost, when prompt lengths varied (longest ≥ 1.5× shortest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<crate::stats::fit::Line>,
    /// Prompt tokens per character of the request body, from the server's
    /// `usage.prompt_tokens` (over the requests that reported it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_per_char: Option<f64>,
    /// Streams resumed after their break (`resume = "last-event-id"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeResult>,
    /// Prompt and output lengths asked and realised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lengths: Option<lengths::LengthsResult>,
    /// TTFT of first and repeated shared prefixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<lengths::PrefixResult>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How resumed streams joined the ones they continued.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResumeResult {
    /// Streams resumed with `Last-Event-ID`.
    pub resumed: u64,
    /// Reconnect to the first content event of the resumed stream, median, ms.
    pub ttft_p50_ms: Option<f64>,
    /// Events delivered twice (ids at or before the break).
    pub duplicates: u64,
    /// Ids skipped between the break and the resumed events.
    pub lost: u64,
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
    /// Mean request body of successful requests, characters: the prompt's size
    /// (what the prefill analysis sets TTFT against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_chars_mean: Option<f64>,
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

const FILE_TYPE: crate::jsonfile::FileType = crate::jsonfile::FileType {
    what: "result",
    kind: KIND,
    version: SCHEMA_VERSION,
    oldest: 1,
    stale_hint: "re-run `flora-gate run` with this version to make a current result",
};

impl RunResult {
    /// The load a stage held (its target the same at start and end, above
    /// zero, with measured requests), if it held one: a level to compare.
    pub fn held_level(&self, s: &time::StageResult) -> Option<f64> {
        let p = self.load.as_ref()?.stages.get(s.index as usize)?;
        ((p.from - p.to).abs() < 1e-9 && p.to > 0.0 && s.totals.requests > 0).then_some(p.to)
    }

    /// Write as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), UserError> {
        crate::jsonfile::write(path, self, "result")
    }

    /// Read a result file, refusing other kinds and schema versions.
    pub fn read(path: &Path) -> Result<Self, UserError> {
        Self::parse(&crate::error::read_to_string(path)?, path)
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
        self.status
    }

    /// Why the run did not complete, for messages.
    pub fn reason(&self) -> &str {
        self.status_reason
            .as_deref()
            .unwrap_or(self.status.as_str())
    }

    /// What to tell the reader when the generator could not keep up, and why.
    pub fn saturation_note(&self) -> Option<String> {
        let sc = &self.self_check;
        sc.saturated.then(|| match sc.cause.as_deref() {
            Some("machine") => "the machine running the load was busy with other work and starved the generator: latencies may measure that, not the target".to_string(),
            _ => "the load generator itself was saturated (its own CPU or event loop): latencies may measure it, not the target".to_string(),
        })
    }

    /// The part of the run a gate judges: the whole run, or the stage the
    /// policy names, as a result of its own (its steps, totals and blocks).
    pub fn gated_part(
        &self,
        stage: Option<&str>,
    ) -> Result<std::borrow::Cow<'_, RunResult>, String> {
        let Some(name) = stage else {
            return Ok(std::borrow::Cow::Borrowed(self));
        };
        let Some(st) = self.stages.iter().find(|s| s.name == name) else {
            return Err(if self.stages.is_empty() {
                format!("the policy gates the stage `{name}`, and this run has no stages")
            } else {
                format!(
                    "the policy gates the stage `{name}`; this run's stages are {}",
                    self.stages
                        .iter()
                        .map(|s| format!("`{}`", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        };
        let mut part = self.clone();
        part.steps = st.steps.clone();
        part.totals = st.totals.clone();
        part.blocks = st.blocks.clone();
        part.window = Window {
            start_ms: st.start_ms,
            end_ms: st.end_ms,
            duration_s: (st.end_ms - st.start_ms) / 1000.0,
        };
        Ok(std::borrow::Cow::Owned(part))
    }

    /// When the judged part of the run got less load than it asked for:
    /// the gated stage (or any stage, when the whole run is judged) below
    /// [`time::DELIVERY_FLOOR`], or open-loop arrivals missed beyond it.
    pub fn under_delivery_note(&self, stage: Option<&str>) -> Option<String> {
        let short: Vec<String> = self
            .stages
            .iter()
            .filter(|s| s.under_delivered && stage.is_none_or(|n| n == s.name))
            .map(|s| {
                format!(
                    "`{}` {:.0}% of {:.0}",
                    s.name,
                    s.delivered * 100.0,
                    s.intended
                )
            })
            .collect();
        if !short.is_empty() {
            return Some(format!(
                "under-delivered: {} (below {:.0}% of the intended load)",
                short.join(", "),
                time::DELIVERY_FLOOR * 100.0
            ));
        }
        let a = self.arrivals.as_ref().filter(|_| stage.is_none())?;
        (a.achieved_ratio < time::DELIVERY_FLOOR).then(|| {
            format!(
                "under-delivered: {} of {} arrivals started ({:.1}%; {} at the in-flight cap, {} too late, {} held back by the target's failures or `Retry-After`)",
                a.started,
                a.due,
                a.achieved_ratio * 100.0,
                a.missed_cap,
                a.missed_late,
                a.missed_held
            )
        })
    }

    /// True if the generator reported itself saturated.
    pub fn saturated(&self) -> bool {
        self.self_check.saturated
    }
}
