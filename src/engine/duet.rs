//! Duet load shape: the measured time is cut into slot pairs; in each pair
//! the reference and the candidate get one slot each, in random order, at
//! the same concurrency. Runner and time-of-day drift then hit both sides
//! alike and cancel in the paired test.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::{run, Plan, Recorder, RunOutput, RunStatus};
use crate::error::UserError;
use crate::gate::duet::{DuetResult, Side, Slot};
use crate::gate::metrics::{self, ALL};
use crate::result::{self, RunMeta};

struct SideRuns {
    outputs: Vec<(Duration, RunOutput)>,
}

impl SideRuns {
    /// Merge the slot runs of one side into one output on the duet's clock.
    fn merge(self, steps: usize) -> Option<RunOutput> {
        let mut it = self.outputs.into_iter();
        let (off0, first) = it.next()?;
        let mut rec = Recorder::new(steps);
        let shift = |mut r: Recorder, off: Duration| {
            for s in &mut r.samples {
                s.start += off;
            }
            for i in &mut r.iterations {
                i.start += off;
            }
            r
        };
        let mut status = first.status.clone();
        let mut self_check = first.self_check.clone();
        let started_at = first.started_at;
        let mut end = off0 + first.elapsed;
        rec.absorb(shift(first.recorder, off0));
        for (off, o) in it {
            end = off + o.elapsed;
            if o.self_check.saturated {
                self_check = o.self_check.clone();
            }
            if o.status != RunStatus::Complete {
                status = o.status.clone();
            }
            rec.absorb(shift(o.recorder, off));
        }
        rec.samples.sort_by_key(|s| s.start);
        rec.iterations.sort_by_key(|s| s.start);
        Some(RunOutput {
            recorder: rec,
            started_at,
            elapsed: end.saturating_sub(off0),
            status,
            self_check,
        })
    }
}

/// Run a duet: `plan.target` is the candidate, `reference` the baseline
/// deployment. `pairs` slot pairs share `plan.load.duration`.
pub async fn run_duet(
    plan: Plan,
    reference: String,
    pairs: u32,
    signals: CancellationToken,
    kill: CancellationToken,
) -> Result<DuetResult, UserError> {
    let total = plan.load.duration.ok_or_else(|| {
        UserError::flag(
            "--baseline-target",
            "a duet needs `--duration` (slots are cut from it)",
        )
    })?;
    let pairs = pairs.max(6);
    let slot = total / (2 * pairs);
    if slot < Duration::from_secs(1) {
        return Err(UserError::flag(
            "--duration",
            format!("{pairs} slot pairs in {total:?} leave {slot:?} per slot; give the duet at least {}s", 2 * pairs),
        ));
    }
    super::preflight(&reference, plan.scenario.timeouts.connect).await?;
    super::preflight(&plan.target, plan.scenario.timeouts.connect).await?;
    let mut rng = SmallRng::seed_from_u64(plan.load.seed ^ 0xD0E7);
    let steps = plan.scenario.steps.len();
    let mut cand = SideRuns {
        outputs: Vec::new(),
    };
    let mut refr = SideRuns {
        outputs: Vec::new(),
    };
    let mut slots = Vec::new();
    let t0 = tokio::time::Instant::now();
    let mut index = 0;
    'pairs: for pair in 0..pairs {
        let order = if rng.random_bool(0.5) {
            [Side::Reference, Side::Candidate]
        } else {
            [Side::Candidate, Side::Reference]
        };
        for side in order {
            if signals.is_cancelled() {
                break 'pairs;
            }
            let mut p = plan.clone();
            p.target = match side {
                Side::Reference => reference.clone(),
                Side::Candidate => plan.target.clone(),
            };
            p.load.duration = Some(slot);
            p.load.requests = None;
            // Each slot opens new connections: keep them out of the numbers.
            p.load.warmup = plan.load.warmup.min(slot / 4);
            p.progress = false;
            let start = t0.elapsed();
            eprintln!(
                "duet: pair {}/{pairs}, {} slot",
                pair + 1,
                if side == Side::Reference {
                    "reference"
                } else {
                    "candidate"
                }
            );
            let out = run(p.clone(), signals.clone(), kill.clone()).await?;
            let meta = RunMeta {
                scenario: &p.scenario,
                target: &p.target,
                load: &p.load,
            };
            let slot_result = result::build(&meta, &out);
            let vals = metrics::extract(&slot_result)
                .remove(ALL)
                .unwrap_or_default();
            slots.push(Slot {
                index,
                pair,
                side,
                start_ms: start.as_secs_f64() * 1000.0,
                end_ms: t0.elapsed().as_secs_f64() * 1000.0,
                metrics: DuetResult::slot_metrics(&vals),
            });
            index += 1;
            let stop_now = out.status != RunStatus::Complete;
            match side {
                Side::Reference => refr.outputs.push((start, out)),
                Side::Candidate => cand.outputs.push((start, out)),
            }
            if stop_now {
                break 'pairs;
            }
        }
    }
    let (Some(c), Some(r)) = (cand.merge(steps), refr.merge(steps)) else {
        return Err(UserError::Environment {
            message: "the duet was stopped before both sides ran".into(),
            hint: None,
        });
    };
    let mut load = plan.load.clone();
    load.blocks = load.blocks.max(6);
    let build = |target: &str, out: &RunOutput| {
        result::build(
            &RunMeta {
                scenario: &plan.scenario,
                target,
                load: &load,
            },
            out,
        )
    };
    Ok(DuetResult {
        schema_version: crate::gate::duet::SCHEMA_VERSION,
        kind: crate::gate::duet::KIND.into(),
        seed: plan.load.seed,
        candidate: build(&plan.target, &c),
        reference: build(&reference, &r),
        slots,
    })
}
