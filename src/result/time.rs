//! Time-resolved results: the load shape as run, per-stage summaries
//! (every metric per step, with mergeable histograms), a time series of
//! windows, open-loop arrival accounting, the workflow mix, and what a ramp,
//! a spike and a soak have to say (delivery, recovery, drift).
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
/// After a spike, TTFT p90 counts as recovered within this factor of its
/// level before the spike.
pub const RECOVERY_BAND: f64 = 1.2;
/// A drift is flagged when significant and steeper than this, % per hour.
pub const DRIFT_FLAG_PCT_PER_H: f64 = 5.0;
/// …and when the fitted change over the measured span is more than this
/// many percent: below it a slope is the measurement's own resolution (a
/// busy machine moves a short run's latencies by a few tenths of a percent).
pub const DRIFT_MIN_CHANGE_PCT: f64 = 2.0;
/// Confidence of the drift interval (two-sided). High, because windows of
/// one run are many and a false soak alarm costs a night.
pub const DRIFT_CONFIDENCE: f64 = 0.999;

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

/// What the shape of the run says beyond its percentiles.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Dynamics {
    /// After each upward jump.
    #[serde(default)]
    pub recovery: Vec<Recovery>,
    /// Slopes over the run (soaks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
}

/// Recovery after a spike.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recovery {
    /// The jump's stage.
    pub stage: String,
    /// When the target jumped, s from the run's start.
    pub jump_s: f64,
    /// When the clock starts: the end of the spike (the next drop), or the jump.
    pub from_s: f64,
    /// TTFT p90 before the jump, ms.
    pub before_ttft_p90_ms: Option<f64>,
    /// Seconds until a window's TTFT p90 was within [`RECOVERY_BAND`] of
    /// the level before; `null`: not recovered by the end.
    pub recovered_after_s: Option<f64>,
}

/// A slope with its interval, % of the mean per hour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Slope {
    /// Estimate.
    pub pct_per_h: f64,
    /// Lower bound of the [`DRIFT_CONFIDENCE`] interval.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Significant, steeper than [`DRIFT_FLAG_PCT_PER_H`], and changing
    /// by more than [`DRIFT_MIN_CHANGE_PCT`] over the run.
    pub flagged: bool,
}

/// Drift over a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Drift {
    /// Windows the fit used.
    pub windows: u32,
    /// Of the windowed TTFT p50.
    pub ttft_p50: Option<Slope>,
    /// Of the windowed TPOT p50.
    pub tpot_p50: Option<Slope>,
    /// The generator's resident memory, MiB per hour.
    pub generator_rss_mib_per_h: Option<f64>,
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

fn ms(d: Duration) -> f64 {
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

/// Recovery after each upward jump, and drift over the measured windows.
pub(super) fn dynamics(load: &LoadSpec, windows: &[WindowResult]) -> Option<Dynamics> {
    let mut d = Dynamics::default();
    if let Some(shape) = &load.shape {
        let bounds = shape.bounds();
        let mut from = 0.0;
        for (i, (st, (a, b))) in shape.stages.iter().zip(&bounds).enumerate() {
            // A jump from a load (not the start from nothing) by half as
            // much again or more is a spike; a step of a staircase is not.
            if a == b && st.target >= 1.5 * from && from > 0.0 {
                // The spike ends where the target next drops.
                let mut level = st.target;
                let mut end = *a;
                for (s2, (a2, _)) in shape.stages.iter().zip(&bounds).skip(i + 1) {
                    if s2.target < level {
                        end = *a2;
                        break;
                    }
                    level = s2.target;
                }
                d.recovery.push(recovery(st.label(i), *a, end, windows));
            }
            from = st.target;
        }
    }
    d.drift = drift(hold_span(load), windows);
    (!d.recovery.is_empty() || d.drift.is_some()).then_some(d)
}

fn recovery(stage: String, jump: Duration, from: Duration, windows: &[WindowResult]) -> Recovery {
    let jump_ms = ms(jump);
    let from_ms = ms(from);
    // The level before: the windows wholly before the jump (up to three).
    let before: Vec<f64> = windows
        .iter()
        .filter(|w| !w.warmup && w.end_ms <= jump_ms)
        .rev()
        .take(3)
        .filter_map(|w| w.ttft_p90_ms)
        .collect();
    let before = (!before.is_empty()).then(|| {
        let mut b = before;
        b.sort_by(f64::total_cmp);
        b[b.len() / 2]
    });
    let recovered_after_s = before.and_then(|level| {
        windows
            .iter()
            .filter(|w| w.start_ms >= from_ms && w.requests > 0)
            .find(|w| w.ttft_p90_ms.is_some_and(|p| p <= level * RECOVERY_BAND))
            .map(|w| ((w.start_ms - from_ms) / 1000.0).max(0.0))
    });
    Recovery {
        stage,
        jump_s: jump_ms / 1000.0,
        from_s: from_ms / 1000.0,
        before_ttft_p90_ms: before,
        recovered_after_s,
    }
}

/// Ordinary least squares of `y` on `x`: slope, its standard error, mean of y.
fn ols(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 4 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 || my <= 0.0 {
        return None;
    }
    let slope = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
    let intercept = my - slope * mx;
    let rss: f64 = points
        .iter()
        .map(|p| (p.1 - intercept - slope * p.0).powi(2))
        .sum();
    let se = (rss / (n - 2.0) / sxx).sqrt();
    Some((slope, se, my))
}

fn slope_of(points: &[(f64, f64)]) -> Option<Slope> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let (slope, se, mean) = ols(points)?;
    let t = StudentsT::new(0.0, 1.0, points.len() as f64 - 2.0)
        .ok()?
        .inverse_cdf(1.0 - (1.0 - DRIFT_CONFIDENCE) / 2.0);
    let pct = |v: f64| v / mean * 100.0;
    let (est, low, high) = (pct(slope), pct(slope - t * se), pct(slope + t * se));
    let (first, last) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let change = est.abs() * (last - first);
    Some(Slope {
        pct_per_h: est,
        low,
        high,
        flagged: (low > 0.0 || high < 0.0)
            && est.abs() > DRIFT_FLAG_PCT_PER_H
            && change > DRIFT_MIN_CHANGE_PCT,
    })
}

