//! Baselines: per-run summaries of N runs of one scenario, with provenance.
//! `schema/baseline.schema.json` describes the file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::UserError;
use crate::policy::Policy;
use crate::result::{Block, Host, RunResult, ScenarioRef};

/// Version of the baseline format.
pub const SCHEMA_VERSION: u32 = 1;
/// The `kind` field of a baseline file.
pub const KIND: &str = "flora-gate/baseline";

const FILE_TYPE: crate::jsonfile::FileType = crate::jsonfile::FileType {
    what: "baseline",
    kind: KIND,
    version: SCHEMA_VERSION,
    oldest: SCHEMA_VERSION,
    stale_hint: "refresh it: `flora-gate baseline refresh --scenario … --runs 5 --out FILE`",
};

/// A committed baseline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// [`KIND`].
    pub kind: String,
    /// Where it comes from.
    pub provenance: BaselineProvenance,
    /// The gate policy of the scenario when the baseline was made.
    pub gate: Policy,
    /// One entry per run.
    pub runs: Vec<BaselineRun>,
}

/// Where a baseline comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaselineProvenance {
    /// Version of flora-gate that made it.
    pub tool_version: String,
    /// Git commit of the measured code, when known (`GITHUB_SHA` or `git rev-parse HEAD`).
    pub git_commit: Option<String>,
    /// When it was made, RFC 3339.
    pub created_at: String,
    /// The scenario.
    pub scenario: ScenarioRef,
    /// Target of the runs.
    pub target: String,
    /// Virtual users.
    pub concurrency: u32,
    /// The scenario's variables as the runs used them.
    #[serde(default)]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Load-generator host.
    pub runner: Host,
}

/// One run's summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaselineRun {
    /// Start of the run.
    pub started_at: String,
    /// scope → metric → value; `null` when the value was +∞ or not measured.
    pub metrics: BTreeMap<String, BTreeMap<String, Option<f64>>>,
    /// The run's time blocks.
    pub blocks: Vec<Block>,
}

