//! Capacity: the most users at which every SLO holds. The search is a pure
//! state machine (double until a level fails, then bisect) fed with the
//! decisions of probes; a probe's decision comes from [`super::slo`] on the
//! pooled histograms of its run.

use serde::{Deserialize, Serialize};

use super::slo;
use crate::policy::metrics::Base;
use crate::policy::slo::{Decision, Objective, SloCheck};
use crate::result::capacity::{By, Capacity, CapacityResult, Probe};
use crate::result::RunResult;
use crate::stats::LatencyHist;

/// Two-sided z of the probes' intervals (99%).
pub const Z: f64 = 2.576;

/// Double, then bisect, in whole steps of a level (users, or tenths of a
/// start per second); `lo` is the largest pass, `hi` the smallest level
/// that did not pass.
#[derive(Debug, Clone)]
pub struct Search {
    by: By,
    max: u32,
    tolerance: f64,
    next: Option<u32>,
    lo: Option<u32>,
    hi: Option<u32>,
    hi_inconclusive: bool,
}

impl Search {
    /// From `start` up to `max`, until the bracket is within `tolerance` of
    /// the passing level (or one step).
    pub fn new(by: By, start: f64, max: f64, tolerance: f64) -> Self {
        let max = by.steps(max).max(1);
        Search {
            by,
            max,
            tolerance,
            next: Some(by.steps(start).clamp(1, max)),
            lo: None,
            hi: None,
            hi_inconclusive: false,
        }
    }

    /// The next level to probe, or `None` when the search is over.
    pub fn next(&self) -> Option<f64> {
        self.next.map(|n| self.by.level(n))
    }

    /// Take a probe's decision. An inconclusive probe at its cap counts
    /// as not passing, the bracket says so, and the search ends there: a
    /// level that could not be decided is never replaced by a lower one
    /// (that would answer another question than the one asked).
    pub fn record(&mut self, level: f64, decision: Decision) {
        let n = self.by.steps(level);
        if decision == Decision::Pass {
            self.lo = Some(self.lo.map_or(n, |l| l.max(n)));
        } else if self.hi.is_none_or(|h| n <= h) {
            self.hi_inconclusive = decision == Decision::Inconclusive;
            self.hi = Some(n);
        }
        self.next = if decision == Decision::Inconclusive {
            None
        } else {
            self.plan()
        };
    }

    fn plan(&self) -> Option<u32> {
        let lo = self.lo.unwrap_or(0);
        match self.hi {
            // Still climbing: double, up to the maximum.
            None if lo >= self.max => None,
            None => Some(lo.saturating_mul(2).clamp(1, self.max)),
            Some(hi) => {
                let width = f64::from(hi.saturating_sub(lo));
                let enough = (self.tolerance * f64::from(lo)).max(1.0);
                (hi > lo + 1 && width > enough).then(|| lo + (hi - lo) / 2)
            }
        }
    }

    /// What the search found.
    pub fn outcome(&self, probes: &[Probe]) -> Capacity {
        let binding = self.hi.and_then(|h| {
            probes
                .iter()
                .rev()
                .find(|p| self.by.steps(p.level) == h)
                .and_then(|p| p.checks.iter().max_by_key(|c| c.decision))
                .map(|c| c.metric.clone())
        });
        Capacity {
            c_star: self.lo.map(|n| self.by.level(n)),
            first_fail: self.hi.map(|n| self.by.level(n)),
            bracket_inconclusive: self.hi_inconclusive,
            binding,
        }
    }
}

/// Pooled histogram of one latency of a run.
fn pooled(r: &RunResult, base: Base) -> LatencyHist {
    crate::result::values::pooled(&r.steps, base)
}

/// Judge a probe's run against the objectives.
pub fn judge(r: &RunResult, objectives: &[Objective]) -> Vec<SloCheck> {
    objectives
        .iter()
        .map(|o| match slo::latency_quantile(&o.metric) {
            Some((prefix, p)) => slo::quantile_check(&o.metric, &pooled(r, prefix), p, o.limit, Z),
            None => {
                slo::proportion_check(&o.metric, r.totals.failed, r.totals.requests, o.limit, Z)
            }
        })
        .collect()
}

/// A probe's figures from its run and checks.
pub fn probe(
    level: f64,
    extensions: u32,
    r: &RunResult,
    checks: Vec<SloCheck>,
    note: Option<String>,
) -> Probe {
    let (ttft, tpot) = (pooled(r, Base::Ttft), pooled(r, Base::Tpot));
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    Probe {
        level,
        measured_s: r.window.duration_s,
        extensions,
        decision: slo::combine(&checks),
        checks,
        note,
        requests: r.totals.requests,
        ttft_p50_ms: finite(ttft.quantile_ms(0.5)),
        ttft_p90_ms: finite(ttft.quantile_ms(0.9)),
        tpot_p50_ms: finite(tpot.quantile_ms(0.5)),
        output_tokens_per_s: r.totals.output_tokens_per_s,
        goodput_per_s: r.totals.goodput_per_s,
    }
}