/// Fewest windows a drift is fitted over.
pub const DRIFT_MIN_WINDOWS: usize = 10;
/// Shortest hold a drift is fitted over: a slope per hour from seconds is
/// an extrapolation, not a soak's verdict.
pub const DRIFT_MIN_SPAN_MS: f64 = 60_000.0;

/// The stretch of the run where the load held still, in ms from the start:
/// the longest stage whose target is the one before it (a soak's hold), or
/// the whole run at a fixed load. An empty stretch when the shape has no
/// hold (a ramp, say): no drift is fitted over a changing load.
fn hold_span(load: &LoadSpec) -> (f64, f64) {
    let Some(shape) = &load.shape else {
        return (0.0, f64::INFINITY);
    };
    let mut best = (0.0, 0.0);
    let mut from = None;
    for (st, (a, b)) in shape.stages.iter().zip(shape.bounds()) {
        if from == Some(st.target) && st.target > 0.0 && b > a && ms(b) - ms(a) > best.1 - best.0 {
            best = (ms(a), ms(b));
        }
        from = Some(st.target);
    }
    best
}

/// Slopes of windowed TTFT/TPOT p50 and the generator's memory, per hour,
/// over the windows of the hold `(from, to)` (ms) after the warm-up.
fn drift((from, to): (f64, f64), windows: &[WindowResult]) -> Option<Drift> {
    let used: Vec<&WindowResult> = windows
        .iter()
        .filter(|w| !w.warmup && w.requests >= 5 && w.start_ms >= from && w.end_ms <= to)
        .collect();
    let span_ms = match (used.first(), used.last()) {
        (Some(a), Some(b)) => b.end_ms - a.start_ms,
        _ => 0.0,
    };
    if used.len() < DRIFT_MIN_WINDOWS || span_ms < DRIFT_MIN_SPAN_MS {
        return None;
    }
    let hour = |w: &WindowResult| (w.start_ms + w.end_ms) / 2.0 / 3_600_000.0;
    let series = |f: fn(&WindowResult) -> Option<f64>| -> Vec<(f64, f64)> {
        used.iter()
            .filter_map(|w| f(w).map(|v| (hour(w), v)))
            .collect()
    };
    let rss: Vec<(f64, f64)> = used
        .iter()
        .filter_map(|w| w.load.rss_mib.map(|v| (hour(w), v)))
        .collect();
    Some(Drift {
        windows: used.len() as u32,
        ttft_p50: slope_of(&series(|w| w.ttft_p50_ms)),
        tpot_p50: slope_of(&series(|w| w.tpot_p50_ms)),
        generator_rss_mib_per_h: ols(&rss).map(|(s, _, _)| s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(i: u32, ttft: f64) -> WindowResult {
        WindowResult {
            index: i,
            start_ms: f64::from(i) * 10_000.0,
            end_ms: f64::from(i + 1) * 10_000.0,
            warmup: false,
            partial: false,
            requests: 100,
            failed: 0,
            errors: BTreeMap::new(),
            requests_per_s: 10.0,
            output_tokens_per_s: 100.0,
            ttft_p50_ms: Some(ttft),
            ttft_p90_ms: Some(ttft * 1.5),
            ttft_p99_ms: None,
            tpot_p50_ms: Some(10.0),
            tpot_p90_ms: None,
            e2e_p50_ms: None,
            e2e_p90_ms: None,
            load: WindowLoad::default(),
            histograms: WindowHistograms::default(),
        }
    }

    #[test]
    fn a_steady_series_has_no_drift_and_a_rising_one_is_flagged() {
        // ±1% noise around 100 ms over two minutes.
        let all = (0.0, f64::INFINITY);
        // Fewer than ten windows say nothing per hour.
        assert!(drift(all, &(0..9).map(|i| window(i, 100.0)).collect::<Vec<_>>()).is_none());
        let flat: Vec<WindowResult> = (0..36)
            .map(|i| window(i, 100.0 + if i % 2 == 0 { 1.0 } else { -1.0 }))
            .collect();
        let d = drift(all, &flat).expect("present");
        assert!(!d.ttft_p50.expect("present").flagged);
        assert!(!d.tpot_p50.expect("present").flagged);
        // +2% per minute of the starting level, ±0.3% noise (a window's
        // median over hundreds of requests moves less).
        let rising: Vec<WindowResult> = (0..36)
            .map(|i| {
                window(
                    i,
                    100.0 * (1.0 + 0.02 * f64::from(i) / 6.0) + if i % 2 == 0 { 0.3 } else { -0.3 },
                )
            })
            .collect();
        let s = drift(all, &rising)
            .expect("present")
            .ttft_p50
            .expect("present");
        // Only the hold counts: the same rise over a ramp before it is not drift.
        let d = drift((120_000.0, 200_000.0), &rising);
        assert!(d.is_none(), "eight windows of hold are too few: {d:?}");
        assert!(s.flagged, "{s:?}");
        // Clearly rising but by 1% over the run: a busy machine's doing, not a soak's.
        let creeping: Vec<WindowResult> = (0..36)
            .map(|i| window(i, 100.0 * (1.0 + 0.01 * f64::from(i) / 35.0)))
            .collect();
        let c = drift(all, &creeping)
            .expect("present")
            .ttft_p50
            .expect("present");
        assert!(c.low > 0.0 && c.pct_per_h > 5.0 && !c.flagged, "{c:?}");
        assert!(s.pct_per_h > 60.0, "{s:?}");
    }

    #[test]
    fn drift_is_fitted_over_the_longest_hold_only() {
        use crate::scenario::shape::{parse_stages, Shape};
        use crate::scenario::{Arrival, LoadSpec, Model};
        let with = |stages: &str| {
            let mut l = LoadSpec::fixed(1, Duration::from_secs(1));
            l.set_shape(Shape {
                model: Model::Closed,
                stages: parse_stages(stages).expect("stages"),
                arrival: Arrival::Constant,
                max_in_flight: 1000,
            });
            l
        };
        assert_eq!(
            hold_span(&with("1m:100,5m:100,1m:0")),
            (60_000.0, 360_000.0)
        );
        assert_eq!(
            hold_span(&with("2m:100,2m:200,2m:0")),
            (0.0, 0.0),
            "a ramp has no hold"
        );
        let fixed = LoadSpec::fixed(8, Duration::from_secs(600));
        assert_eq!(hold_span(&fixed), (0.0, f64::INFINITY));
    }

    #[test]
    fn recovery_is_the_first_window_back_within_the_band() {
        let mut w: Vec<WindowResult> = (0..10).map(|i| window(i, 100.0)).collect();
        for x in &mut w[3..6] {
            x.ttft_p90_ms = Some(600.0);
        }
        w[6].ttft_p90_ms = Some(170.0);
        let r = recovery(
            "spike".into(),
            Duration::from_secs(30),
            Duration::from_secs(30),
            &w,
        );
        assert_eq!(r.before_ttft_p90_ms, Some(150.0));
        assert_eq!(r.recovered_after_s, Some(30.0));
        for x in &mut w[6..] {
            x.ttft_p90_ms = Some(400.0);
        }
        let r = recovery(
            "spike".into(),
            Duration::from_secs(30),
            Duration::from_secs(30),
            &w,
        );
        assert_eq!(r.recovered_after_s, None);
    }
}
