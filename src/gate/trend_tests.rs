//! Synthetic histories with known truth.

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::*;
use crate::gate::change::normal;
use crate::result::baseline::BaselineRun;
use crate::result::history::{Skipped, KIND, SCHEMA_VERSION};
use crate::result::{Host, ScenarioRef};

/// A night's record: `ttft_p90` of scope `all` (and of step `draft`,
/// unless `draft` is `None`).
fn record(night: usize, ttft: f64, draft: Option<f64>) -> Record {
    let mut metrics = BTreeMap::new();
    metrics.insert(
        ALL.to_string(),
        BTreeMap::from([("ttft_p90".to_string(), Some(ttft))]),
    );
    if let Some(d) = draft {
        metrics.insert(
            "draft".to_string(),
            BTreeMap::from([("ttft_p90".to_string(), Some(d))]),
        );
    }
    let date = (chrono::DateTime::parse_from_rfc3339("2026-09-01T03:00:00Z").expect("date")
        + chrono::Duration::days(night as i64))
    .to_rfc3339();
    Record {
        kind: KIND.into(),
        schema_version: SCHEMA_VERSION,
        commit: Some(format!("{night:040x}")),
        date: date.clone(),
        source: "nightly".into(),
        tool_version: "1.0.0".into(),
        scenario: ScenarioRef {
            name: "novel".into(),
            origin: "bundled:novel".into(),
            sha256: "ab".repeat(32),
        },
        concurrency: 4,
        vars: serde_json::Map::new(),
        target: "http://127.0.0.1:1".into(),
        runner: Host {
            os: "linux".into(),
            arch: "x86_64".into(),
            cores: 2,
            hostname: Some("runner".into()),
        },
        gate: Policy::default(),
        unfit: None,
        runs: 1,
        run: BaselineRun {
            started_at: date,
            metrics,
            blocks: vec![],
        },
    }
}

/// `n` nights of TTFT p90 around 100 ms × `level(night)` with log-normal
/// noise of `cv`.
fn history(n: usize, cv: f64, seed: u64, level: impl Fn(usize) -> f64) -> Read {
    let mut rng = SmallRng::seed_from_u64(seed);
    Read {
        records: (0..n)
            .map(|i| record(i, 100.0 * level(i) * (cv * normal(&mut rng)).exp(), None))
            .collect(),
        skipped: vec![],
    }
}

fn overall(t: &Trend) -> &Series {
    t.series
        .iter()
        .find(|s| s.scope == ALL && s.metric == "ttft_p90")
        .expect("the overall series")
}

/// The share of seeds in which a step of `step` after `before` nights is
/// found by the time `after` nights at the new level are recorded, with a
/// commit range that holds the first commit of the new level.
fn detected(cv: f64, step: f64, before: usize, after: usize, seeds: u64) -> f64 {
    let mut found = 0;
    for seed in 0..seeds {
        let h = history(before + after, cv, seed, |i| {
            if i >= before {
                1.0 + step
            } else {
                1.0
            }
        });
        let t = analyse(&h, &Settings::default()).expect("analysed");
        let truth = format!("{before:040x}");
        let hit = overall(&t).changes.iter().any(|c| {
            c.regression
                && c.change.earliest <= before
                && before <= c.change.latest
                && t.nights[c.change.earliest..=c.change.latest]
                    .iter()
                    .any(|n| n.commit.as_deref() == Some(truth.as_str()))
        });
        found += u32::from(hit);
    }
    f64::from(found) / seeds as f64
}

#[test]
fn a_step_of_four_noise_sds_is_found_within_three_nights_with_its_commit() {
    // 5% at 1.25% CV, 13% at 3%, 22% at 5%, 82% at 15%: four standard
    // deviations of the nightly noise on log scale, 30 nights before.
    for (cv, step) in [(0.0125, 0.05), (0.03, 0.128), (0.05, 0.22), (0.15, 0.82)] {
        let share = detected(cv, step, 30, 3, 100);
        assert!(share >= 0.9, "CV {cv}, step {step}: found in {share}");
    }
}

#[test]
fn a_five_percent_step_in_three_percent_noise_is_found_as_nights_accrue() {
    // Two standard deviations: the evidence needs more nights.
    let early = detected(0.03, 0.05, 30, 3, 100);
    let late = detected(0.03, 0.05, 30, 20, 100);
    assert!(
        late >= 0.9 && late > early,
        "3 nights: {early}, 20 nights: {late}"
    );
}

#[test]
fn stationary_nights_give_at_most_a_rare_false_change_point() {
    for cv in [0.03, 0.15] {
        let seeds = 100;
        let mut points = 0;
        let mut drifts = 0;
        for seed in 0..seeds {
            let t = analyse(
                &history(100, cv, 10_000 + seed, |_| 1.0),
                &Settings::default(),
            )
            .expect("analysed");
            points += overall(&t).changes.len();
            drifts += usize::from(overall(&t).drift.is_some());
        }
        let per_series = points as f64 / seeds as f64;
        assert!(
            per_series <= 0.1,
            "CV {cv}: {per_series} false points per series"
        );
        assert!(drifts <= 5, "CV {cv}: {drifts} false drifts in {seeds}");
    }
}

