//! Duet load shape: the measured time is cut into slot pairs; in each pair
//! the reference and the candidate get one slot each, in random order, at
//! the same concurrency. Runner and time-of-day drift then hit both sides
//! alike and cancel in the paired test.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use serde::{Deserialize, Serialize};

use super::LoadTrace;
use super::{Plan, Recorder, RunOutput, RunStatus};
use crate::error::UserError;
use crate::target::Target;

/// Which deployment a slot measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// `--baseline-target`.
    Reference,
    /// `--target`.
    Candidate,
}

/// One time slot of the duet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Slot {
    /// Order in time.
    pub index: u32,
    /// Pair number: each pair holds one slot of each side, in random order.
    pub pair: u32,
    /// The side measured.
    pub side: Side,
    /// Offset from the duet start, ms.
    pub start_ms: f64,
    /// Offset from the duet start, ms.
    pub end_ms: f64,
    /// Pooled metrics of the slot (`null` when +∞ or not measured).
    pub metrics: std::collections::BTreeMap<String, Option<f64>>,
}

/// Summarises one slot's output into the metrics the paired test uses; the
/// caller (above the engine) knows how results are summarised.
pub type SlotSummary<'a> =
    &'a (dyn Fn(&Plan, &RunOutput) -> std::collections::BTreeMap<String, Option<f64>> + Sync);

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
            r.records = r.records.shifted(off);
            r
        };
        let mut status = first.status.clone();
        let mut self_check = first.self_check.clone();
        let started_at = first.started_at;
        let mut end = off0 + first.elapsed;
        let mut active = measured_span(&first);
        rec.absorb(shift(first.recorder, off0));
        for (off, o) in it {
            end = off + o.elapsed;
            active += measured_span(&o);
            if o.self_check.saturated {
                self_check = o.self_check.clone();
            }
            if o.status != RunStatus::Complete {
                status = o.status.clone();
            }
            rec.absorb(shift(o.recorder, off));
        }
        Some(RunOutput {
            recorder: rec,
            started_at,
            elapsed: end.saturating_sub(off0),
            status,
            self_check,
            active: Some(active),
            trace: LoadTrace::default(),
            late: Duration::ZERO,
            clock_offset_ms: None,
            server: Vec::new(),
            endpoint: None,
            trace_salt: None,
        })
    }
}

/// Fewest measured requests per user a slot should hold: below it, the
/// slow side finishes few requests per slot and the paired figures are noise.
pub const MIN_REQUESTS_PER_USER: f64 = 3.0;

/// Time from the first measured request sent to the last response ended.
fn measured_span(out: &RunOutput) -> Duration {
    let (mut first, mut last) = (None::<Duration>, None::<Duration>);
    let _ = out.recorder.records.for_each(|s| {
        if !s.warmup {
            first = Some(first.map_or(s.start, |f| f.min(s.start)));
            let end = s.start + s.stream_end;
            last = Some(last.map_or(end, |l| l.max(end)));
        }
    });
    match (first, last) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    }
}

fn requests_per_user(out: &RunOutput, users: u32) -> f64 {
    let mut n = 0u64;
    let _ = out.recorder.records.for_each(|s| n += u64::from(!s.warmup));
    n as f64 / f64::from(users.max(1))
}

/// How a duet of `total` cuts into slot pairs: fewer than `pairs` when
/// slots would be under a second, never under six. `Err` says why it cannot.
pub fn slots(total: Duration, pairs: u32) -> Result<(u32, Duration), String> {
    if total.is_zero() {
        return Err("a duet needs a duration: its slots are cut from it".into());
    }
    let fit = u32::try_from(total.as_secs() / 2).unwrap_or(u32::MAX);
    let planned = pairs.min(fit).max(6);
    let slot = total / (2 * planned);
    if slot < Duration::from_secs(1) {
        return Err(format!(
            "{planned} slot pairs in {total:?} leave {slot:?} per slot; a duet needs at least {}s",
            2 * planned
        ));
    }
    Ok((planned, slot))
}

/// What a duet measured: each side's slots merged on the duet's clock, and
/// every slot's summary.
#[derive(Debug)]
pub struct DuetOutput {
    /// The reference deployment's slots, merged.
    pub reference: RunOutput,
    /// The candidate deployment's slots, merged.
    pub candidate: RunOutput,
    /// Every slot in time order.
    pub slots: Vec<Slot>,
    /// How the duet ran (lengthened or thin slots).
    pub notes: Vec<String>,
}

/// One side's slot: the plan against that side, for `slot`, with a warm-up
/// that keeps the slot's new connections out of the numbers.
fn slot_plan(plan: &Plan, reference: &Target, side: Side, slot: Duration) -> Plan {
    let mut p = plan.clone();
    if side == Side::Reference {
        p.target = reference.clone();
    }
    p.load.duration = Some(slot);
    p.load.requests = None;
    p.load.warmup = plan.load.warmup.min(slot / 4);
    p.progress = false;
    p
}

/// After `pair` of `planned` pairs whose thinner slot held `per_user`
/// requests per user: the remaining time in fewer, longer slots (half the
/// pairs left, never under six in all), or `None` to go on as planned.
fn lengthened(
    planned: u32,
    pair: u32,
    per_user: f64,
    remaining: Duration,
) -> Option<(u32, Duration)> {
    let left = planned - pair;
    if per_user < MIN_REQUESTS_PER_USER && left >= 2 && pair + left / 2 >= 6 {
        let planned = pair + left / 2;
        Some((planned, remaining / (2 * (planned - pair))))
    } else {
        None
    }
}

