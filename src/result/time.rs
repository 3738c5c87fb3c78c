//! Time-resolved results: the load shape as run, per-stage summaries
//! (every metric per step, with mergeable histograms), a time series of
//! windows, open-loop arrival accounting and the workflow mix. What a spike
//! and a soak have to say over those windows (recovery, drift) is
//! [`super::dynamics`].
//!
//! Windows and stages hold measured requests only, assigned by start time,
//! so adding their histograms reproduces the run's exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::passes::{
    build_blocks, step_hists, step_results, unreadable, workflow_result, Part, Span,
};
use super::{StepResult, Totals, WorkflowResult};
use crate::engine::spill::Samples;
use crate::engine::{LoadTrace, RunOutput, Sample, WindowLoad};
use crate::error::UserError;
use crate::scenario::{LoadSpec, Model, ResponseKind, Scenario};
use crate::stats::LatencyHist;

/// A stage below this share of its intended load is under-delivered.
pub const DELIVERY_FLOOR: f64 = 0.97;
/// The load as it was planned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadInfo {
    /// `fixed`, `closed` or `open`.
    pub model: String,
    /// Open loop: `constant`, `poisson` or `gamma:<shape>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival: Option<String>,
    /// Open loop: most workflows in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Think time between iterations.
    pub think_time: String,
    /// Window length of the time series, seconds.
    pub window_s: f64,
    /// The stages, in order (empty for a fixed load).
    #[serde(default)]
    pub stages: Vec<StagePlan>,
}

/// One planned stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StagePlan {
    /// Name (or `stage N`).
    pub name: String,
    /// From the run's start, seconds.
    pub start_s: f64,
    /// From the run's start, seconds.
    pub end_s: f64,
    /// Target at its start.
    pub from: f64,
    /// Target at its end.
    pub to: f64,
}

/// One stage's figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageResult {
    /// Index into `load.stages`.
    pub index: u32,
    /// Name.
    pub name: String,
    /// From the run's start, ms.
    pub start_ms: f64,
    /// From the run's start, ms.
    pub end_ms: f64,
    /// Mean intended load: users, or starts per second.
    pub intended: f64,
    /// Mean achieved load: users active, or starts per second.
    pub achieved: f64,
    /// achieved / intended.
    pub delivered: f64,
    /// Below [`DELIVERY_FLOOR`]: the stage did not get the load it asked for.
    pub under_delivered: bool,
    /// All steps together.
    pub totals: Totals,
    /// Per step, with histograms (chunk gaps are pooled per run, not per stage).
    pub steps: Vec<StepResult>,
    /// The stage cut into time blocks, for a gate that judges it.
    #[serde(default)]
    pub blocks: Vec<super::Block>,
}

/// One window of the time series.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowResult {
    /// 0-based.
    pub index: u32,
    /// From the run's start, ms.
    pub start_ms: f64,
    /// From the run's start, ms.
    pub end_ms: f64,
    /// Inside the warm-up: no measured requests.
    pub warmup: bool,
    /// A merge of shards: not every shard was running yet in this window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Measured requests started in it.
    pub requests: u64,
    /// Of which failed.
    pub failed: u64,
    /// Failures by class.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// Requests started per second.
    pub requests_per_s: f64,
    /// Output tokens of those requests per second.
    pub output_tokens_per_s: f64,
    /// TTFT percentiles of streamed requests (null when none or +∞).
    pub ttft_p50_ms: Option<f64>,
    /// TTFT p90.
    pub ttft_p90_ms: Option<f64>,
    /// TTFT p99.
    pub ttft_p99_ms: Option<f64>,
    /// TPOT p50.
    pub tpot_p50_ms: Option<f64>,
    /// TPOT p90.
    pub tpot_p90_ms: Option<f64>,
    /// E2E p50.
    pub e2e_p50_ms: Option<f64>,
    /// E2E p90.
    pub e2e_p90_ms: Option<f64>,
    /// Load intended and achieved, and the generator's health.
    pub load: WindowLoad,
    /// Serialized histograms of all steps together, for exact merging.
    pub histograms: WindowHistograms,
}

