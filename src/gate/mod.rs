//! The gate: from results to a verdict engineers can trust.
//!
//! Two modes. Against a committed baseline of N runs, a metric regresses when
//! the current value lies outside the one-sided prediction interval of the
//! baseline runs on log scale *and* the change is larger than the margin. In
//! duet mode, reference and candidate ran in interleaved blocks of the same
//! job; a one-sided paired t-test on log block ratios plus the margin decides,
//! and a bootstrap interval of the ratio is reported. Gated metrics share one
//! false-alarm budget (Holm); the error rate is an absolute bound.

pub mod duet;
pub mod math;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::UserError;
use crate::policy::metrics::{metric_def, Values, ALL};
use crate::policy::Policy;
use crate::result::baseline::Baseline;
use crate::result::values as metrics;
use crate::result::{RunResult, RunState};

/// Version of the verdict format (2: `ci` is a change, like `change`).
pub const SCHEMA_VERSION: u32 = 2;
/// The `kind` field of a verdict file.
pub const KIND: &str = "flora-gate/verdict";

/// Outcome of one check, and of the whole gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Better beyond the margin, with significance.
    Improved,
    /// Nothing to report.
    Pass,
    /// Worth a look; does not fail.
    Warn,
    /// Regression.
    Fail,
}

impl Status {
    /// An emoji mark for reports.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Improved => "🚀",
            Status::Pass => "✅",
            Status::Warn => "⚠️",
            Status::Fail => "❌",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Improved => "improved",
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        })
    }
}

/// What a verdict compared against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A committed baseline of runs.
    Baseline,
    /// A reference deployment in the same job.
    Duet,
}

impl Mode {
    /// The word in files and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline",
            Mode::Duet => "duet",
        }
    }
}

/// What kind of judgement a check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Relative change against the baseline or the reference.
    Relative,
    /// The error rate against its bound.
    ErrorBound,
    /// An absolute objective.
    Slo,
}

/// One judged metric.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    /// `all`, `workflow` or a step name.
    pub scope: String,
    /// Metric key.
    pub metric: String,
    /// Human label.
    pub label: String,
    /// Display unit.
    pub unit: String,
    /// Counts towards the verdict.
    pub gated: bool,
    /// What was checked.
    pub kind: CheckKind,
    /// Baseline centre (geometric mean of runs) or reference value; the
    /// objective for SLO checks.
    pub baseline: Option<f64>,
    /// Current value; `null` with `current_infinite` when failures reach the percentile.
    pub current: Option<f64>,
    /// The current value is +∞.
    #[serde(default)]
    pub current_infinite: bool,
    /// current / baseline − 1.
    pub change: Option<f64>,
    /// One-sided prediction bound of the baseline runs on the worse side
    /// (baseline mode), or the error-rate bound.
    pub bound: Option<f64>,
    /// Bootstrap 95% interval of the change, candidate / reference − 1, in
    /// the same unit as `change` (duet mode).
    pub ci: Option<[f64; 2]>,
    /// One-sided p-value of "worse".
    pub p_value: Option<f64>,
    /// Significant after Holm (gated) or at α (the rest).
    pub significant: bool,
    /// The margin that applied.
    pub margin: Option<f64>,
    /// The outcome.
    pub status: Status,
    /// Why, in words.
    pub note: String,
}

/// The gate's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// [`KIND`].
    pub kind: String,
    /// `baseline` or `duet`.
    pub mode: Mode,
    /// Overall.
    pub verdict: Status,
    /// One line for the top of a report.
    pub headline: String,
    /// The policy applied.
    pub policy: Policy,
    /// Baseline runs (baseline mode) or block pairs (duet mode).
    pub evidence: usize,
    /// Every check, gated first.
    pub checks: Vec<Check>,
    /// Anything the reader should know (saturated generator, partial run, …).
    pub notes: Vec<String>,
}

const FILE_TYPE: crate::jsonfile::FileType = crate::jsonfile::FileType {
    what: "verdict",
    kind: KIND,
    version: SCHEMA_VERSION,
    stale_hint: "make it again with `flora-gate compare --out`",
};

