//! A capacity search's result: the levels probed, each with its evidence,
//! and the capacity found between the last passing and the first failing
//! level. The search itself is the gate's ([`crate::gate::capacity`]).

use serde::{Deserialize, Serialize};

use crate::policy::slo::{Decision, Objective, SloCheck};
use crate::stats::format::trim_number;

/// The `kind` of a capacity file.
pub const KIND: &str = "flora-gate/capacity";
/// Its schema version (2: levels in users or a rate, and the search settings).
pub const SCHEMA_VERSION: u32 = 2;
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
            By::Rate => format!("{}/s", trim_number(level)),
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

/// A capacity search and its evidence, as written to `--out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityResult {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// [`KIND`].
    pub kind: String,
    /// The scenario.
    pub scenario: super::ScenarioRef,
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