/// A window's histograms (see [`super::HIST_ENCODING`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowHistograms {
    /// TTFT of streamed requests.
    pub ttft: String,
    /// TPOT.
    pub tpot: String,
    /// E2E.
    pub e2e: String,
    /// Failures counted in each (+∞).
    pub failures: u64,
}

/// Open-loop accounting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArrivalResult {
    /// Arrivals due.
    pub due: u64,
    /// Started on time.
    pub started: u64,
    /// Not started: the in-flight cap was reached.
    pub missed_cap: u64,
    /// Not started: the generator could not start them on time.
    pub missed_late: u64,
    /// Not started: held back while the target asked to wait
    /// (`Retry-After`) or kept failing (the back-off of an open loop).
    #[serde(default)]
    pub missed_held: u64,
    /// started / due.
    pub achieved_ratio: f64,
    /// Lateness of started arrivals, p50, ms.
    pub lateness_p50_ms: Option<f64>,
    /// Lateness p99, ms.
    pub lateness_p99_ms: Option<f64>,
}

/// One workflow of the mix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkflowMix {
    /// Its name.
    pub name: String,
    /// Its weight in the scenario.
    pub weight: f64,
    /// Its share of the measured iterations.
    pub share: f64,
    /// Its iterations.
    pub result: WorkflowResult,
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

/// The planned load.
pub(super) fn load_info(load: &LoadSpec) -> LoadInfo {
    let (model, arrival, cap, stages) = match &load.shape {
        None => ("fixed", None, None, Vec::new()),
        Some(s) => {
            let mut from = 0.0;
            let stages = s
                .bounds()
                .into_iter()
                .zip(&s.stages)
                .enumerate()
                .map(|(i, ((a, b), st))| {
                    let p = StagePlan {
                        name: st.label(i),
                        start_s: a.as_secs_f64(),
                        end_s: b.as_secs_f64(),
                        from,
                        to: st.target,
                    };
                    from = st.target;
                    p
                })
                .collect();
            let open = s.model == Model::Open;
            (
                s.model.as_str(),
                open.then(|| s.arrival.label()),
                open.then_some(s.max_in_flight),
                stages,
            )
        }
    };
    LoadInfo {
        model: model.into(),
        arrival,
        max_in_flight: cap,
        think_time: load.think_time.label(),
        window_s: load.window.as_secs_f64(),
        stages,
    }
}

/// Per-stage summaries (stages of zero length are jumps, not stages to
/// report); a few passes over the records per stage.
pub(super) fn stages(
    sc: &Scenario,
    load: &LoadSpec,
    trace: &LoadTrace,
    src: &Samples,
) -> Result<Vec<StageResult>, UserError> {
    let Some(shape) = &load.shape else {
        return Ok(Vec::new());
    };
    let open = shape.model == Model::Open;
    let bounds = shape.bounds();
    // A request the stop caught just after the last stage's end is the
    // last stage's: every measured request is in exactly one stage.
    let last = bounds.iter().rposition(|(a, b)| b > a);
    let mut out = Vec::new();
    for (i, ((a, b), st)) in bounds.into_iter().zip(&shape.stages).enumerate() {
        if b <= a {
            continue;
        }
        let to = if Some(i) == last { Duration::MAX } else { b };
        let part = Part { from: a, to };
        let secs = (b - a).as_secs_f64();
        let (hists, span) = step_hists(sc, src, part)?;
        let (mut steps, mut totals) = step_results(sc, hists, &[], secs);
        // Throughput is what arrived in the stage, whenever its requests
        // started: a stage can never show more than was received in it.
        let received = received_tokens(sc, src, a, b)?;
        for (s, n) in steps.iter_mut().zip(&received) {
            s.throughput.output_tokens_per_s = *n / secs;
        }
        totals.output_tokens_per_s = received.iter().sum::<f64>() / secs;
        let blocks = build_blocks(sc, src, part, span, load.blocks)?;
        let sl = trace.stages.get(i).cloned().unwrap_or_default();
        let (intended, achieved) = if open {
            (sl.arrivals.0 as f64 / secs, sl.arrivals.1 as f64 / secs)
        } else {
            (sl.intended, sl.users)
        };
        let delivered = if intended > 0.0 {
            achieved / intended
        } else {
            1.0
        };
        out.push(StageResult {
            index: i as u32,
            name: st.label(i),
            start_ms: ms(a),
            end_ms: ms(b),
            intended,
            achieved,
            delivered,
            under_delivered: intended > 0.0 && delivered < DELIVERY_FLOOR,
            totals,
            steps,
            blocks,
        });
    }
    Ok(out)
}

