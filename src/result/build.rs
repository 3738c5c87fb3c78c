//! From a run's raw output to its summary: per step, per workflow, per
//! time block.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::engine::{IterationSample, RunOutput, RunStatus, Sample};
use crate::scenario::{ResponseKind, Scenario, Slo};
use crate::stats::LatencyHist;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn meets_slo(s: &Sample, slo: &Slo) -> bool {
    let within = |limit: Option<f64>, v: Option<Duration>| match (limit, v) {
        (Some(l), Some(v)) => ms(v) <= l,
        (Some(_), None) => false,
        (None, _) => true,
    };
    s.ok()
        && (slo.ttft_ms.is_none()
            || s.ttft.is_none() && s.e2e.is_some()
            || within(slo.ttft_ms, s.ttft))
        && (slo.tpot_ms.is_none() || s.tpot().is_none() || within(slo.tpot_ms, s.tpot()))
        && within(slo.e2e_ms, s.e2e)
}

/// Latency histograms of a set of requests of one step.
#[derive(Default)]
struct StepHists {
    ttfb: LatencyHist,
    first_event: LatencyHist,
    ttft: LatencyHist,
    e2e: LatencyHist,
    stream_end: LatencyHist,
    tpot: LatencyHist,
    per_user_tps: Vec<f64>,
    tokens: TokenCounts,
    errors: BTreeMap<String, u64>,
    statuses: BTreeMap<String, u64>,
    requests: u64,
    failed: u64,
    good: u64,
}

