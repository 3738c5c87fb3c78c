//! Service-level objectives as data: what a capacity probe (or a
//! hypothesis) is judged on, and what the judgement says. The judging is
//! the gate's ([`crate::gate::slo`]).

use serde::{Deserialize, Serialize};

use super::metrics::{Base, Metric};
use crate::stats::format::trim_number;

/// An objective on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// `ttft_p90`, `tpot_p50`, `e2e_p90`, `error_rate`, …
    pub metric: String,
    /// The limit: at most this (ms for latencies, a fraction for rates).
    pub limit: f64,
}

impl Objective {
    /// For people: `TTFT p90 ≤ 800 ms`, `error rate ≤ 1%`.
    pub fn label(&self) -> String {
        match Metric::parse(&self.metric) {
            Ok(m) if m.latency().is_some() => {
                format!("{} ≤ {} ms", m.label(), trim_number(self.limit))
            }
            Ok(m) => format!("{} ≤ {}%", m.label(), trim_number(self.limit * 100.0)),
            Err(_) => format!("{} ≤ {}", self.metric, trim_number(self.limit)),
        }
    }

    /// Several, joined: `TTFT p90 ≤ 800 ms, error rate ≤ 1%`.
    pub fn labels(objectives: &[Objective]) -> String {
        objectives
            .iter()
            .map(Objective::label)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the evidence says about one objective, or a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Held, with confidence.
    Pass,
    /// Too close to call: measure more.
    Inconclusive,
    /// Broken, with confidence.
    Fail,
}

/// One objective judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloCheck {
    /// The objective.
    pub metric: String,
    /// Its limit.
    pub limit: f64,
    /// The point estimate (`null`: nothing measured; +∞ among failures).
    pub estimate: Option<f64>,
    /// Lower confidence bound.
    pub low: Option<f64>,
    /// Upper confidence bound.
    pub high: Option<f64>,
    /// The verdict on it.
    pub decision: Decision,
}

/// Check an objective's name: `Err(why)` for one a probe cannot judge.
pub fn check_metric(metric: &str) -> Result<(), String> {
    let m = Metric::parse(metric)?;
    if m.base == Base::ErrorRate || m.latency().is_some() {
        return Ok(());
    }
    Err(format!(
        "`{metric}` is not a metric a capacity probe can judge; use error_rate or a latency quantile (ttft_p90, tpot_p50, itl_p99, e2e_p95, …)"
    ))
}