impl Verdict {
    /// Write as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), UserError> {
        crate::jsonfile::write(path, self, "verdict")
    }

    /// Read a verdict file.
    pub fn read(path: &Path) -> Result<Self, UserError> {
        crate::jsonfile::read(path, &FILE_TYPE)
    }

    /// Gated checks.
    pub fn gated(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.gated)
    }
}

/// Refuse to compare different setups unless forced.
pub fn check_comparable(
    b: &Baseline,
    r: &RunResult,
    force: bool,
) -> Result<Vec<String>, UserError> {
    let mut diffs = Vec::new();
    if b.provenance.scenario.sha256 != r.provenance.scenario.sha256 {
        diffs.push(format!(
            "scenario `{}` ({}) differs from the baseline's `{}` ({})",
            r.provenance.scenario.name,
            crate::scenario::short_hash(&r.provenance.scenario.sha256),
            b.provenance.scenario.name,
            crate::scenario::short_hash(&b.provenance.scenario.sha256)
        ));
    }
    // `--var` changes the workload (a model, `max_tokens`): part of the identity.
    // Files from before variables were recorded hold none and are not compared.
    if !b.provenance.vars.is_empty()
        && !r.provenance.vars.is_empty()
        && b.provenance.vars != r.provenance.vars
    {
        let differing: Vec<String> = b
            .provenance
            .vars
            .keys()
            .chain(r.provenance.vars.keys())
            .filter(|k| b.provenance.vars.get(*k) != r.provenance.vars.get(*k))
            .map(|k| {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or_else(|| "unset".to_string(), |v| v.to_string())
                };
                format!(
                    "{k} = {} (baseline {})",
                    show(r.provenance.vars.get(k)),
                    show(b.provenance.vars.get(k))
                )
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        diffs.push(format!("variables differ: {}", differing.join(", ")));
    }
    if b.provenance.concurrency != r.provenance.concurrency {
        diffs.push(format!(
            "concurrency {} differs from the baseline's {}",
            r.provenance.concurrency, b.provenance.concurrency
        ));
    }
    if diffs.is_empty() || force {
        return Ok(diffs
            .into_iter()
            .map(|d| format!("compared anyway (--force): {d}"))
            .collect());
    }
    Err(UserError::Environment {
        message: format!("the result and the baseline measure different things: {}", diffs.join("; ")),
        hint: Some("refresh the baseline with `flora-gate baseline refresh`, or pass `--force` to compare anyway".into()),
    })
}

fn fin(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

pub(crate) struct Judge<'a> {
    pub(crate) policy: &'a Policy,
}

impl Judge<'_> {
    /// Status of a relative check from its significance and change.
    pub(crate) fn status(
        &self,
        metric: &str,
        gated: bool,
        worse_sig: bool,
        better_sig: bool,
        change: f64,
        higher_is_worse: bool,
    ) -> (Status, String) {
        let margin = self.policy.margin_of(metric);
        let bad = if higher_is_worse { change } else { -change };
        let pct = |x: f64| {
            if x.is_infinite() {
                "∞".to_string()
            } else {
                format!("{:.1}%", x * 100.0)
            }
        };
        if worse_sig && bad.is_infinite() {
            let s = if gated { Status::Fail } else { Status::Warn };
            (
                s,
                "failed requests reach this percentile (they count as ∞)".to_string(),
            )
        } else if worse_sig && bad > margin {
            let s = if gated { Status::Fail } else { Status::Warn };
            (
                s,
                format!(
                    "{} worse, beyond the {} margin and outside run-to-run noise",
                    pct(bad),
                    pct(margin)
                ),
            )
        } else if bad > margin && gated {
            (
                Status::Warn,
                format!(
                    "{} worse, beyond the margin but within run-to-run noise",
                    pct(bad)
                ),
            )
        } else if worse_sig && bad > self.policy.warn_margin && gated {
            (
                Status::Warn,
                format!(
                    "{} worse: significant, under the {} margin",
                    pct(bad),
                    pct(margin)
                ),
            )
        } else if better_sig && -bad > margin {
            (Status::Improved, format!("{} better", pct(-bad)))
        } else {
            (Status::Pass, String::new())
        }
    }
}