impl StepHists {
    fn add(&mut self, s: &Sample, kind: ResponseKind, slo: &Slo) {
        self.requests += 1;
        if let Some(st) = s.status {
            *self.statuses.entry(st.to_string()).or_default() += 1;
        }
        match s.error {
            Some(e) => {
                self.failed += 1;
                *self.errors.entry(e.name()).or_default() += 1;
                self.ttfb.record_failure();
                if kind == ResponseKind::Sse {
                    self.first_event.record_failure();
                    self.ttft.record_failure();
                    self.tpot.record_failure();
                }
                self.e2e.record_failure();
                self.stream_end.record_failure();
            }
            None => {
                if let Some(t) = s.ttfb {
                    self.ttfb.record(t);
                }
                if let Some(t) = s.first_event {
                    self.first_event.record(t);
                }
                if let Some(t) = s.ttft {
                    self.ttft.record(t);
                }
                if let Some(t) = s.tpot() {
                    self.tpot.record(t);
                }
                if let Some(e) = s.e2e {
                    self.e2e.record(e);
                }
                self.stream_end.record(s.stream_end);
                let n = s.output_tokens();
                // Counts come from servers: sums saturate, never wrap.
                self.tokens.total = self.tokens.total.saturating_add(n);
                self.tokens.chunks = self.tokens.chunks.saturating_add(u64::from(s.chunks));
                if let Some(u) = s.usage_tokens {
                    self.tokens.usage_reported += 1;
                    self.tokens.usage_minus_chunks = self.tokens.usage_minus_chunks.saturating_add(
                        i64::try_from(u)
                            .unwrap_or(i64::MAX)
                            .saturating_sub(i64::from(s.chunks)),
                    );
                }
                if let Some(e) = s.e2e.filter(|e| !e.is_zero() && kind == ResponseKind::Sse) {
                    self.per_user_tps.push(n as f64 / e.as_secs_f64());
                }
                if meets_slo(s, slo) {
                    self.good += 1;
                }
            }
        }
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

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

/// Everything about the run that is not a measurement.
#[derive(Debug, Clone)]
pub struct RunMeta<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Base URL.
    pub target: &'a str,
    /// Load settings used.
    pub load: &'a crate::scenario::LoadSpec,
}

/// Summarise a run.
pub fn build(meta: &RunMeta<'_>, out: &RunOutput) -> RunResult {
    let sc = meta.scenario;
    let measured: Vec<&Sample> = out.recorder.samples.iter().filter(|s| !s.warmup).collect();
    let w_start = measured.iter().map(|s| s.start).min().unwrap_or_default();
    let w_end = measured
        .iter()
        .map(|s| s.start + s.stream_end)
        .max()
        .unwrap_or(w_start);
    // Rates are over the time that was measuring: one stretch for a run,
    // the sum of its own slots for a duet side.
    let window_s = out
        .active
        .unwrap_or(w_end - w_start)
        .as_secs_f64()
        .max(1e-3);

    let (steps, totals) = step_results(sc, &measured, &out.recorder.itl, window_s);

    let iters: Vec<&IterationSample> = out
        .recorder
        .iterations
        .iter()
        .filter(|i| !i.warmup)
        .collect();
    let workflow = workflow_result(&iters, window_s);
    let windows = super::time::windows(sc, meta.load, &out.trace, &measured);
    let dynamics = super::time::dynamics(meta.load, &windows);

    let blocks = build_blocks(sc, &measured, &iters, w_start, meta.load.blocks);

    let (status, status_reason) = match &out.status {
        RunStatus::Complete => (RunState::Complete.as_str().to_string(), None),
        RunStatus::Partial(r) => (RunState::Partial.as_str().to_string(), Some(r.clone())),
        RunStatus::Aborted(r) => (RunState::Aborted.as_str().to_string(), Some(r.clone())),
    };
    RunResult {
        schema_version: SCHEMA_VERSION,
        kind: KIND.into(),
        status,
        status_reason,
        provenance: Provenance {
            tool: "flora-gate".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            scenario: ScenarioRef {
                name: sc.name.clone(),
                origin: sc.origin.clone(),
                sha256: sc.sha256.clone(),
            },
            target: crate::target::redact_userinfo(meta.target),
            concurrency: meta.load.concurrency,
            duration_s: meta.load.duration.map(|d| d.as_secs_f64()),
            requests_limit: meta.load.requests,
            warmup_s: meta.load.warmup.as_secs_f64(),
            seed: meta.load.seed,
            vars: sc.vars.clone(),
            var_overrides: sc.var_overrides.clone(),
            started_at: out.started_at.to_rfc3339(),
            elapsed_s: out.elapsed.as_secs_f64(),
            host: host(),
        },
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
        self_check: out.self_check.clone(),
        slo: sc.slo.clone(),
        gate: sc.gate.clone(),
        load: Some(super::time::load_info(meta.load)),
        stages: super::time::stages(sc, meta.load, &out.trace, &measured, &iters),
        arrivals: super::time::arrivals(out),
        workflows: super::time::workflows(sc, &iters, window_s),
        windows,
        dynamics,
    }
}

/// Per-step figures and totals of a set of requests over `window_s` seconds.
/// `itl` holds the pooled chunk gaps per step (empty when not split this way).
pub(super) fn step_results(
    sc: &Scenario,
    measured: &[&Sample],
    itl: &[LatencyHist],
    window_s: f64,
) -> (Vec<StepResult>, Totals) {
    let mut totals_errors = BTreeMap::new();
    let mut steps = Vec::with_capacity(sc.steps.len());
    let (mut t_req, mut t_failed, mut t_tokens, mut t_good) = (0u64, 0u64, 0u64, 0u64);
    for (i, step) in sc.steps.iter().enumerate() {
        let mut h = StepHists::default();
        for s in measured.iter().filter(|s| usize::from(s.step) == i) {
            h.add(s, step.response, &sc.slo);
        }
        let no_gaps = LatencyHist::new();
        let itl = itl.get(i).unwrap_or(&no_gaps);
        for (k, v) in &h.errors {
            *totals_errors.entry(k.clone()).or_insert(0) += v;
        }
        t_req += h.requests;
        t_failed += h.failed;
        t_tokens = t_tokens.saturating_add(h.tokens.total);
        t_good += h.good;
        let ok = h.requests - h.failed;
        h.tokens.mean_per_request = (ok > 0).then(|| h.tokens.total as f64 / ok as f64);
        steps.push(StepResult {
            name: step.name.clone(),
            response: step.response,
            requests: h.requests,
            ok,
            failed: h.failed,
            success_rate: if h.requests == 0 {
                0.0
            } else {
                ok as f64 / h.requests as f64
            },
            errors: h.errors.clone(),
            statuses: h.statuses.clone(),
            ttfb_ms: h.ttfb.dist(),
            first_event_ms: h.first_event.dist(),
            ttft_ms: h.ttft.dist(),
            e2e_ms: h.e2e.dist(),
            stream_end_ms: h.stream_end.dist(),
            tpot_ms: h.tpot.dist(),
            itl_ms: itl.dist(),
            output_tokens: h.tokens.clone(),
            throughput: Throughput {
                requests_per_s: h.requests as f64 / window_s,
                output_tokens_per_s: h.tokens.total as f64 / window_s,
                goodput_per_s: h.good as f64 / window_s,
                per_user_tokens_per_s_p50: median(&mut h.per_user_tps),
            },
            histograms: Histograms {
                encoding: HIST_ENCODING.into(),
                ttfb: h.ttfb.encode(),
                first_event: h.first_event.encode(),
                ttft: h.ttft.encode(),
                e2e: h.e2e.encode(),
                stream_end: h.stream_end.encode(),
                tpot: h.tpot.encode(),
                itl: itl.encode(),
            },
        });
    }

    let totals = Totals {
        requests: t_req,
        ok: t_req - t_failed,
        failed: t_failed,
        error_rate: if t_req == 0 {
            0.0
        } else {
            t_failed as f64 / t_req as f64
        },
        requests_per_s: t_req as f64 / window_s,
        output_tokens_per_s: t_tokens as f64 / window_s,
        goodput_per_s: t_good as f64 / window_s,
        errors: totals_errors,
    };
    (steps, totals)
}

/// Cut the sending part of the window into `n` equal blocks and summarise
/// the requests that started in each.
pub(super) fn build_blocks(
    sc: &Scenario,
    measured: &[&Sample],
    iters: &[&crate::engine::IterationSample],
    w_start: Duration,
    n: u32,
) -> Vec<Block> {
    let last_start = measured.iter().map(|s| s.start).max().unwrap_or(w_start);
    let span = (last_start - w_start).max(Duration::from_millis(1));
    let width = span.as_secs_f64() / f64::from(n);
    let index_of = |start: Duration| -> usize {
        let x = (start.saturating_sub(w_start)).as_secs_f64() / width;
        (x.floor() as usize).min(n as usize - 1)
    };
    let mut per_block: Vec<Vec<StepHists>> = (0..n)
        .map(|_| sc.steps.iter().map(|_| StepHists::default()).collect())
        .collect();
    for s in measured {
        let b = index_of(s.start);
        per_block[b][usize::from(s.step)].add(s, sc.steps[usize::from(s.step)].response, &sc.slo);
    }
    let mut wf: Vec<(LatencyHist, u64)> = (0..n).map(|_| (LatencyHist::new(), 0)).collect();
    for it in iters {
        let b = index_of(it.start);
        if it.ok {
            wf[b].0.record(it.duration);
        } else {
            wf[b].0.record_failure();
            wf[b].1 += 1;
        }
    }
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    (0..n as usize)
        .map(|b| {
            let start = w_start.as_secs_f64() + width * b as f64;
            let steps = sc
                .steps
                .iter()
                .zip(&per_block[b])
                .map(|(step, h)| {
                    (
                        step.name.clone(),
                        BlockStats {
                            requests: h.requests,
                            failed: h.failed,
                            ttft_p50_ms: finite(h.ttft.quantile_ms(0.5)),
                            ttft_p90_ms: finite(h.ttft.quantile_ms(0.9)),
                            tpot_p50_ms: finite(h.tpot.quantile_ms(0.5)),
                            e2e_p50_ms: finite(h.e2e.quantile_ms(0.5)),
                            output_tokens_per_s: h.tokens.total as f64 / width,
                        },
                    )
                })
                .collect();
            let tokens: u64 = per_block[b]
                .iter()
                .fold(0u64, |a, h| a.saturating_add(h.tokens.total));
            Block {
                index: b as u32,
                start_ms: start * 1000.0,
                end_ms: (start + width) * 1000.0,
                steps,
                workflow: BlockStats {
                    requests: wf[b].0.count(),
                    failed: wf[b].1,
                    ttft_p50_ms: None,
                    ttft_p90_ms: None,
                    tpot_p50_ms: None,
                    e2e_p50_ms: finite(wf[b].0.quantile_ms(0.5)),
                    output_tokens_per_s: tokens as f64 / width,
                },
            }
        })
        .collect()
}

/// Whole workflow iterations: failures are +∞ in the duration.
pub(super) fn workflow_result(iters: &[&IterationSample], window_s: f64) -> WorkflowResult {
    let mut wf = LatencyHist::new();
    for it in iters {
        if it.ok {
            wf.record(it.duration);
        } else {
            wf.record_failure();
        }
    }
    let wf_ok = iters.iter().filter(|i| i.ok).count() as u64;
    WorkflowResult {
        iterations: iters.len() as u64,
        ok: wf_ok,
        failed: iters.len() as u64 - wf_ok,
        success_rate: if iters.is_empty() {
            0.0
        } else {
            wf_ok as f64 / iters.len() as f64
        },
        duration_ms: wf.dist(),
        iterations_per_s: iters.len() as f64 / window_s,
        histogram: wf.encode(),
    }
}
