//! The short calibration before a run whose prompt lengths are in tokens:
//! one user sends known prompt lengths ([`PROBE_CHARS`]) and the server's
//! `usage.prompt_tokens` gives each step its characters per token.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::engine::{self, Plan};
use crate::error::UserError;
use crate::scenario::lengths::{Calibration, PROBE_CHARS};
use crate::scenario::LoadSpec;

/// Iterations of the calibration: each probe length twice.
const ITERATIONS: u64 = 4;

/// The plan with every step's prompt length in tokens calibrated; the plan
/// itself when none needs it.
pub async fn calibrate(
    plan: &Plan,
    signals: &CancellationToken,
    kill: &CancellationToken,
) -> Result<Plan, UserError> {
    let steps = plan.scenario.uncalibrated();
    if steps.is_empty() {
        return Ok(plan.clone());
    }
    let sc = &plan.scenario;
    let mut probe_sc = (**sc).clone();
    probe_sc.calibrating = true;
    let longest = sc
        .workflows
        .iter()
        .map(|w| w.steps.len())
        .max()
        .unwrap_or(1) as u64;
    let mut load = LoadSpec::fixed(1, std::time::Duration::from_secs(120));
    load.requests = Some(ITERATIONS * longest * u64::from(sc.books_per_user.max(1)));
    load.seed = plan.load.seed;
    load.finish = crate::scenario::Finish::Workflow;
    let mut probe = Plan::new(
        Arc::new(probe_sc),
        plan.target.clone(),
        plan.tokens.clone(),
        load,
    );
    probe.ca_cert = plan.ca_cert.clone();
    probe.client = plan.client.clone();
    probe.notes = plan.notes.clone();
    eprintln!(
        "calibrating prompt lengths in tokens: {} requests of {} and {} characters",
        probe.load.requests.unwrap_or(0),
        PROBE_CHARS[0],
        PROBE_CHARS[1]
    );
    let out = engine::run(probe, signals.clone(), kill.clone()).await?;
    let mut points: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
    let mut failed: BTreeMap<usize, (u64, String)> = BTreeMap::new();
    out.recorder
        .records
        .for_each(|s| {
            let i = usize::from(s.step);
            if !steps.contains(&i) || s.asked.prompt_chars == 0 {
                return;
            }
            match (s.error, s.prompt_tokens) {
                (None, Some(t)) => points
                    .entry(i)
                    .or_default()
                    .push((f64::from(s.asked.prompt_chars), f64::from(t))),
                (Some(e), _) => {
                    let f = failed.entry(i).or_insert((0, e.name()));
                    f.0 += 1;
                }
                (None, None) => {}
            }
        })
        .map_err(|e| UserError::Environment {
            message: format!("cannot read back the calibration's requests: {e}"),
            hint: None,
        })?;
    let mut calibrated = (**sc).clone();
    for i in steps {
        let name = &sc.steps[i].name;
        let fit = points.get(&i).and_then(|p| Calibration::fit(p));
        let Some(c) = fit.filter(|c| (0.05..=100.0).contains(&c.chars_per_token)) else {
            let why = match (points.get(&i), failed.get(&i)) {
                (_, Some((n, class))) => format!("{n} of its requests failed (first: `{class}`)"),
                (None, None) => "the server reported no `usage.prompt_tokens`".to_string(),
                (Some(_), None) => {
                    "the server's prompt tokens did not grow with the prompt".to_string()
                }
            };
            return Err(UserError::Environment {
                message: format!("cannot calibrate step `{name}`'s prompt length in tokens: {why}"),
                hint: Some("give `--chars-per-token N` (Chinese prose is often 1 to 1.5 characters a token), or set `prompt_unit = \"chars\"` on the step".into()),
            });
        };
        eprintln!(
            "calibrated `{name}`: {:.2} characters a token, {:.0} tokens besides the prompt ({} requests)",
            c.chars_per_token, c.overhead_tokens, c.requests
        );
        calibrated.steps[i].calibration = Some(c);
    }
    let mut plan = plan.clone();
    plan.scenario = Arc::new(calibrated);
    Ok(plan)
}