/// Absolute objectives and the error bound on the current values of scope `all`.
pub(crate) fn absolute_checks(
    policy: &Policy,
    current: &Values,
    reference_error: Option<f64>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let er = current.get("error_rate").copied().unwrap_or(0.0);
    let (status, note) = if er > policy.max_error_rate {
        (
            Status::Fail,
            format!(
                "{:.2}% of requests failed; the bound is {:.2}%",
                er * 100.0,
                policy.max_error_rate * 100.0
            ),
        )
    } else if reference_error.is_some_and(|b| er > b + 0.005) {
        (
            Status::Warn,
            "more errors than the baseline, within the bound".to_string(),
        )
    } else {
        (Status::Pass, String::new())
    };
    checks.push(Check {
        scope: ALL.into(),
        metric: "error_rate".into(),
        label: "error rate".into(),
        unit: "%".into(),
        gated: true,
        kind: CheckKind::ErrorBound,
        baseline: reference_error,
        current: Some(er),
        current_infinite: false,
        change: None,
        bound: Some(policy.max_error_rate),
        ci: None,
        p_value: None,
        significant: false,
        margin: None,
        status,
        note,
    });
    for (metric, limit) in &policy.slo {
        let Some(def) = metric_def(metric) else {
            continue;
        };
        let v = current.get(metric).copied();
        let violated = match v {
            None => true,
            Some(x) if def.higher_is_worse => x > *limit,
            Some(x) => x < *limit,
        };
        checks.push(Check {
            scope: ALL.into(),
            metric: metric.clone(),
            label: format!("{} objective", def.label),
            unit: def.unit.into(),
            gated: true,
            kind: CheckKind::Slo,
            baseline: Some(*limit),
            current: v.and_then(fin),
            current_infinite: v.is_some_and(f64::is_infinite),
            change: None,
            bound: None,
            ci: None,
            p_value: None,
            significant: false,
            margin: None,
            status: if violated { Status::Fail } else { Status::Pass },
            note: if violated {
                format!(
                    "objective {} {limit} {} not met",
                    if def.higher_is_worse { "≤" } else { "≥" },
                    def.unit
                )
            } else {
                String::new()
            },
        });
    }
    checks
}

pub(crate) fn finish(
    mode: Mode,
    policy: &Policy,
    evidence: usize,
    mut checks: Vec<Check>,
    mut notes: Vec<String>,
    saturated: Option<String>,
    partial: Option<(RunState, &str)>,
) -> Verdict {
    checks.sort_by_key(|c| (!c.gated, c.scope != ALL));
    let mut verdict = checks
        .iter()
        .filter(|c| c.gated)
        .map(|c| c.status)
        .filter(|s| *s != Status::Improved)
        .max()
        .unwrap_or(Status::Pass);
    if verdict == Status::Pass && checks.iter().any(|c| c.status == Status::Warn) {
        verdict = Status::Warn;
    }
    if let Some(why) = saturated {
        notes.push(why);
        verdict = verdict.max(Status::Warn);
    }
    let mut aborted = None;
    if let Some((status, reason)) = partial {
        if status == RunState::Aborted {
            notes.push(format!("the run was aborted: {reason}"));
            verdict = Status::Fail;
            aborted = Some(reason);
        } else {
            notes.push(format!("the run is partial ({reason})"));
            verdict = verdict.max(Status::Warn);
        }
    }
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c.gated && c.status == Status::Fail)
        .map(|c| match c.change {
            Some(ch) if ch.is_finite() => format!("{} {:+.1}%", c.label, ch * 100.0),
            _ => c.label.clone(),
        })
        .collect();
    let improved = checks
        .iter()
        .filter(|c| c.gated && c.status == Status::Improved)
        .count();
    let headline = match verdict {
        Status::Fail if aborted.is_some() => {
            format!("the run was aborted — {}", aborted.unwrap_or_default())
        }
        Status::Fail => format!("regression: {}", failing.join(", ")),
        Status::Warn => {
            let warns = checks.iter().filter(|c| c.status == Status::Warn).count();
            format!("no regression; {warns} warning(s) to look at")
        }
        _ if improved > 0 => format!("no regression; {improved} gated metric(s) improved"),
        _ => "no regression".to_string(),
    };
    Verdict {
        schema_version: SCHEMA_VERSION,
        kind: KIND.into(),
        mode,
        verdict,
        headline,
        policy: policy.clone(),
        evidence,
        checks,
        notes,
    }
}