/// Run a duet: `plan.target` is the candidate, `reference` the baseline
/// deployment. `pairs` slot pairs share `plan.load.duration`.
///
/// Each slot is a whole run of its own: requests started in it finish
/// (within the drain) before the other side starts, and its figures are
/// over its own measured time. When the first pairs show fewer than
/// [`MIN_REQUESTS_PER_USER`] requests per user, the remaining slots are
/// lengthened (fewer pairs, never under six). A side that goes down mid-run
/// is measured as errors; the duet goes on and the result is written.
// Long by design: the pair loop keeps the slot order, the stop and the
// lengthening in one place; its parts are `slot_plan`, `lengthened` and
// `SideRuns::merge`.
pub async fn run_duet(
    plan: Plan,
    reference: Target,
    pairs: u32,
    signals: CancellationToken,
    kill: CancellationToken,
    summarize: SlotSummary<'_>,
) -> Result<DuetOutput, UserError> {
    let total = plan.load.duration.unwrap_or_default();
    let (mut planned, mut slot) =
        slots(total, pairs).map_err(|message| UserError::Environment {
            message,
            hint: None,
        })?;
    Plan {
        reference: Some(reference.clone()),
        ..plan.clone()
    }
    .check_destinations()?;
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
    let mut notes = Vec::new();
    let t0 = tokio::time::Instant::now();
    let mut index = 0;
    let mut pair = 0;
    let mut thinnest = f64::INFINITY;
    'pairs: while pair < planned {
        let order = if rng.random_bool(0.5) {
            [Side::Reference, Side::Candidate]
        } else {
            [Side::Candidate, Side::Reference]
        };
        let mut per_user = f64::INFINITY;
        for side in order {
            if signals.is_cancelled() {
                break 'pairs;
            }
            let p = slot_plan(&plan, &reference, side, slot);
            let start = t0.elapsed();
            eprintln!(
                "duet: pair {}/{planned}, {} slot",
                pair + 1,
                if side == Side::Reference {
                    "reference"
                } else {
                    "candidate"
                }
            );
            let out = super::run_checked(p.clone(), signals.clone(), kill.clone()).await?;
            per_user = per_user.min(requests_per_user(&out, p.load.concurrency));
            let metrics = summarize(&p, &out);
            slots.push(Slot {
                index,
                pair,
                side,
                start_ms: start.as_secs_f64() * 1000.0,
                end_ms: t0.elapsed().as_secs_f64() * 1000.0,
                metrics,
            });
            index += 1;
            // A signal stops the duet; a side that failed (its breaker
            // tripped) does not: its errors are the finding.
            let stop_now = matches!(out.status, RunStatus::Partial(_));
            match side {
                Side::Reference => refr.outputs.push((start, out)),
                Side::Candidate => cand.outputs.push((start, out)),
            }
            if stop_now {
                break 'pairs;
            }
        }
        pair += 1;
        thinnest = thinnest.min(per_user);
        let remaining = total.saturating_sub(t0.elapsed());
        if let Some((p, s)) = lengthened(planned, pair, per_user, remaining) {
            (planned, slot) = (p, s);
            notes.push(format!(
                "slots held {per_user:.1} requests per user: the remaining slots were lengthened to {} ({planned} pairs in all)",
                humantime::format_duration(Duration::from_millis(slot.as_millis() as u64))
            ));
            thinnest = f64::INFINITY;
        }
    }
    if thinnest < MIN_REQUESTS_PER_USER {
        notes.push(format!(
            "some slots held only {thinnest:.1} requests per user (fewer than {MIN_REQUESTS_PER_USER}): slow requests are under-represented; give the duet a longer `--duration`"
        ));
    }
    let (Some(c), Some(r)) = (cand.merge(steps), refr.merge(steps)) else {
        return Err(UserError::Environment {
            message: "the duet was stopped before both sides ran".into(),
            hint: None,
        });
    };
    Ok(DuetOutput {
        reference: r,
        candidate: c,
        slots,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_slots_are_lengthened_never_under_six_pairs() {
        let thin = MIN_REQUESTS_PER_USER / 2.0;
        let left = Duration::from_secs(80);
        // After 2 of 12 pairs: 10 left become 5, each pair 16 s (8 s a slot).
        assert_eq!(
            lengthened(12, 2, thin, left),
            Some((7, Duration::from_secs(8)))
        );
        // Enough requests per user: as planned.
        assert_eq!(lengthened(12, 2, MIN_REQUESTS_PER_USER, left), None);
        // Six pairs planned: halving the rest would leave fewer than six.
        assert_eq!(lengthened(6, 2, thin, left), None);
        // One pair left: nothing to merge.
        assert_eq!(lengthened(12, 11, thin, left), None);
        // 8 planned, 2 run: halving the 6 left would make 5 in all.
        assert_eq!(lengthened(8, 2, thin, left), None);
        let (planned, slot) = lengthened(14, 3, thin, left).expect("lengthened");
        assert_eq!((planned, slot), (8, Duration::from_secs(8)));
    }
}