/// A capacity judged against a baseline capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityVerdict {
    /// `flora-gate/capacity-verdict`.
    pub kind: String,
    /// pass, warn, fail or improved.
    pub verdict: super::Status,
    /// One line: `capacity 48 → 40 users at ttft_p90 ≤ 800`.
    pub headline: String,
    /// Baseline C* and first failing level.
    pub baseline: Capacity,
    /// Current C* and first failing level.
    pub current: Capacity,
    /// The margin that applied.
    pub margin: f64,
}

/// Compare capacities under the same objectives: a regression when even
/// the most the current run could hold (below its first failing level) is
/// more than `margin` under the least the baseline held (its C*); an
/// improvement the other way round; otherwise a pass, or a warning when a
/// bracket is inconclusive. `Err` when the objectives differ.
pub fn compare(
    base: &CapacityResult,
    cur: &CapacityResult,
    margin: f64,
) -> Result<CapacityVerdict, String> {
    if base.objectives != cur.objectives {
        return Err(format!(
            "the two capacity results were found under different objectives ({} against {}); compare them under the same `--slo`",
            Objective::labels(&base.objectives),
            Objective::labels(&cur.objectives)
        ));
    }
    if base.search.by != cur.search.by {
        return Err(format!(
            "one capacity counts {} and the other {}; search both `--by` the same",
            base.search.by.heading(),
            cur.search.by.heading()
        ));
    }
    let (b_lo, b_hi) = base.bounds();
    let (c_lo, c_hi) = cur.bounds();
    let regressed = c_hi.is_some_and(|hi| hi < b_lo * (1.0 - margin));
    let improved = b_hi.is_some_and(|hi| c_lo > hi * (1.0 + margin));
    let inconclusive = base.capacity.bracket_inconclusive || cur.capacity.bracket_inconclusive;
    let verdict = if regressed {
        super::Status::Fail
    } else if improved {
        super::Status::Improved
    } else if inconclusive {
        super::Status::Warn
    } else {
        super::Status::Pass
    };
    // `48 → 40 users`: the unit once, after the current value.
    let unit = |r: &CapacityResult| {
        let s = r.shown();
        match r.search.by {
            By::Users => s.trim_end_matches(" users").to_string(),
            By::Rate => s,
        }
    };
    Ok(CapacityVerdict {
        kind: "flora-gate/capacity-verdict".into(),
        verdict,
        headline: format!(
            "capacity {} → {}{} at {}{}",
            unit(base),
            unit(cur),
            if cur.search.by == By::Users && cur.capacity.c_star.is_some() {
                " users"
            } else {
                ""
            },
            Objective::labels(&cur.objectives),
            if inconclusive {
                " (a bracket is inconclusive)"
            } else {
                ""
            }
        ),
        baseline: base.capacity.clone(),
        current: cur.capacity.clone(),
        margin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::capacity::{SearchSettings, KIND, SCHEMA_VERSION};

    /// Run the search against a service that holds `c`.
    fn search_by(by: By, start: f64, max: f64, c: f64) -> (Vec<f64>, Capacity) {
        let mut s = Search::new(by, start, max, 0.1);
        let mut levels = Vec::new();
        while let Some(n) = s.next() {
            levels.push(n);
            s.record(
                n,
                if n <= c {
                    Decision::Pass
                } else {
                    Decision::Fail
                },
            );
            assert!(levels.len() < 40, "{levels:?}");
        }
        (levels, s.outcome(&[]))
    }

    fn search(start: f64, max: f64, c: f64) -> (Vec<f64>, Capacity) {
        search_by(By::Users, start, max, c)
    }

    #[test]
    fn the_search_doubles_then_bisects_to_within_its_tolerance() {
        let (levels, cap) = search(8.0, 2000.0, 35.0);
        assert_eq!(levels, [8.0, 16.0, 32.0, 64.0, 48.0, 40.0, 36.0, 34.0]);
        assert_eq!((cap.c_star, cap.first_fail), (Some(34.0), Some(36.0)));
        for c in [1.0, 7.0, 99.0, 500.0, 1999.0] {
            let (levels, cap) = search(4.0, 2000.0, c);
            let (lo, hi) = (cap.c_star.expect("a pass"), cap.first_fail.expect("a fail"));
            assert!(lo <= c && c < hi, "{c}: [{lo}, {hi}]");
            assert!(hi - lo <= (0.1 * lo).max(1.0), "{c}: [{lo}, {hi}]");
            assert!(levels.len() <= 20, "{c}: {levels:?}");
        }
        // Holding the maximum: no failing level; failing at one user: no pass.
        assert_eq!(search(8.0, 100.0, 500.0).1.c_star, Some(100.0));
        assert_eq!(search(8.0, 100.0, 500.0).1.first_fail, None);
        let (levels, none) = search(8.0, 100.0, 0.0);
        assert_eq!((none.c_star, none.first_fail), (None, Some(1.0)));
        assert_eq!(levels, [8.0, 4.0, 2.0, 1.0]);
    }

    #[test]
    fn a_rate_search_works_in_tenths_of_a_start_per_second() {
        let (levels, cap) = search_by(By::Rate, 1.0, 500.0, 3.33);
        assert_eq!(&levels[..3], [1.0, 2.0, 4.0]);
        let (lo, hi) = (cap.c_star.expect("a pass"), cap.first_fail.expect("a fail"));
        assert!(lo <= 3.33 && 3.33 < hi && hi - lo <= 0.35, "[{lo}, {hi}]");
        // Every level is a whole number of tenths.
        assert!(levels
            .iter()
            .all(|l| ((l * 10.0).round() - l * 10.0).abs() < 1e-9));
        // Below the first level: halves down to 0.1/s.
        let (_, slow) = search_by(By::Rate, 1.0, 500.0, 0.25);
        assert_eq!((slow.c_star, slow.first_fail), (Some(0.2), Some(0.3)));
        assert_eq!(By::Rate.show(12.5), "12.5/s");
        assert_eq!(By::Users.show(48.0), "48 users");
    }

    fn result(c_star: Option<f64>, first_fail: Option<f64>) -> CapacityResult {
        CapacityResult {
            schema_version: SCHEMA_VERSION,
            kind: KIND.into(),
            scenario: crate::result::ScenarioRef {
                name: "s".into(),
                origin: "bundled:s".into(),
                sha256: "0".repeat(64),
            },
            target: "http://127.0.0.1:1".into(),
            objectives: vec![Objective {
                metric: "ttft_p90".into(),
                limit: 800.0,
            }],
            search: SearchSettings {
                by: By::Users,
                start: 8.0,
                max: 2000.0,
                tolerance: 0.1,
                probe_s: 4.0,
                warmup_s: 1.0,
                max_extensions: 2,
            },
            capacity: Capacity {
                c_star,
                first_fail,
                bracket_inconclusive: false,
                binding: None,
            },
            probes: Vec::new(),
            elapsed_s: 1.0,
            requests: 1,
            stopped: None,
        }
    }

    #[test]
    fn capacities_regress_only_beyond_the_margin_and_both_brackets() {
        use super::super::Status;
        let base = result(Some(48.0), Some(52.0));
        let v = compare(&base, &result(Some(40.0), Some(44.0)), 0.1).expect("same objectives");
        assert_eq!(v.verdict, Status::Fail);
        assert_eq!(v.headline, "capacity 48 → 40 users at TTFT p90 ≤ 800 ms");
        // 44 to 47 users: within the 10% margin of 48.
        assert_eq!(
            compare(&base, &result(Some(44.0), Some(48.0)), 0.1)
                .expect("ok")
                .verdict,
            Status::Pass
        );
        assert_eq!(
            compare(&base, &result(Some(64.0), Some(70.0)), 0.1)
                .expect("ok")
                .verdict,
            Status::Improved
        );
        let most = compare(&base, &result(Some(2000.0), None), 0.1).expect("ok");
        assert_eq!(most.verdict, Status::Improved);
        assert_eq!(
            most.headline,
            "capacity 48 → ≥ 2000 users at TTFT p90 ≤ 800 ms"
        );
        let none = compare(&base, &result(None, Some(1.0)), 0.1).expect("ok");
        assert_eq!(none.verdict, Status::Fail);
        assert_eq!(none.headline, "capacity 48 → none at TTFT p90 ≤ 800 ms");
        let mut other = result(Some(48.0), Some(52.0));
        other.objectives[0].limit = 500.0;
        assert!(compare(&base, &other, 0.1).is_err());
        let mut rate = result(Some(4.8), Some(5.2));
        rate.search.by = By::Rate;
        assert!(compare(&base, &rate, 0.1).is_err());
        let mut unsure = result(Some(48.0), Some(52.0));
        unsure.capacity.bracket_inconclusive = true;
        assert_eq!(
            compare(&base, &unsure, 0.1).expect("ok").verdict,
            Status::Warn
        );
    }

    #[test]
    fn an_inconclusive_bracket_says_so() {
        let mut s = Search::new(By::Users, 8.0, 64.0, 0.1);
        s.record(8.0, Decision::Pass);
        s.record(16.0, Decision::Inconclusive);
        assert!(s.outcome(&[]).bracket_inconclusive);
        assert_eq!(s.next(), None, "no lower level replaces an undecided one");
        let mut s = Search::new(By::Users, 8.0, 64.0, 0.1);
        s.record(8.0, Decision::Pass);
        s.record(16.0, Decision::Fail);
        s.record(12.0, Decision::Fail);
        assert!(!s.outcome(&[]).bracket_inconclusive);
    }
}
