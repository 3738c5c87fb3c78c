//! The duet result file: both deployments' merged results and every slot's
//! pooled metrics, for the paired test in the gate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::values::extract_with;
use super::{build as build_result, RunResult};
use crate::engine::duet::{DuetOutput, Side, Slot};
use crate::engine::{Plan, RunOutput};
use crate::error::UserError;
use crate::policy::metrics::{Values, ALL};
use crate::target::Target;

/// Version of the duet format.
pub const SCHEMA_VERSION: u32 = 1;
/// The `kind` field of a duet result.
pub const KIND: &str = "flora-gate/duet";

/// A duet run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DuetResult {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// [`KIND`].
    pub kind: String,
    /// Seed of the slot order.
    pub seed: u64,
    /// The reference deployment's merged result.
    pub reference: RunResult,
    /// The candidate deployment's merged result.
    pub candidate: RunResult,
    /// Every slot in time order.
    pub slots: Vec<Slot>,
    /// What the reader should know about how the duet ran (lengthened or
    /// thin slots).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl DuetResult {
    /// Slot metrics from a slot's pooled values.
    pub fn slot_metrics(v: &Values) -> BTreeMap<String, Option<f64>> {
        v.iter()
            .map(|(k, x)| (k.clone(), Some(*x).filter(|x| x.is_finite())))
            .collect()
    }

    /// (reference, candidate) values of one metric, per pair where both
    /// sides measured a positive finite value.
    pub fn pair_values(&self, metric: &str) -> Vec<(f64, f64)> {
        let mut pairs: BTreeMap<u32, (Option<f64>, Option<f64>)> = Default::default();
        for s in &self.slots {
            let v = s.metrics.get(metric).copied().flatten();
            let e = pairs.entry(s.pair).or_default();
            match s.side {
                Side::Reference => e.0 = v,
                Side::Candidate => e.1 = v,
            }
        }
        pairs
            .values()
            .filter_map(|p| match p {
                (Some(r), Some(c)) if r.is_finite() && c.is_finite() && *r > 0.0 && *c > 0.0 => {
                    Some((*r, *c))
                }
                _ => None,
            })
            .collect()
    }

    /// ln(candidate / reference) of one metric, per pair.
    pub fn log_ratios(&self, metric: &str) -> Vec<f64> {
        self.pair_values(metric)
            .into_iter()
            .map(|(r, c)| (c / r).ln())
            .collect()
    }

    /// Each side's geometric mean over the pairs of [`Self::pair_values`]:
    /// the figures whose ratio is the paired test's change, exactly.
    pub fn paired_means(&self, metric: &str) -> Option<(f64, f64)> {
        let v = self.pair_values(metric);
        if v.is_empty() {
            return None;
        }
        let n = v.len() as f64;
        let (lr, lc) = v
            .iter()
            .fold((0.0, 0.0), |(a, b), (r, c)| (a + r.ln(), b + c.ln()));
        Some(((lr / n).exp(), (lc / n).exp()))
    }

    /// Write as pretty JSON, atomically.
    pub fn write(&self, path: &std::path::Path) -> Result<(), UserError> {
        crate::jsonfile::write(path, self, "duet result")
    }

    /// Parse duet JSON; `path` names it in errors.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Self, UserError> {
        let d: Self = crate::jsonfile::parse(
            text,
            path,
            &crate::jsonfile::FileType {
                what: "duet result",
                kind: KIND,
                version: SCHEMA_VERSION,
                oldest: SCHEMA_VERSION,
                stale_hint: "run the duet again with this version",
            },
        )?;
        for (side, r) in [("reference", &d.reference), ("candidate", &d.candidate)] {
            r.validate().map_err(|(field, msg)| {
                UserError::invalid("duet result", path, Some(format!("`{side}.{field}`")), msg)
            })?;
        }
        Ok(d)
    }
}

/// A slot's pooled metrics, as the paired test reads them.
pub fn slot_metrics(plan: &Plan, out: &RunOutput) -> BTreeMap<String, Option<f64>> {
    // A slot whose records cannot be read has no figures: its pair is skipped.
    let vals = build_result(plan, out)
        .ok()
        .and_then(|r| extract_with(&r, &r.gate.metrics).remove(ALL))
        .unwrap_or_default();
    DuetResult::slot_metrics(&vals)
}

/// The duet result of what the engine measured.
pub fn build(plan: &Plan, reference: &Target, out: &DuetOutput) -> Result<DuetResult, UserError> {
    let side = |target: &Target, o: &RunOutput| {
        let mut side = Plan {
            target: target.clone(),
            ..plan.clone()
        };
        side.load.blocks = side.load.blocks.max(6);
        build_result(&side, o)
    };
    Ok(DuetResult {
        schema_version: SCHEMA_VERSION,
        kind: KIND.into(),
        seed: plan.load.seed,
        candidate: side(&plan.target, &out.candidate)?,
        reference: side(reference, &out.reference)?,
        slots: out.slots.clone(),
        notes: out.notes.clone(),
    })
}