/// The commit being measured: `GITHUB_SHA`, else `git rev-parse HEAD`.
pub(crate) fn git_commit() -> Option<String> {
    if let Ok(sha) = std::env::var("GITHUB_SHA") {
        if !sha.is_empty() {
            return Some(sha);
        }
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

impl BaselineRun {
    /// Summarise one result.
    pub fn from_result(r: &RunResult) -> Self {
        let metrics = super::values::extract_with(r, &r.gate.metrics)
            .into_iter()
            .map(|(scope, vals)| {
                (
                    scope,
                    vals.into_iter()
                        .map(|(k, v)| (k, Some(v).filter(|x| x.is_finite())))
                        .collect(),
                )
            })
            .collect();
        Self {
            started_at: r.provenance.started_at.clone(),
            metrics,
            blocks: r.blocks.clone(),
        }
    }
}

/// Why a run must not enter a baseline, if it must not: aborted, partial,
/// saturated, or failing beyond the policy's error bound.
pub fn unfit(r: &RunResult) -> Option<String> {
    if r.state() != super::RunState::Complete {
        return Some(format!(
            "it is {} ({})",
            r.status,
            r.status_reason.as_deref().unwrap_or("no reason recorded")
        ));
    }
    if r.saturated() {
        return Some("the load generator was saturated during it".into());
    }
    if r.totals.ok == 0 {
        return Some("no request succeeded".into());
    }
    if r.totals.error_rate > r.gate.max_error_rate {
        return Some(format!(
            "{:.1}% of its requests failed, over the {:.1}% bound",
            r.totals.error_rate * 100.0,
            r.gate.max_error_rate * 100.0
        ));
    }
    None
}

impl Baseline {
    /// Add the runs of `newer` (the same setup) and keep the newest `keep`.
    pub fn append(mut self, newer: Baseline, keep: usize, path: &Path) -> Result<Self, UserError> {
        let (a, b) = (&self.provenance, &newer.provenance);
        if a.scenario.sha256 != b.scenario.sha256
            || a.concurrency != b.concurrency
            || (!a.vars.is_empty() && a.vars != b.vars)
        {
            return Err(UserError::invalid(
                "baseline",
                path,
                Some("`provenance`".into()),
                "the new runs measure another scenario, user count or `--var` set than this baseline",
            )
            .with_hint("append only runs of the same setup, or write a new baseline without `--append`"));
        }
        self.runs.extend(newer.runs);
        let drop = self.runs.len().saturating_sub(keep.max(1));
        self.runs.drain(..drop);
        self.provenance = BaselineProvenance {
            vars: newer.provenance.vars.clone(),
            ..newer.provenance
        };
        self.gate = newer.gate;
        Ok(self)
    }

    /// Combine results of one scenario at one concurrency.
    pub fn from_results(
        results: &[(String, RunResult)],
        accept_bad: bool,
    ) -> Result<Self, UserError> {
        let Some((_, first)) = results.first() else {
            return Err(UserError::Environment {
                message: "a baseline needs at least one run".into(),
                hint: None,
            });
        };
        for (name, r) in results {
            if r.provenance.scenario.sha256 != first.provenance.scenario.sha256
                || r.provenance.concurrency != first.provenance.concurrency
                || r.provenance.vars != first.provenance.vars
            {
                return Err(UserError::invalid(
                    "result",
                    name,
                    None,
                    "it comes from another scenario, concurrency or `--var` set than the first result; a baseline holds runs of one setup",
                ));
            }
            if let Some(why) = unfit(r).filter(|_| !accept_bad) {
                return Err(UserError::invalid(
                    "result",
                    name,
                    None,
                    format!("not fit for a baseline: {why}"),
                ));
            }
        }
        Ok(Baseline {
            schema_version: SCHEMA_VERSION,
            kind: KIND.into(),
            provenance: BaselineProvenance {
                tool_version: env!("CARGO_PKG_VERSION").into(),
                git_commit: git_commit(),
                created_at: chrono::Utc::now().to_rfc3339(),
                scenario: first.provenance.scenario.clone(),
                target: crate::target::redact_userinfo(&first.provenance.target),
                concurrency: first.provenance.concurrency,
                vars: first.provenance.vars.clone(),
                runner: first.provenance.host.clone(),
            },
            gate: first.gate.clone(),
            runs: results
                .iter()
                .map(|(name, r)| {
                    // The baseline holds what the gate judges: the policy's stage, if any.
                    r.gated_part(r.gate.stage.as_deref())
                        .map(|p| BaselineRun::from_result(&p))
                        .map_err(|m| UserError::invalid("result", name, None, m))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Finite values of one metric across runs.
    pub fn values(&self, scope: &str, metric: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| {
                r.metrics
                    .get(scope)
                    .and_then(|m| m.get(metric))
                    .copied()
                    .flatten()
            })
            .collect()
    }

    /// Write as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), UserError> {
        crate::jsonfile::write(path, self, "baseline")
    }

    /// Read a baseline file.
    pub fn read(path: &Path) -> Result<Self, UserError> {
        let text = crate::error::read_to_string(path)?;
        Self::parse(&text, path)
    }

    /// Parse baseline JSON; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, UserError> {
        let b: Baseline = crate::jsonfile::parse(text, path, &FILE_TYPE)?;
        if b.runs.is_empty() {
            return Err(UserError::invalid(
                "baseline",
                path,
                Some("`runs`".into()),
                "the baseline holds no runs",
            ));
        }
        b.validate().map_err(|(field, msg)| {
            UserError::invalid("baseline", path, Some(format!("`{field}`")), msg)
                .with_hint("a baseline is made by `flora-gate baseline refresh`; make it again rather than editing it")
        })?;
        Ok(b)
    }

    /// Check every value a verdict could rest on: `Err((field, why))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut v = crate::result::Validator::default();
        v.hash(
            "provenance.scenario.sha256",
            &self.provenance.scenario.sha256,
        );
        for (i, run) in self.runs.iter().enumerate() {
            for (scope, values) in &run.metrics {
                for (metric, x) in values {
                    let Some(x) = *x else { continue };
                    let field = format!("runs[{i}].metrics.{scope}.{metric}");
                    match crate::policy::metrics::metric_def(metric) {
                        Some(d) if d.name == "error_rate" => v.fraction(&field, x),
                        Some(d) if d.unit == "ms" => v.latency(&field, x),
                        _ => v.rate(&field, x),
                    }
                }
            }
            v.blocks(&format!("runs[{i}].blocks"), &run.blocks);
        }
        v.done()
    }
}
