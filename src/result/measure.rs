//! The one measurement pipeline: a validated plan in, a result out. Every
//! command that measures (`run`, `gate`, `demo`, `baseline refresh`) and the
//! tests go through [`measure`], so the checks it makes are made once.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::duet::{self, DuetResult};
use super::{build, requests, RunResult};
use crate::engine::spill::Samples;
use crate::engine::{self, Plan};
use crate::error::UserError;

/// A result file of either kind.
#[derive(Debug, Clone)]
pub enum Current {
    /// One run.
    Single(Box<RunResult>),
    /// Reference and candidate in one job.
    Duet(Box<DuetResult>),
}

impl Current {
    /// Read a result or duet result, telling them apart by `kind`.
    pub fn read(path: &Path) -> Result<Self, UserError> {
        let text = crate::error::read_to_string(path)?;
        let kind = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned));
        if kind.as_deref() == Some(duet::KIND) {
            return Ok(Current::Duet(Box::new(DuetResult::parse(&text, path)?)));
        }
        Ok(Current::Single(Box::new(RunResult::parse(&text, path)?)))
    }

    /// The result the report shows: the run, or a duet's candidate.
    pub fn shown(&self) -> &RunResult {
        match self {
            Current::Single(r) => r,
            Current::Duet(d) => &d.candidate,
        }
    }

    /// The duet's reference target, for the report's header.
    pub fn reference(&self) -> Option<&str> {
        match self {
            Current::Single(_) => None,
            Current::Duet(d) => Some(&d.reference.provenance.target),
        }
    }

    /// Write the result file atomically.
    pub fn write(&self, path: &Path) -> Result<(), UserError> {
        match self {
            Current::Single(r) => r.write(path),
            Current::Duet(d) => d.write(path),
        }
    }
}

/// What a measurement left: the result and every request it sent.
#[derive(Debug)]
pub struct Measured {
    /// The result (a run, or a duet).
    pub current: Current,
    /// Every request, by side (`None` for a plain run).
    pub requests: Vec<(Option<&'static str>, Samples)>,
    /// How late after its agreed start a shard began.
    pub late: std::time::Duration,
    /// A shard's clock minus the target's, ms.
    pub clock_offset_ms: Option<f64>,
    /// The live endpoint, lingering with the final figures.
    pub endpoint: Option<crate::engine::live::Lingering>,
}

impl Measured {
    /// Write the result, then the request log when asked: files before
    /// anything that can fail afterwards.
    pub fn write(
        &self,
        out: &Path,
        requests_out: Option<&Path>,
        plan: &Plan,
    ) -> Result<(), UserError> {
        self.current.write(out)?;
        if let Some(p) = requests_out {
            let sides: Vec<(Option<&str>, &Samples)> =
                self.requests.iter().map(|(side, s)| (*side, s)).collect();
            requests::write_sides(p, &plan.scenario, &sides)?;
        }
        Ok(())
    }
}

/// Measure a plan: one run, or a duet when the plan has a reference.
pub async fn measure(
    plan: &Plan,
    signals: CancellationToken,
    kill: CancellationToken,
) -> Result<Measured, UserError> {
    let plan = &super::calibrate::calibrate(plan, &signals, &kill).await?;
    match &plan.reference {
        Some(reference) => {
            let out = engine::duet::run_duet(
                plan.clone(),
                reference.clone(),
                plan.load.blocks,
                signals,
                kill,
                &duet::slot_metrics,
            )
            .await?;
            let result = duet::build(plan, reference, &out)?;
            Ok(Measured {
                late: std::time::Duration::ZERO,
                clock_offset_ms: None,
                current: Current::Duet(Box::new(result)),
                endpoint: None,
                requests: vec![
                    (Some("reference"), out.reference.recorder.records),
                    (Some("candidate"), out.candidate.recorder.records),
                ],
            })
        }
        None => {
            let mut out = engine::run(plan.clone(), signals, kill).await?;
            let endpoint = out.endpoint.take();
            let result = build(plan, &out)?;
            Ok(Measured {
                late: out.late,
                clock_offset_ms: out.clock_offset_ms,
                current: Current::Single(Box::new(result)),
                requests: vec![(None, out.recorder.records)],
                endpoint,
            })
        }
    }
}
