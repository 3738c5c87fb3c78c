//! Duet mode: reference and candidate measured in the same job, in time
//! slots interleaved at random, judged by a paired test on log ratios.

use super::{finish, math, Check, CheckKind, Judge, Status, Verdict};
use crate::policy::metrics::{metric_def, Values, ALL};
use crate::policy::Policy;
use crate::result::duet::DuetResult;
use crate::result::RunState;

/// Judge a duet.
pub fn compare_duet(d: &DuetResult, policy: &Policy) -> Verdict {
    let policy = &policy.for_duet();
    let judge = Judge { policy };
    let cand = crate::result::values::extract_with(&d.candidate, &policy.metrics);
    let refr = crate::result::values::extract_with(&d.reference, &policy.metrics);
    let empty = Values::new();
    let (cand_all, ref_all) = (
        cand.get(ALL).unwrap_or(&empty),
        refr.get(ALL).unwrap_or(&empty),
    );
    let tests: Vec<(String, Vec<f64>, Option<math::Paired>)> = policy
        .metrics
        .iter()
        .map(|m| {
            let hw = metric_def(m).is_none_or(|d| d.higher_is_worse);
            let lr = d.log_ratios(m);
            let t = math::paired(&lr, hw);
            (m.clone(), lr, t)
        })
        .collect();
    let pw: Vec<f64> = tests
        .iter()
        .map(|t| t.2.as_ref().map_or(f64::NAN, |p| p.p_worse))
        .collect();
    let pb: Vec<f64> = tests
        .iter()
        .map(|t| t.2.as_ref().map_or(f64::NAN, |p| p.p_better))
        .collect();
    let worse = math::holm(&pw, policy.alpha);
    let better = math::holm(&pb, policy.alpha);
    let levels = math::holm_levels(&pw, policy.alpha);
    let pairs = tests.iter().map(|t| t.1.len()).max().unwrap_or(0);
    let mut checks: Vec<Check> = tests
        .iter()
        .enumerate()
        .map(|(i, (metric, lr, test))| {
            let sides = Sides {
                d,
                cand_all,
                ref_all,
            };
            let held = Held {
                level: levels[i],
                worse: worse[i],
                better: better[i],
            };
            paired_check(&judge, &sides, metric, lr, test.as_ref(), &held)
        })
        .collect();
    checks.extend(super::absolute_checks(
        policy,
        cand_all,
        ref_all.get("error_rate").copied(),
    ));
    let notes = duet_notes(d);
    let saturated = d
        .candidate
        .saturation_note()
        .or_else(|| d.reference.saturation_note());
    let reason = d.candidate.status_reason.clone().unwrap_or_default();
    let partial = (d.candidate.state() != RunState::Complete)
        .then_some((d.candidate.state(), reason.as_str()));
    let mut v = finish(
        super::Mode::Duet,
        policy,
        pairs,
        checks,
        notes,
        saturated,
        partial,
    );
    if d.reference.state() != RunState::Complete && v.verdict < Status::Warn {
        v.verdict = Status::Warn;
        v.headline = "the reference failed during the duet: not a clean comparison".into();
    }
    v
}

/// Both sides of a duet and their pooled values.
struct Sides<'a> {
    d: &'a DuetResult,
    cand_all: &'a Values,
    ref_all: &'a Values,
}

/// What Holm decided for one metric: its level, and whether it is
/// significantly worse or better.
struct Held {
    level: f64,
    worse: bool,
    better: bool,
}

/// One gated metric judged on its paired log-ratios.
fn paired_check(
    judge: &Judge<'_>,
    sides: &Sides<'_>,
    metric: &str,
    lr: &[f64],
    test: Option<&math::Paired>,
    held: &Held,
) -> Check {
    let policy = judge.policy;
    let def = metric_def(metric);
    let def = def.as_ref();
    let hw = def.is_none_or(|d| d.higher_is_worse);
    // The interval at the level the test used (Holm's, per metric): the
    // one printed is the one judged.
    let ci = test.map(|t| {
        let (a, b) = t.interval(held.level);
        [a - 1.0, b - 1.0]
    });
    let (status, note, change) = match test {
        Some(t) => {
            let ch = t.ratio - 1.0;
            let (mut s, mut n) = judge.status(metric, true, held.worse, held.better, ch, hw);
            // An interval wholly beyond the margin on the worse side is
            // a regression, whatever the point estimate says.
            let margin = policy.margin_of(metric);
            let least_bad = ci.map(|[a, b]| if hw { a } else { -b });
            if let Some(lb) = least_bad.filter(|lb| *lb > margin && s != Status::Fail) {
                s = Status::Fail;
                n = format!(
                    "at least {:.1}% worse (the whole interval is beyond the {:.1}% margin)",
                    lb * 100.0,
                    margin * 100.0
                );
            }
            (s, n, Some(ch))
        }
        None if lr.is_empty() => (
            Status::Pass,
            "no slot pair measured it on both sides".to_string(),
            None,
        ),
        None => (
            Status::Pass,
            format!("not enough block pairs ({})", lr.len()),
            None,
        ),
    };
    let cur = sides.cand_all.get(metric).copied();
    // The figures shown are the ones the change is the ratio of: each
    // side's geometric mean over the pairs compared (pooled values
    // weigh long slots more and need not agree with the paired change).
    let (baseline, current) = match (test, sides.d.paired_means(metric)) {
        (Some(_), Some((r, c))) => (Some(r), Some(c)),
        _ => (
            sides.ref_all.get(metric).copied().filter(|v| v.is_finite()),
            cur.filter(|v| v.is_finite()),
        ),
    };
    Check {
        scope: ALL.into(),
        metric: metric.to_string(),
        label: def.map_or(metric.to_string(), |d| d.label.to_string()),
        unit: def.map_or(String::new(), |d| d.unit.to_string()),
        gated: true,
        kind: CheckKind::Relative,
        baseline,
        current,
        current_infinite: cur.is_some_and(f64::is_infinite),
        change,
        bound: None,
        ci,
        p_value: test.map(|t| t.p_worse),
        significant: held.worse,
        margin: Some(policy.margin_of(metric)),
        status,
        note,
    }
}

/// What a duet verdict says of how it ran.
fn duet_notes(d: &DuetResult) -> Vec<String> {
    let mut notes = vec![
        format!(
            "reference: {}; candidate: {}",
            d.reference.provenance.target, d.candidate.provenance.target
        ),
        "each side's figure is the geometric mean of its slots over the pairs compared, so the change is their ratio".into(),
    ];
    notes.extend(d.notes.iter().cloned());
    if d.reference.state() != RunState::Complete {
        notes.push(format!(
            "the reference deployment did not run cleanly ({}: {}); only pairs where both sides measured are compared",
            d.reference.status,
            d.reference.status_reason.as_deref().unwrap_or("no reason recorded")
        ));
    }
    notes
}