/// Output tokens per step received between `a` and `b`: each successful
/// request's tokens spread evenly from its first token to its last (the
/// records keep no per-token times), the part inside the stretch counted.
fn received_tokens(
    sc: &Scenario,
    src: &Samples,
    a: Duration,
    b: Duration,
) -> Result<Vec<f64>, UserError> {
    let mut out = vec![0.0; sc.steps.len()];
    let (a, b) = (a.as_secs_f64(), b.as_secs_f64());
    src.for_each(|s| {
        if s.warmup || s.error.is_some() {
            return;
        }
        let n = s.output_tokens() as f64;
        let (Some(first), Some(last), Some(slot)) =
            (s.ttft, s.e2e, out.get_mut(usize::from(s.step)))
        else {
            return;
        };
        let (first, last) = (
            (s.start + first).as_secs_f64(),
            (s.start + last).as_secs_f64(),
        );
        let share = if last > first {
            ((last.min(b) - first.max(a)) / (last - first)).clamp(0.0, 1.0)
        } else if (a..b).contains(&last) {
            1.0
        } else {
            0.0
        };
        *slot += n * share;
    })
    .map_err(|e| UserError::Environment {
        message: format!("cannot read the run's records back: {e}"),
        hint: None,
    })?;
    Ok(out)
}

#[derive(Default)]
struct WindowHists {
    ttft: LatencyHist,
    tpot: LatencyHist,
    e2e: LatencyHist,
    requests: u64,
    failed: u64,
    tokens: u64,
    errors: BTreeMap<String, u64>,
}

impl WindowHists {
    fn add(&mut self, s: &Sample, kind: ResponseKind) {
        self.requests += 1;
        match s.error {
            Some(e) => {
                self.failed += 1;
                *self.errors.entry(e.name()).or_default() += 1;
                if kind == ResponseKind::Sse {
                    self.ttft.record_failure();
                    self.tpot.record_failure();
                }
                self.e2e.record_failure();
            }
            None => {
                if let Some(t) = s.ttft {
                    self.ttft.record(t);
                }
                if let Some(t) = s.tpot() {
                    self.tpot.record(t);
                }
                if let Some(t) = s.e2e {
                    self.e2e.record(t);
                }
                self.tokens = self.tokens.saturating_add(s.output_tokens());
            }
        }
    }
}

/// Windows summarised per pass over the records: their histograms are
/// what a pass holds in memory.
const WINDOWS_PER_PASS: usize = 32;