/// Committed-baseline mode.
pub fn compare_baseline(
    b: &Baseline,
    r: &RunResult,
    policy: &Policy,
    notes: Vec<String>,
) -> Verdict {
    let judge = Judge { policy };
    let current = metrics::extract(r);
    let empty = Values::new();
    let cur_all = current.get(ALL).unwrap_or(&empty);
    let mut checks = Vec::new();

    // Gated metrics on the pooled scope: p-values, then Holm.
    struct Pending {
        metric: String,
        pred: Option<math::Prediction>,
        value: Option<f64>,
        runs: usize,
    }
    let pending: Vec<Pending> = policy
        .metrics
        .iter()
        .map(|m| {
            let def = metric_def(m);
            let runs = b.values(ALL, m);
            let value = cur_all.get(m).copied();
            let pred = match (def, value) {
                (Some(d), Some(v)) => math::predict(&runs, v, d.higher_is_worse, policy.alpha),
                _ => None,
            };
            Pending {
                metric: m.clone(),
                pred,
                value,
                runs: runs.len(),
            }
        })
        .collect();
    let p_worse: Vec<f64> = pending
        .iter()
        .map(|p| p.pred.as_ref().map_or(f64::NAN, |x| x.p_worse))
        .collect();
    let p_better: Vec<f64> = pending
        .iter()
        .map(|p| p.pred.as_ref().map_or(f64::NAN, |x| x.p_better))
        .collect();
    let worse = math::holm(&p_worse, policy.alpha);
    let better = math::holm(&p_better, policy.alpha);
    // The bound printed is the one the verdict used: at the Holm level of
    // each metric, so "outside the bound" and "significant" always agree.
    let levels = math::holm_levels(&p_worse, policy.alpha);
    let level_of = |m: &str| {
        pending
            .iter()
            .position(|p| p.metric == m)
            .map_or(policy.alpha, |i| levels[i])
    };
    for (i, p) in pending.iter().enumerate() {
        let def = metric_def(&p.metric);
        let pred = match (def, p.value, p.pred.as_ref()) {
            (Some(d), Some(v), Some(_)) => {
                math::predict(&b.values(ALL, &p.metric), v, d.higher_is_worse, levels[i])
            }
            _ => None,
        };
        checks.push(relative_check(
            &judge,
            ALL,
            &p.metric,
            true,
            p.value,
            pred.as_ref(),
            worse[i],
            better[i],
            p.runs,
            &b.values(ALL, &p.metric),
        ));
    }

    // The same metrics per step: reported, warn only.
    for s in &r.steps {
        let cur = current.get(&s.name).unwrap_or(&empty);
        for m in &policy.metrics {
            let Some(def) = metric_def(m) else { continue };
            let Some(v) = cur.get(m).copied() else {
                continue;
            };
            let runs = b.values(&s.name, m);
            // Per step, the same level as the pooled metric: the same
            // numbers always get the same words.
            let level = level_of(m);
            let pred = math::predict(&runs, v, def.higher_is_worse, level);
            let (w, bt) = pred.as_ref().map_or((false, false), |p| {
                (p.p_worse <= level, p.p_better <= level)
            });
            let mut check = relative_check(
                &judge,
                &s.name,
                m,
                false,
                Some(v),
                pred.as_ref(),
                w,
                bt,
                runs.len(),
                &runs,
            );
            if !def.higher_is_worse {
                // A step's rate counts whole requests in the window: in short
                // runs one request more or less moves it by several percent.
                // It is shown, and judged only pooled over all steps.
                check.status = Status::Pass;
                check.significant = false;
                check.note = "per-step rates are shown, not judged".into();
            }
            checks.push(check);
        }
    }

    // A baseline whose own spread is wider than the margin cannot call a
    // change of the margin's size significant: say so, and what helps.
    let mut notes = notes;
    let wide: Vec<String> = checks
        .iter()
        .filter(|c| c.gated && c.kind == CheckKind::Relative)
        .filter_map(|c| {
            let (bound, center) = (c.bound?, c.baseline?);
            let width = (bound / center - 1.0).abs();
            (center > 0.0 && width > policy.margin_of(&c.metric))
                .then(|| format!("{} ±{:.0}%", c.label, width * 100.0))
        })
        .collect();
    if !wide.is_empty() {
        notes.push(format!(
            "the baseline's run-to-run spread is wider than the margin ({}): a regression of the margin's size cannot be told from noise; add runs with `baseline refresh --append`, or use duet mode (`--baseline-target`), which cancels runner and time-of-day drift",
            wide.join(", ")
        ));
    }

    let base_err = {
        let v = b.values(ALL, "error_rate");
        (!v.is_empty()).then(|| v.iter().copied().fold(0.0, f64::max))
    };
    checks.extend(absolute_checks(policy, cur_all, base_err));
    let reason = r.status_reason.clone().unwrap_or_default();
    let partial = (r.state() != RunState::Complete).then_some((r.state(), reason.as_str()));
    finish(
        Mode::Baseline,
        policy,
        b.runs.len(),
        checks,
        notes,
        r.saturation_note(),
        partial,
    )
}

