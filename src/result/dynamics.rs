//! What the shape of a run says beyond its percentiles, read from its
//! windows: how long TTFT took to recover after each upward jump (spikes),
//! and whether latencies drifted over the longest hold (soaks), with an
//! interval.

use serde::{Deserialize, Serialize};

use std::time::Duration;

use super::time::{ms, WindowResult};
use crate::scenario::LoadSpec;

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
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::WindowLoad;
    use crate::result::time::WindowHistograms;

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