/// The time series: one entry per window from the run's start, measured
/// requests by start time.
pub(super) fn windows(
    sc: &Scenario,
    load: &LoadSpec,
    trace: &LoadTrace,
    src: &Samples,
    span: Option<Span>,
) -> Result<Vec<WindowResult>, UserError> {
    let width = load.window.max(Duration::from_secs(1));
    let last = span.map_or(0, |s| index(s.last_start, width) + 1);
    let n = last.max(trace.windows.len());
    let mut out = Vec::with_capacity(n);
    for first in (0..n).step_by(WINDOWS_PER_PASS) {
        let upto = (first + WINDOWS_PER_PASS).min(n);
        let mut hists: Vec<WindowHists> = (first..upto).map(|_| WindowHists::default()).collect();
        src.for_each(|s| {
            let w = index(s.start, width);
            if s.warmup || w < first || w >= upto {
                return;
            }
            if let Some(step) = sc.steps.get(usize::from(s.step)) {
                hists[w - first].add(s, step.response);
            }
        })
        .map_err(unreadable)?;
        for (k, h) in hists.into_iter().enumerate() {
            out.push(window(first + k, width, load, trace, &h));
        }
    }
    Ok(out)
}

fn window(
    w: usize,
    width: Duration,
    load: &LoadSpec,
    trace: &LoadTrace,
    h: &WindowHists,
) -> WindowResult {
    let start = width * w as u32;
    let secs = width.as_secs_f64();
    let q = |h: &LatencyHist, p: f64| finite(h.quantile_ms(p));
    WindowResult {
        index: w as u32,
        start_ms: ms(start),
        end_ms: ms(start + width),
        warmup: start + width <= load.warmup,
        partial: false,
        requests: h.requests,
        failed: h.failed,
        errors: h.errors.clone(),
        requests_per_s: h.requests as f64 / secs,
        output_tokens_per_s: h.tokens as f64 / secs,
        ttft_p50_ms: q(&h.ttft, 0.5),
        ttft_p90_ms: q(&h.ttft, 0.9),
        ttft_p99_ms: q(&h.ttft, 0.99),
        tpot_p50_ms: q(&h.tpot, 0.5),
        tpot_p90_ms: q(&h.tpot, 0.9),
        e2e_p50_ms: q(&h.e2e, 0.5),
        e2e_p90_ms: q(&h.e2e, 0.9),
        load: trace.windows.get(w).cloned().unwrap_or_default(),
        histograms: WindowHistograms {
            ttft: h.ttft.encode(),
            tpot: h.tpot.encode(),
            e2e: h.e2e.encode(),
            failures: h.failed,
        },
    }
}

fn index(t: Duration, width: Duration) -> usize {
    (t.as_nanos() / width.as_nanos()) as usize
}

/// Open-loop accounting, when the run was open.
pub(super) fn arrivals(out: &RunOutput) -> Option<ArrivalResult> {
    let a = out.trace.arrivals.as_ref()?;
    Some(ArrivalResult {
        due: a.due,
        started: a.started,
        missed_cap: a.missed_cap,
        missed_late: a.missed_late,
        missed_held: a.missed_held,
        achieved_ratio: if a.due == 0 {
            1.0
        } else {
            a.started as f64 / a.due as f64
        },
        lateness_p50_ms: finite(a.lateness.quantile_ms(0.5)),
        lateness_p99_ms: finite(a.lateness.quantile_ms(0.99)),
    })
}

/// Per workflow of a mix (nothing for a single workflow: `workflow` says it all).
pub(super) fn workflows(
    sc: &Scenario,
    src: &Samples,
    window_s: f64,
) -> Result<Vec<WorkflowMix>, UserError> {
    if sc.workflows.len() <= 1 {
        return Ok(Vec::new());
    }
    let mut mix = Vec::with_capacity(sc.workflows.len());
    for (i, w) in sc.workflows.iter().enumerate() {
        let id = u16::try_from(i).unwrap_or(u16::MAX);
        mix.push(WorkflowMix {
            name: w.name.clone(),
            weight: w.weight,
            share: 0.0,
            result: workflow_result(src, Part::ALL, Some(id), window_s)?,
        });
    }
    let total: u64 = mix.iter().map(|m| m.result.iterations).sum();
    for m in &mut mix {
        m.share = if total == 0 {
            0.0
        } else {
            m.result.iterations as f64 / total as f64
        };
    }
    Ok(mix)
}