#[allow(
    clippy::too_many_arguments,
    reason = "one private call shape for gated and per-step checks"
)]
fn relative_check(
    judge: &Judge<'_>,
    scope: &str,
    metric: &str,
    gated: bool,
    value: Option<f64>,
    pred: Option<&math::Prediction>,
    worse_sig: bool,
    better_sig: bool,
    runs: usize,
    run_values: &[f64],
) -> Check {
    let def = metric_def(metric);
    let higher_is_worse = def.is_none_or(|d| d.higher_is_worse);
    let center = pred.map(|p| p.center).or_else(|| {
        // One run: its value is the centre, and only the margin can judge.
        run_values.first().copied()
    });
    let change = match (value, center) {
        (Some(v), Some(c)) if c > 0.0 => Some(v / c - 1.0),
        _ => None,
    };
    let infinite = value.is_some_and(f64::is_infinite);
    let (status, note) = match (change, pred) {
        // Failures reaching the percentile: never a pass, whatever the baseline.
        _ if infinite && gated => (
            Status::Fail,
            "failed requests reach this percentile (they count as ∞)".to_string(),
        ),
        (Some(ch), Some(_)) => {
            judge.status(metric, gated, worse_sig, better_sig, ch, higher_is_worse)
        }
        (Some(ch), None) => {
            let (s, n) = judge.status(metric, gated, false, false, ch, higher_is_worse);
            (
                s,
                format!("{n} (one baseline run: no noise estimate)")
                    .trim()
                    .to_string(),
            )
        }
        // A gated metric that was not measured cannot pass.
        (None, _) if value.is_none() && gated && runs > 0 => (
            Status::Fail,
            "not measured in this run (the baseline measured it)".into(),
        ),
        (None, _) if value.is_none() && gated => (
            Status::Warn,
            "measured neither in this run nor in the baseline".into(),
        ),
        (None, _) if value.is_none() => (Status::Pass, "not measured in this run".into()),
        (None, _) if gated => (
            Status::Warn,
            format!("the baseline holds no usable value of it ({runs} run(s)): not judged"),
        ),
        (None, _) => (Status::Pass, format!("not enough baseline runs ({runs})")),
    };
    Check {
        scope: scope.into(),
        metric: metric.into(),
        label: def.map_or(metric.to_string(), |d| d.label.to_string()),
        unit: def.map_or(String::new(), |d| d.unit.to_string()),
        gated,
        kind: CheckKind::Relative,
        baseline: center,
        current: value.and_then(fin),
        current_infinite: value.is_some_and(f64::is_infinite),
        change: change.and_then(fin),
        bound: pred.map(|p| p.bound),
        ci: None,
        p_value: pred.map(|p| p.p_worse),
        significant: worse_sig,
        margin: Some(judge.policy.margin_of(metric)),
        status,
        note,
    }
}

/// Build a [`BTreeMap`] of checks by scope, for renderers.
pub fn by_scope(v: &Verdict) -> BTreeMap<String, Vec<&Check>> {
    let mut m: BTreeMap<String, Vec<&Check>> = BTreeMap::new();
    for c in &v.checks {
        m.entry(c.scope.clone()).or_default().push(c);
    }
    m
}
