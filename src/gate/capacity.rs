//! Capacity: the most users at which every SLO holds. The search is a pure
//! state machine (double until a level fails, then bisect) fed with the
//! decisions of probes; a probe's decision comes from [`super::slo`] on the
//! pooled histograms of its run.

use serde::{Deserialize, Serialize};

use super::slo::{self, Decision, Objective, SloCheck};
use crate::result::RunResult;
use crate::scenario::ResponseKind;
use crate::stats::LatencyHist;

/// The `kind` of a capacity file.
pub const KIND: &str = "flora-gate/capacity";
/// Its schema version.
pub const SCHEMA_VERSION: u32 = 1;
/// Two-sided z of the probes' intervals (99%).
pub const Z: f64 = 2.576;

/// One probe: a level measured, perhaps more than once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Users.
    pub users: u32,
    /// Measured seconds of its last (longest) run.
    pub measured_s: f64,
    /// Times it was extended because the evidence was not clear.
    pub extensions: u32,
    /// Its decision.
    pub decision: Decision,
    /// Every objective judged.
    pub checks: Vec<SloCheck>,
    /// Measured requests of its last run.
    pub requests: u64,
    /// Pooled TTFT p50 and p90, TPOT p50 (ms), output tokens and goodput per second.
    pub ttft_p50_ms: Option<f64>,
    /// TTFT p90.
    pub ttft_p90_ms: Option<f64>,
    /// TPOT p50.
    pub tpot_p50_ms: Option<f64>,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
    /// Requests meeting the scenario's `[slo]`, per second.
    pub goodput_per_s: f64,
}

/// Where the search ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// The largest level that passed (`null`: none did).
    pub c_star: Option<u32>,
    /// The smallest level that did not pass (`null`: none up to the maximum).
    pub first_fail: Option<u32>,
    /// That level was inconclusive at its cap, not a clear failure.
    pub bracket_inconclusive: bool,
    /// The objective that failed first at `first_fail`.
    pub binding: Option<String>,
}

/// Double, then bisect. Levels are users; `lo` is the largest pass, `hi`
/// the smallest level that did not pass.
#[derive(Debug, Clone)]
pub struct Search {
    max: u32,
    tolerance: f64,
    next: Option<u32>,
    lo: Option<u32>,
    hi: Option<u32>,
    hi_inconclusive: bool,
}

impl Search {
    /// From `start` up to `max` users, until the bracket is within
    /// `tolerance` of the passing level (or one user).
    pub fn new(start: u32, max: u32, tolerance: f64) -> Self {
        Search {
            max,
            tolerance,
            next: Some(start.clamp(1, max)),
            lo: None,
            hi: None,
            hi_inconclusive: false,
        }
    }

    /// The next level to probe, or `None` when the search is over.
    pub fn next(&self) -> Option<u32> {
        self.next
    }

    /// Take a probe's decision (an inconclusive probe at its cap counts as
    /// not passing, and the bracket says so).
    pub fn record(&mut self, users: u32, decision: Decision) {
        if decision == Decision::Pass {
            self.lo = Some(self.lo.map_or(users, |l| l.max(users)));
        } else if self.hi.is_none_or(|h| users <= h) {
            self.hi_inconclusive = decision == Decision::Inconclusive;
            self.hi = Some(users);
        }
        self.next = self.plan();
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
                .find(|p| p.users == h)
                .and_then(|p| p.checks.iter().max_by_key(|c| c.decision))
                .map(|c| c.metric.clone())
        });
        Capacity {
            c_star: self.lo,
            first_fail: self.hi,
            bracket_inconclusive: self.hi_inconclusive,
            binding,
        }
    }
}

