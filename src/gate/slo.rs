//! Whether a measured level holds its SLOs, with the evidence to say so:
//! the decision rule of a capacity probe. Each objective gets a confidence
//! interval (order statistics for a latency quantile, Wilson for a rate);
//! the level passes only when every interval is on the right side of its
//! limit, fails when one is clearly on the wrong side, and is inconclusive
//! (measure more) otherwise.

use crate::policy::metrics::{Base, Metric};
use crate::policy::slo::{Decision, Objective, SloCheck};
use crate::stats::LatencyHist;

/// The quantile a latency objective names: `(Base::Ttft, 0.9)` for
/// `ttft_p90` (any latency, any quantile: `itl_p99.9`).
pub fn latency_quantile(metric: &str) -> Option<(Base, f64)> {
    Metric::parse(metric).ok()?.latency()
}

fn decide(low: Option<f64>, high: Option<f64>, limit: f64) -> Decision {
    match (low, high) {
        (_, Some(h)) if h <= limit => Decision::Pass,
        (Some(l), _) if l > limit => Decision::Fail,
        _ => Decision::Inconclusive,
    }
}

/// A latency quantile `p` against `limit` ms: the interval is the pair of
/// order statistics whose ranks bound the quantile at two-sided confidence
/// `z` (normal approximation to the binomial). Failures are +∞.
pub fn quantile_check(metric: &str, h: &LatencyHist, p: f64, limit: f64, z: f64) -> SloCheck {
    let n = h.count() as f64;
    let (estimate, low, high) = if n == 0.0 {
        (None, None, None)
    } else {
        let half = z * (p * (1.0 - p) / n).sqrt();
        // Ranks beyond the sample leave that side unbounded.
        let low = (p - half > 0.0).then(|| h.quantile_ms(p - half)).flatten();
        let high = if p + half < 1.0 {
            h.quantile_ms(p + half)
        } else {
            Some(f64::INFINITY)
        };
        (h.quantile_ms(p), low, high)
    };
    SloCheck {
        metric: metric.into(),
        limit,
        estimate,
        low,
        high,
        decision: decide(low, high, limit),
    }
}