#[test]
fn a_creep_of_one_percent_a_night_is_reported_within_ten_nights() {
    let seeds = 100;
    let mut reported = 0;
    let mut message = String::new();
    for seed in 0..seeds {
        let h = history(40, 0.03, 500 + seed, |i| {
            1.01f64.powi(i.saturating_sub(29) as i32)
        });
        let t = analyse(&h, &Settings::default()).expect("analysed");
        let s = overall(&t);
        if s.drift.is_some()
            || s.changes
                .iter()
                .any(|c| c.regression && c.change.index >= 25)
        {
            reported += 1;
        }
        if let Some(d) = &s.drift {
            message = format!(
                "{:+.1}% over {} nights, {} steps",
                d.change * 100.0,
                d.nights,
                d.steps
            );
        }
    }
    assert!(reported >= 90, "{reported} of {seeds}; e.g. {message}");
}

#[test]
fn a_slow_creep_with_no_single_step_is_a_drift_past_the_margin() {
    // 0.8%/night for 20 nights in 1% noise: no night steps, the sum does.
    let h = history(50, 0.01, 7, |i| 1.008f64.powi(i.saturating_sub(29) as i32));
    let t = analyse(&h, &Settings::default()).expect("analysed");
    let d = overall(&t).drift.clone().expect("a drift");
    assert!(d.change > 0.1 && d.level == "fail", "{d:?}");
    assert!(d.low > 0.0 && d.p_value < 0.01);
}

#[test]
fn improvements_are_change_points_but_not_regressions() {
    let h = history(40, 0.01, 3, |i| if i >= 30 { 0.8 } else { 1.0 });
    let t = analyse(&h, &Settings::default()).expect("analysed");
    let c = &overall(&t).changes;
    assert_eq!(c.len(), 1);
    assert!(!c[0].regression && c[0].change.step < -0.15);
    assert!(overall(&t).drift.is_none());
}

#[test]
fn bad_histories_are_described_and_nothing_is_dropped_silently() {
    let mut h = history(12, 0.01, 1, |_| 1.0);
    // Out of order, a repeated line, a gap, a new version, a missing metric.
    h.records.swap(3, 4);
    for r in &mut h.records[8..] {
        let t = chrono::DateTime::parse_from_rfc3339(&r.date).expect("date")
            + chrono::Duration::days(5);
        r.date = t.to_rfc3339();
        r.tool_version = "1.1.0".into();
    }
    h.records.push(h.records[5].clone());
    h.records[2]
        .run
        .metrics
        .get_mut(ALL)
        .expect("all")
        .remove("ttft_p90");
    h.records[6]
        .run
        .metrics
        .get_mut(ALL)
        .expect("all")
        .insert("ttft_p90".into(), None);
    h.records[7].unfit = Some("the load generator was saturated during it".into());
    h.records[9].commit = h.records[10].commit.clone();
    // Another scenario version and another setup.
    let mut other = h.records[0].clone();
    other.scenario.sha256 = "cd".repeat(32);
    h.records.insert(0, other);
    let mut chat = h.records[1].clone();
    chat.scenario.name = "openai-chat".into();
    chat.scenario.sha256 = "ef".repeat(32);
    chat.date = "2026-08-01T03:00:00Z".into();
    h.records.push(chat);
    h.skipped.push(Skipped {
        line: 14,
        why: "not JSON (EOF)".into(),
    });
    let t = analyse(&h, &Settings::default()).expect("analysed");
    let notes = t.notes.join("\n");
    for expected in [
        "line 14 left out: not JSON",
        "another version of the scenario",
        "`openai-chat`",
        "not in date order",
        "repeats record",
        "saturated",
        "no record between",
        "flora-gate 1.0.0 → 1.1.0",
        "measured 2 times",
        "missing on 1 of 11 nights",
        "unbounded (failures) on 1 night",
    ] {
        assert!(notes.contains(expected), "{expected} not in:\n{notes}");
    }
    assert_eq!(t.nights.len(), 11);
    let s = overall(&t);
    assert_eq!(s.values.iter().filter(|v| v.is_none()).count(), 2);
}

#[test]
fn one_night_is_shown_and_said_and_an_empty_history_is_an_error() {
    let t = analyse(&history(1, 0.01, 1, |_| 1.0), &Settings::default()).expect("analysed");
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("1 night(s) of this setup")),
        "{:?}",
        t.notes
    );
    assert!(overall(&t).changes.is_empty() && overall(&t).drift.is_none());
    assert!(analyse(&Read::default(), &Settings::default()).is_err());
    let s = Settings {
        setup: Some("nope".into()),
        ..Settings::default()
    };
    let e = analyse(&history(3, 0.01, 1, |_| 1.0), &s).expect_err("no such setup");
    assert!(e.contains("`nope`"), "{e}");
}

#[test]
fn steps_are_series_of_their_own() {
    let mut rng = SmallRng::seed_from_u64(4);
    let h = Read {
        records: (0..30)
            .map(|i| {
                let n = 1.0 + 0.01 * normal(&mut rng);
                record(i, 100.0 * n, Some(if i >= 20 { 130.0 } else { 100.0 } * n))
            })
            .collect(),
        skipped: vec![],
    };
    let t = analyse(&h, &Settings::default()).expect("analysed");
    let draft = t.series.iter().find(|s| s.scope == "draft").expect("draft");
    assert_eq!(draft.changes.len(), 1);
    assert_eq!(draft.changes[0].change.index, 20);
    assert_eq!(
        draft.changes[0].from_commit.as_deref(),
        Some(format!("{:040x}", 19).as_str())
    );
    assert!(overall(&t).changes.is_empty());
    assert_eq!(t.series[0].scope, ALL);
}