/// Pooled histogram of one latency over the streamed steps (or every step,
/// for E2E), failures included.
fn pooled(r: &RunResult, prefix: &str) -> LatencyHist {
    let mut h = LatencyHist::new();
    for s in &r.steps {
        let streamed = s.response == ResponseKind::Sse;
        let b64 = match prefix {
            "ttft" if streamed => &s.histograms.ttft,
            "tpot" if streamed => &s.histograms.tpot,
            "e2e" => &s.histograms.e2e,
            _ => continue,
        };
        if let Ok(x) = LatencyHist::decode(b64, s.failed) {
            h.merge(&x);
        }
    }
    h
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
pub fn probe(users: u32, extensions: u32, r: &RunResult, checks: Vec<SloCheck>) -> Probe {
    let (ttft, tpot) = (pooled(r, "ttft"), pooled(r, "tpot"));
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    Probe {
        users,
        measured_s: r.window.duration_s,
        extensions,
        decision: slo::combine(&checks),
        checks,
        requests: r.totals.requests,
        ttft_p50_ms: finite(ttft.quantile_ms(0.5)),
        ttft_p90_ms: finite(ttft.quantile_ms(0.9)),
        tpot_p50_ms: finite(tpot.quantile_ms(0.5)),
        output_tokens_per_s: r.totals.output_tokens_per_s,
        goodput_per_s: r.totals.goodput_per_s,
    }
}

/// A capacity search and its evidence, as written to `--out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityResult {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// [`KIND`].
    pub kind: String,
    /// The scenario.
    pub scenario: crate::result::ScenarioRef,
    /// The target.
    pub target: String,
    /// The objectives.
    pub objectives: Vec<Objective>,
    /// What was found.
    pub capacity: Capacity,
    /// Every probe, in order.
    pub probes: Vec<Probe>,
    /// Wall time of the search, seconds.
    pub elapsed_s: f64,
    /// Measured requests spent.
    pub requests: u64,
    /// Why the search stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

const FILE_TYPE: crate::jsonfile::FileType = crate::jsonfile::FileType {
    what: "capacity result",
    kind: KIND,
    version: SCHEMA_VERSION,
    oldest: SCHEMA_VERSION,
    stale_hint: "run `flora-gate capacity` again with this version",
};

impl CapacityResult {
    /// Read a capacity file, refusing other kinds and versions.
    pub fn read(path: &std::path::Path) -> Result<Self, crate::error::UserError> {
        crate::jsonfile::read(path, &FILE_TYPE)
    }

    /// Whether a JSON file says it is a capacity result (by its `kind`).
    pub fn is_one(path: &std::path::Path) -> bool {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(|k| k == KIND))
            .unwrap_or(false)
    }

    /// The capacity's bounds in users: at least `c_star`, below `first_fail`
    /// (unbounded above when no level failed).
    pub fn bounds(&self) -> (u32, Option<u32>) {
        let c = &self.capacity;
        (
            c.c_star.unwrap_or(0),
            c.first_fail.map(|f| f.saturating_sub(1)),
        )
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
        return Err(
            "the two capacity results were found under different objectives; compare them under the same `--slo`".into(),
        );
    }
    let (b_lo, b_hi) = base.bounds();
    let (c_lo, c_hi) = cur.bounds();
    let regressed = c_hi.is_some_and(|hi| f64::from(hi) < f64::from(b_lo) * (1.0 - margin));
    let improved = b_hi.is_some_and(|hi| f64::from(c_lo) > f64::from(hi) * (1.0 + margin));
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
    let show = |c: &Capacity| {
        c.c_star.map_or("none".to_string(), |n| {
            if c.first_fail.is_none() {
                format!("≥ {n}")
            } else {
                n.to_string()
            }
        })
    };
    let slos = cur
        .objectives
        .iter()
        .map(|o| format!("{} ≤ {}", o.metric, o.limit))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(CapacityVerdict {
        kind: "flora-gate/capacity-verdict".into(),
        verdict,
        headline: format!(
            "capacity {} → {} users at {slos}{}",
            show(&base.capacity),
            show(&cur.capacity),
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

    /// Run the search against a service that holds `c` users.
    fn search(start: u32, max: u32, c: u32) -> (Vec<u32>, Capacity) {
        let mut s = Search::new(start, max, 0.1);
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

    #[test]
    fn the_search_doubles_then_bisects_to_within_its_tolerance() {
        let (levels, cap) = search(8, 2000, 35);
        assert_eq!(levels, [8, 16, 32, 64, 48, 40, 36, 34]);
        assert_eq!((cap.c_star, cap.first_fail), (Some(34), Some(36)));
        for c in [1, 7, 99, 500, 1999] {
            let (levels, cap) = search(4, 2000, c);
            let (lo, hi) = (cap.c_star.expect("a pass"), cap.first_fail.expect("a fail"));
            assert!(lo <= c && c < hi, "{c}: [{lo}, {hi}]");
            assert!(
                f64::from(hi - lo) <= (0.1 * f64::from(lo)).max(1.0),
                "{c}: [{lo}, {hi}]"
            );
            assert!(levels.len() <= 20, "{c}: {levels:?}");
        }
        // Holding the maximum: no failing level; failing at one user: no pass.
        assert_eq!(search(8, 100, 500).1.c_star, Some(100));
        assert_eq!(search(8, 100, 500).1.first_fail, None);
        let (levels, none) = search(8, 100, 0);
        assert_eq!((none.c_star, none.first_fail), (None, Some(1)));
        assert_eq!(levels, [8, 4, 2, 1]);
    }

    fn result(c_star: Option<u32>, first_fail: Option<u32>) -> CapacityResult {
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
        let base = result(Some(48), Some(52));
        let v = compare(&base, &result(Some(40), Some(44)), 0.1).expect("same objectives");
        assert_eq!(v.verdict, Status::Fail);
        assert_eq!(v.headline, "capacity 48 → 40 users at ttft_p90 ≤ 800");
        // 44 to 47 users: within the 10% margin of 48.
        assert_eq!(
            compare(&base, &result(Some(44), Some(48)), 0.1)
                .expect("ok")
                .verdict,
            Status::Pass
        );
        assert_eq!(
            compare(&base, &result(Some(64), Some(70)), 0.1)
                .expect("ok")
                .verdict,
            Status::Improved
        );
        assert_eq!(
            compare(&base, &result(Some(2000), None), 0.1)
                .expect("ok")
                .verdict,
            Status::Improved
        );
        let mut other = result(Some(48), Some(52));
        other.objectives[0].limit = 500.0;
        assert!(compare(&base, &other, 0.1).is_err());
        let mut unsure = result(Some(48), Some(52));
        unsure.capacity.bracket_inconclusive = true;
        assert_eq!(
            compare(&base, &unsure, 0.1).expect("ok").verdict,
            Status::Warn
        );
    }

    #[test]
    fn an_inconclusive_bracket_says_so() {
        let mut s = Search::new(8, 64, 0.1);
        s.record(8, Decision::Pass);
        s.record(16, Decision::Inconclusive);
        assert!(s.outcome(&[]).bracket_inconclusive);
        s.record(12, Decision::Fail);
        assert!(!s.outcome(&[]).bracket_inconclusive);
    }
}
