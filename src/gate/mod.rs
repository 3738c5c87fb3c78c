//! The gate: from results to a verdict engineers can trust.
//!
//! Two modes. Against a committed baseline of N runs, a metric regresses when
//! the current value lies outside the one-sided prediction interval of the
//! baseline runs on log scale *and* the change is larger than the margin. In
//! duet mode, reference and candidate ran in interleaved blocks of the same
//! job; a one-sided paired t-test on log block ratios plus the margin decides,
//! and a bootstrap interval of the ratio is reported. Gated metrics share one
//! false-alarm budget (Holm); the error rate is an absolute bound.

mod baseline;
pub mod capacity;
pub mod change;
pub mod diagnosis;
pub mod duet;
pub mod hypothesis;
pub mod math;
pub mod slo;
pub mod trend;

pub use baseline::compare_baseline;

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
    /// The scenario's hypotheses, judged on the current run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypotheses: Vec<hypothesis::Outcome>,
}

const FILE_TYPE: crate::jsonfile::FileType = crate::jsonfile::FileType {
    what: "verdict",
    kind: KIND,
    version: SCHEMA_VERSION,
    oldest: SCHEMA_VERSION,
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
        hypotheses: Vec::new(),
    }
}

impl Verdict {
    /// Take the hypotheses judged on the run: a refuted one that says
    /// `fail = true` fails the verdict, naming it.
    pub fn with_hypotheses(&mut self, outcomes: Vec<hypothesis::Outcome>) {
        let refuted: Vec<&str> = outcomes
            .iter()
            .filter(|o| o.fail && o.finding == hypothesis::Finding::Refuted)
            .map(|o| o.statement.as_str())
            .collect();
        if !refuted.is_empty() {
            self.headline = format!(
                "hypothesis refuted: {}; {}",
                refuted.join("; "),
                self.headline
            );
            self.verdict = Status::Fail;
        }
        self.hypotheses = outcomes;
    }

    /// The load judged was not the load intended: neither a pass nor a
    /// failure can be trusted, so the verdict is a warning that says why
    /// (an aborted run stays failed).
    pub fn not_at_intended_load(&mut self, why: String) {
        if self.headline.starts_with("the run was aborted") {
            self.notes.push(why);
            return;
        }
        if self.verdict != Status::Warn {
            let was = self.verdict;
            self.verdict = Status::Warn;
            self.headline = format!("{} (would be {was}); {why}", self.headline);
        }
        self.notes.push(why);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(partial: Option<(RunState, &str)>) -> Verdict {
        finish(
            Mode::Baseline,
            &Policy::default(),
            3,
            Vec::new(),
            Vec::new(),
            None,
            partial,
        )
    }

    #[test]
    fn a_load_not_delivered_makes_any_verdict_a_warning_that_says_why() {
        let mut v = verdict(None);
        assert_eq!(v.verdict, Status::Pass);
        v.not_at_intended_load("under-delivered: `hold 64` 80% of 64".into());
        assert_eq!(v.verdict, Status::Warn);
        assert!(v.headline.contains("(would be pass)"), "{}", v.headline);
        assert!(v.notes.iter().any(|n| n.contains("hold 64")));
        // An aborted run stays failed.
        let mut aborted = verdict(Some((RunState::Aborted, "circuit breaker")));
        aborted.not_at_intended_load("under-delivered".into());
        assert_eq!(aborted.verdict, Status::Fail);
    }
}