/// A rate (`failures` of `n`) against `limit`: the Wilson score interval.
pub fn proportion_check(metric: &str, failures: u64, n: u64, limit: f64, z: f64) -> SloCheck {
    if n == 0 {
        return SloCheck {
            metric: metric.into(),
            limit,
            estimate: None,
            low: None,
            high: None,
            decision: Decision::Inconclusive,
        };
    }
    let (k, n) = (failures as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let (low, high) = ((centre - half).max(0.0), (centre + half).min(1.0));
    SloCheck {
        metric: metric.into(),
        limit,
        estimate: Some(p),
        low: Some(low),
        high: Some(high),
        decision: decide(Some(low), Some(high), limit),
    }
}

/// Requests a probe needs before `o` can pass at confidence `z` when the
/// level truly meets it: for an error rate, the Wilson bound of zero
/// failures in n (`z²/(n+z²)`) under the limit, so n ≥ z²(1−limit)/limit
/// (about 660 for 1% at 99%); for a quantile p, an upper order statistic
/// inside the sample with room to spare, n ≥ 2·z²·p/(1−p) (about 120 for
/// a p90). Bounded at a million.
pub fn requests_needed(o: &Objective, z: f64) -> u64 {
    let n = match latency_quantile(&o.metric) {
        Some((_, p)) => 2.0 * z * z * p / (1.0 - p),
        None if o.limit > 0.0 && o.limit < 1.0 => z * z * (1.0 - o.limit) / o.limit * 1.05,
        None => 0.0,
    };
    n.ceil().clamp(0.0, 1e6) as u64
}

/// A level's decision: fail when any objective fails, pass when all pass.
pub fn combine(checks: &[SloCheck]) -> Decision {
    checks
        .iter()
        .map(|c| c.decision)
        .max()
        .unwrap_or(Decision::Inconclusive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::slo::check_metric;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::time::Duration;

    /// `n` exponential latencies with this mean, ms.
    fn sample(n: usize, mean_ms: f64, rng: &mut SmallRng) -> LatencyHist {
        let mut h = LatencyHist::new();
        for _ in 0..n {
            let x = -(1.0 - rng.random::<f64>()).ln() * mean_ms;
            h.record(Duration::from_secs_f64(x / 1000.0));
        }
        h
    }

    /// How often each decision comes out over `trials` probes.
    fn rates(trials: usize, n: usize, mean_ms: f64, limit: f64) -> [f64; 3] {
        let mut rng = SmallRng::seed_from_u64(42);
        let mut count = [0usize; 3];
        for _ in 0..trials {
            let h = sample(n, mean_ms, &mut rng);
            let c = quantile_check("ttft_p90", &h, 0.9, limit, 2.576);
            count[c.decision as usize] += 1;
        }
        count.map(|c| c as f64 / trials as f64)
    }

    #[test]
    fn a_quantile_decision_follows_the_truth_and_says_when_it_cannot_tell() {
        // The p90 of an exponential with mean m is m·ln 10 ≈ 2.303·m.
        let p90 = |m: f64| m * 10f64.ln();
        // Truth 20% under the limit, 1,000 requests: a pass, almost always.
        let [pass, inc, fail] = rates(300, 1000, 100.0, p90(100.0) * 1.25);
        assert!(pass > 0.9 && fail < 0.01, "{pass} {inc} {fail}");
        // Truth 20% over: a failure, almost always.
        let [pass, _, fail] = rates(300, 1000, 100.0, p90(100.0) / 1.25);
        assert!(fail > 0.9 && pass < 0.01, "{pass} {fail}");
        // Truth at the limit: mostly "measure more", and wrong either way rarely
        // (each side at most the 0.5% of a 99% interval, plus histogram rounding).
        let [pass, inc, fail] = rates(300, 400, 100.0, p90(100.0));
        assert!(inc > 0.9, "{pass} {inc} {fail}");
        assert!(pass < 0.03 && fail < 0.03, "{pass} {fail}");
        // More evidence settles a case that little evidence cannot.
        let [_, inc_small, _] = rates(200, 100, 100.0, p90(100.0) * 1.1);
        let [_, inc_large, _] = rates(200, 3000, 100.0, p90(100.0) * 1.1);
        assert!(inc_large < inc_small / 2.0, "{inc_small} → {inc_large}");
    }

    #[test]
    fn failures_count_against_a_latency_objective() {
        let mut h = LatencyHist::new();
        for _ in 0..80 {
            h.record(Duration::from_millis(10));
        }
        for _ in 0..20 {
            h.record_failure();
        }
        // 20% failed: the p90 is among them, +∞.
        let c = quantile_check("ttft_p90", &h, 0.9, 100.0, 2.576);
        assert_eq!(c.estimate, Some(f64::INFINITY));
        assert_eq!(c.decision, Decision::Fail);
        let empty = quantile_check("ttft_p90", &LatencyHist::new(), 0.9, 100.0, 2.576);
        assert_eq!(empty.decision, Decision::Inconclusive);
    }

    #[test]
    fn a_probe_of_the_requests_needed_can_pass_an_error_rate() {
        let o = Objective {
            metric: "error_rate".into(),
            limit: 0.01,
        };
        let n = requests_needed(&o, 2.576);
        assert!((650..=720).contains(&n), "{n}");
        assert_eq!(
            proportion_check("error_rate", 0, n, 0.01, 2.576).decision,
            Decision::Pass
        );
        // 620 error-free requests were not enough.
        assert_eq!(
            proportion_check("error_rate", 0, 620, 0.01, 2.576).decision,
            Decision::Inconclusive
        );
    }

    #[test]
    fn wilson_intervals_decide_error_rates() {
        assert_eq!(
            proportion_check("error_rate", 0, 1000, 0.01, 2.576).decision,
            Decision::Pass
        );
        assert_eq!(
            proportion_check("error_rate", 50, 1000, 0.01, 2.576).decision,
            Decision::Fail
        );
        assert_eq!(
            proportion_check("error_rate", 1, 50, 0.01, 2.576).decision,
            Decision::Inconclusive
        );
        let c = proportion_check("error_rate", 10, 1000, 0.01, 1.96);
        let (l, h) = (c.low.expect("low"), c.high.expect("high"));
        // The known 95% Wilson interval of 10/1000: 0.0054 to 0.0183.
        assert!(
            (l - 0.0054).abs() < 5e-4 && (h - 0.0183).abs() < 5e-4,
            "{l} {h}"
        );
        assert_eq!(
            combine(&[c.clone(), proportion_check("e", 0, 1000, 0.5, 1.96)]),
            Decision::Inconclusive
        );
    }

    #[test]
    fn objective_names_are_checked() {
        assert_eq!(latency_quantile("ttft_p90"), Some((Base::Ttft, 0.9)));
        assert!(check_metric("tpot_p50").is_ok());
        assert!(check_metric("error_rate").is_ok());
        assert!(check_metric("itl_p99.9").is_ok());
        assert!(check_metric("ttft_p42").is_ok(), "any quantile");
        for bad in ["ttft_p420", "goodput", "ttft", "", "output_tokens_per_s"] {
            assert!(check_metric(bad).is_err(), "{bad}");
        }
    }
}
