//! Capacity: the most users at which every SLO holds. The search is a pure
//! state machine (double until a level fails, then bisect) fed with the
//! decisions of probes; a probe's decision comes from [`super::slo`] on the
//! pooled histograms of its run.

use serde::{Deserialize, Serialize};

use super::slo::{self, Decision, Objective, SloCheck};
use crate::result::RunResult;
use crate::stats::LatencyHist;

/// The `kind` of a capacity file.
pub const KIND: &str = "flora-gate/capacity";
/// Its schema version (2: levels in users or a rate, and the search settings).
pub const SCHEMA_VERSION: u32 = 2;
/// Two-sided z of the probes' intervals (99%).
pub const Z: f64 = 2.576;

/// What a level counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// Concurrent users (closed loop).
    #[default]
    Users,
    /// Workflow starts per second (open loop).
    Rate,
}

impl By {
    /// The smallest step between levels: one user, or 0.1 per second.
    pub fn resolution(self) -> f64 {
        match self {
            By::Users => 1.0,
            By::Rate => 0.1,
        }
    }

    /// A level in whole steps (what the search counts in).
    pub fn steps(self, level: f64) -> u32 {
        // Levels are within the caps (2,000 users, 10,000/s): no overflow.
        (level / self.resolution()).round().max(0.0) as u32
    }

    /// Whole steps back to a level.
    pub fn level(self, steps: u32) -> f64 {
        match self {
            By::Users => f64::from(steps),
            By::Rate => f64::from(steps) / 10.0,
        }
    }

    /// A level for people: `48 users`, `12.5/s`.
    pub fn show(self, level: f64) -> String {
        match self {
            By::Users if level == 1.0 => "1 user".into(),
            By::Users => format!("{level:.0} users"),
            By::Rate => format!("{}/s", slo::trim_number(level)),
        }
    }

    /// The column heading of levels.
    pub fn heading(self) -> &'static str {
        match self {
            By::Users => "users",
            By::Rate => "workflows/s",
        }
    }
}

/// How the search was run, kept so that a later search (the gate's, the
/// nightly refresh's) repeats it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    /// Users or rate.
    pub by: By,
    /// The first level.
    pub start: f64,
    /// The most tried.
    pub max: f64,
    /// Bracket width to stop at, as a share of the passing level.
    pub tolerance: f64,
    /// Measured seconds of a probe before any extension.
    pub probe_s: f64,
    /// Warm-up seconds of a probe.
    pub warmup_s: f64,
    /// Extensions (each doubling) of an unclear probe.
    pub max_extensions: u32,
}

/// One probe: a level measured, perhaps more than once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Users, or workflow starts per second.
    pub level: f64,
    /// Measured seconds of its last (longest) run.
    pub measured_s: f64,
    /// Times it was extended because the evidence was not clear.
    pub extensions: u32,
    /// Its decision.
    pub decision: Decision,
    /// Every objective judged.
    pub checks: Vec<SloCheck>,
    /// Why it ended early or failed outside the objectives (a runaway
    /// queue, the circuit breaker, an offered rate not taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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
    pub c_star: Option<f64>,
    /// The smallest level that did not pass (`null`: none up to the maximum).
    pub first_fail: Option<f64>,
    /// That level was inconclusive at its cap, not a clear failure.
    pub bracket_inconclusive: bool,
    /// The objective that failed first at `first_fail`.
    pub binding: Option<String>,
}

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
fn pooled(r: &RunResult, prefix: &str) -> LatencyHist {
    slo::pooled(&r.steps, prefix)
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
    let (ttft, tpot) = (pooled(r, "ttft"), pooled(r, "tpot"));
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
    /// How the search ran.
    pub search: SearchSettings,
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

    /// The capacity's bounds: at least `c_star`, at most one step below
    /// `first_fail` (unbounded above when no level failed).
    pub fn bounds(&self) -> (f64, Option<f64>) {
        let c = &self.capacity;
        let step = self.search.by.resolution();
        (
            c.c_star.unwrap_or(0.0),
            c.first_fail.map(|f| (f - step).max(0.0)),
        )
    }

    /// C* for people: `48 users`, `≥ 2000 users` (nothing failed up to the
    /// most tried), `none`.
    pub fn shown(&self) -> String {
        let by = self.search.by;
        match (self.capacity.c_star, self.capacity.first_fail) {
            (Some(c), None) => format!("≥ {}", by.show(c)),
            (Some(c), Some(_)) => by.show(c),
            (None, _) => "none".into(),
        }
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
