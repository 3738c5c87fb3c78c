//! From a run's raw output to its summary: per step, per workflow, per
//! time block, per stage and per window, read from the run's records.

use std::time::Duration;

use super::passes::{build_blocks, ms, step_hists, step_results, workflow_result, Part};
use super::*;
use crate::engine::{Plan, RunOutput, RunStatus};

fn host() -> Host {
    Host {
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        hostname: std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    }
}

/// Where a result came from: the tool, the scenario, the target and the
/// load; variables that carry a secret are redacted.
fn provenance(plan: &Plan, out: &RunOutput) -> Provenance {
    let (sc, load) = (&*plan.scenario, &plan.load);
    Provenance {
        tool: "flora-gate".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        scenario: ScenarioRef {
            name: sc.name.clone(),
            origin: sc.origin.clone(),
            sha256: sc.sha256.clone(),
        },
        target: plan.target.to_string(),
        concurrency: load.concurrency,
        duration_s: load.duration.map(|d| d.as_secs_f64()),
        requests_limit: load.requests,
        warmup_s: load.warmup.as_secs_f64(),
        seed: load.seed,
        vars: sc
            .vars
            .iter()
            .map(|(k, v)| match sc.secret_vars.contains(k) {
                true => (k.clone(), serde_json::Value::String("<redacted>".into())),
                false => (k.clone(), v.clone()),
            })
            .collect(),
        var_overrides: sc
            .var_overrides
            .iter()
            .map(|(k, v)| match sc.secret_vars.contains(k) {
                true => (k.clone(), "<redacted>".to_string()),
                false => (k.clone(), v.clone()),
            })
            .collect(),
        sweep: sc.sweep.as_ref().map(crate::scenario::Sweep::describe),
        time_scale: sc.time_scale,
        started_at: out.started_at.to_rfc3339(),
        elapsed_s: out.elapsed.as_secs_f64(),
        host: host(),
    }
}

/// The slowest successful measured requests by E2E, with the trace id
/// each was sent under; none when the records come from several runs (a
/// duet side, a merge), whose trace salts differ.
fn slowest(plan: &Plan, out: &RunOutput) -> Result<Vec<SlowRequest>, UserError> {
    let Some(salt) = out.trace_salt else {
        return Ok(Vec::new());
    };
    let mut top: Vec<crate::engine::Sample> = Vec::with_capacity(SLOWEST + 1);
    out.recorder
        .records
        .for_each(|s| {
            let Some(e2e) = s.e2e else { return };
            if s.warmup || s.error.is_some() {
                return;
            }
            if top.len() < SLOWEST || top.last().and_then(|t| t.e2e).is_some_and(|t| e2e > t) {
                top.push(s.clone());
                top.sort_by_key(|s| std::cmp::Reverse(s.e2e));
                top.truncate(SLOWEST);
            }
        })
        .map_err(|m| UserError::Environment {
            message: format!("the run's records cannot be read: {m}"),
            hint: None,
        })?;
    Ok(top
        .iter()
        .map(|s| SlowRequest {
            step: plan
                .scenario
                .steps
                .get(usize::from(s.step))
                .map_or_else(|| "?".into(), |st| st.name.clone()),
            request_id: crate::engine::sample::request_id(s.vu, s.iteration, s.step),
            trace_id: crate::engine::sample::trace_id(salt, s.vu, s.iteration, s.step, s.start),
            ttft_ms: s.ttft.map(ms),
            e2e_ms: s.e2e.map_or(0.0, ms),
        })
        .collect())
}

/// Summarise a run of `plan`, reading its records pass by pass.
pub fn build(plan: &Plan, out: &RunOutput) -> Result<RunResult, UserError> {
    let (sc, load) = (&*plan.scenario, &plan.load);
    let src = &out.recorder.records;
    let (hists, span) = step_hists(sc, src, Part::ALL)?;
    let w_start = span.map_or(Duration::ZERO, |s| s.first);
    let w_end = span.map_or(w_start, |s| s.last_end);
    // Rates are over the time that was measuring: one stretch for a run,
    // the sum of its own slots for a duet side.
    let window_s = out
        .active
        .unwrap_or(w_end - w_start)
        .as_secs_f64()
        .max(1e-3);
    let (steps, totals) = step_results(sc, hists, &out.recorder.itl, window_s);
    let workflow = workflow_result(src, Part::ALL, None, window_s)?;
    let blocks = build_blocks(sc, src, Part::ALL, span, load.blocks)?;
    let windows = super::time::windows(sc, load, &out.trace, src, span)?;
    let dynamics = super::dynamics::dynamics(load, &windows);
    let stages = super::time::stages(sc, load, &out.trace, src)?;
    let workflows = super::time::workflows(sc, src, window_s)?;

    let (status, status_reason) = match &out.status {
        RunStatus::Complete => (RunState::Complete, None),
        RunStatus::Partial(r) => (RunState::Partial, Some(r.clone())),
        RunStatus::Aborted(r) => (RunState::Aborted, Some(r.clone())),
    };
    // Server metrics per stage: over the measured part of each.
    let stage_spans: Vec<(f64, f64)> = stages
        .iter()
        .map(|s| {
            let a = (s.start_ms / 1000.0).max(w_start.as_secs_f64());
            (a, (s.end_ms / 1000.0).max(a))
        })
        .collect();
    Ok(RunResult {
        schema_version: SCHEMA_VERSION,
        kind: KIND.into(),
        status,
        status_reason,
        provenance: provenance(plan, out),
        window: Window {
            start_ms: ms(w_start),
            end_ms: ms(w_end),
            duration_s: window_s,
        },
        totals,
        steps,
        workflow,
        blocks,
        error_examples: out
            .recorder
            .examples
            .iter()
            .map(|e| ErrorExampleOut {
                step: sc
                    .steps
                    .get(usize::from(e.step))
                    .map_or_else(|| "?".into(), |s| s.name.clone()),
                class: e.class.name(),
                status: e.status,
                body: e.body.clone(),
                request_id: e.request_id.clone(),
            })
            .collect(),
        slowest: slowest(plan, out)?,
        self_check: out.self_check.clone(),
        slo: sc.slo.clone(),
        gate: sc.gate.clone(),
        load: Some(super::time::load_info(load)),
        stages,
        arrivals: super::time::arrivals(out),
        traffic: super::lengths::Traffic::of(sc, load, &out.trace),
        workflows,
        windows,
        dynamics,
        shard: None,
        merged: None,
        hypotheses: sc.hypotheses.clone(),
        server_metrics: super::server::summarise(
            &out.server,
            w_start.as_secs_f64(),
            w_end.as_secs_f64(),
            load.window.as_secs_f64(),
            &stage_spans,
        )
        .map(super::resources::with_resources),
    })
}
