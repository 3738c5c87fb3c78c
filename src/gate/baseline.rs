//! Committed-baseline mode: the current run against the one-sided
//! prediction interval of the baseline's runs, Holm across gated metrics.

use super::{
    absolute_checks, fin, finish, math, metrics, Check, CheckKind, Judge, Mode, Status, Verdict,
};
use crate::policy::metrics::{metric_def, Values, ALL};
use crate::policy::Policy;
use crate::result::baseline::Baseline;
use crate::result::{RunResult, RunState};

/// Committed-baseline mode.
pub fn compare_baseline(
    b: &Baseline,
    r: &RunResult,
    policy: &Policy,
    notes: Vec<String>,
) -> Verdict {
    let judge = Judge { policy };
    let current = metrics::extract_with(r, &policy.metrics);
    let empty = Values::new();
    let cur_all = current.get(ALL).unwrap_or(&empty);
    let (mut checks, levels) = pooled_checks(&judge, b, cur_all);
    for s in &r.steps {
        let cur = current.get(&s.name).unwrap_or(&empty);
        checks.extend(step_checks(&judge, b, &s.name, cur, &levels));
    }
    let mut notes = notes;
    notes.extend(wide_spread_note(&checks, policy));
    let base_err = {
        let v = b.values(ALL, "error_rate");
        (!v.is_empty()).then(|| v.iter().copied().fold(0.0, f64::max))
    };
    checks.extend(absolute_checks(policy, cur_all, base_err));
    let reason = r.status_reason.clone().unwrap_or_default();
    let partial = (r.state() != RunState::Complete).then_some((r.state(), reason.as_str()));
    let mut verdict = finish(
        Mode::Baseline,
        policy,
        b.runs.len(),
        checks,
        notes,
        r.saturation_note(),
        partial,
    );
    if let Some(why) = r.under_delivery_note(policy.stage.as_deref()) {
        verdict.not_at_intended_load(why);
    }
    // A merge of some shards only is not the planned load either.
    if let Some(why) = r.merged.as_ref().and_then(|m| m.partial_note()) {
        verdict.not_at_intended_load(why);
    }
    verdict
}

/// The gated metrics on the pooled scope: p-values, then Holm. Returns the
/// checks and each metric's Holm level (the level its step rows use).
fn pooled_checks(
    judge: &Judge<'_>,
    b: &Baseline,
    cur_all: &Values,
) -> (Vec<Check>, Vec<(String, f64)>) {
    let policy = judge.policy;
    let worse_of = |m: &str| metric_def(m).map(|d| d.higher_is_worse);
    let value = |m: &str| cur_all.get(m).copied();
    let predict = |m: &str, level: f64| match (worse_of(m), value(m)) {
        (Some(w), Some(v)) => math::predict(&b.values(ALL, m), v, w, level),
        _ => None,
    };
    let preds: Vec<Option<math::Prediction>> = policy
        .metrics
        .iter()
        .map(|m| predict(m, policy.alpha))
        .collect();
    let p_of = |f: fn(&math::Prediction) -> f64| -> Vec<f64> {
        preds
            .iter()
            .map(|p| p.as_ref().map_or(f64::NAN, f))
            .collect()
    };
    let (p_worse, p_better) = (p_of(|x| x.p_worse), p_of(|x| x.p_better));
    let worse = math::holm(&p_worse, policy.alpha);
    let better = math::holm(&p_better, policy.alpha);
    // The bound printed is the one the verdict used: at the Holm level of
    // each metric, so "outside the bound" and "significant" always agree.
    let levels = math::holm_levels(&p_worse, policy.alpha);
    let checks = policy
        .metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let pred = preds[i].as_ref().and_then(|_| predict(m, levels[i]));
            let runs = b.values(ALL, m);
            relative_check(
                judge,
                ALL,
                m,
                true,
                value(m),
                pred.as_ref(),
                worse[i],
                better[i],
                runs.len(),
                &runs,
            )
        })
        .collect();
    let by_metric = policy.metrics.iter().cloned().zip(levels).collect();
    (checks, by_metric)
}

/// The same metrics for one step: reported, warn only, at the level of the
/// pooled metric (the same numbers always get the same words).
fn step_checks(
    judge: &Judge<'_>,
    b: &Baseline,
    step: &str,
    cur: &Values,
    levels: &[(String, f64)],
) -> Vec<Check> {
    let policy = judge.policy;
    let mut checks = Vec::new();
    for m in &policy.metrics {
        let Some(def) = metric_def(m) else { continue };
        let Some(v) = cur.get(m).copied() else {
            continue;
        };
        let runs = b.values(step, m);
        let level = levels
            .iter()
            .find(|(n, _)| n == m)
            .map_or(policy.alpha, |l| l.1);
        let pred = math::predict(&runs, v, def.higher_is_worse, level);
        let (w, bt) = pred.as_ref().map_or((false, false), |p| {
            (p.p_worse <= level, p.p_better <= level)
        });
        let mut check = relative_check(
            judge,
            step,
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
    checks
}

/// A baseline whose own spread is wider than the margin cannot call a
/// change of the margin's size significant: say so, and what helps.
fn wide_spread_note(checks: &[Check], policy: &Policy) -> Option<String> {
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
    (!wide.is_empty()).then(|| {
        format!(
            "the baseline's run-to-run spread is wider than the margin ({}): a regression of the margin's size cannot be told from noise; add runs with `baseline refresh --append`, or use duet mode (`--baseline-target`), which cancels runner and time-of-day drift",
            wide.join(", ")
        )
    })
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
    let def = def.as_ref();
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
