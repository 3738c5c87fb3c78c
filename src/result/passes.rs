//! The passes a summary makes over a run's records: per-step histograms,
//! time blocks and workflow iterations of a part of the run (the whole run,
//! or a stage). Each reads the records once and keeps only histograms.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::engine::spill::Samples;
use crate::engine::Sample;
use crate::scenario::{ResponseKind, Scenario, Slo};
use crate::stats::LatencyHist;

pub(super) fn ms(d: Duration) -> f64 {
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
pub(super) struct StepHists {
    ttfb: LatencyHist,
    first_event: LatencyHist,
    ttft: LatencyHist,
    e2e: LatencyHist,
    stream_end: LatencyHist,
    tpot: LatencyHist,
    per_user_tps: Vec<f64>,
    tokens: TokenCounts,
    sent_chars: u64,
    cancelled: u64,
    prefill: crate::stats::fit::LineSums,
    resumed: u64,
    calib_tokens: u64,
    calib_chars: u64,
    resume_ttft: Vec<f64>,
    resume_dup: u64,
    resume_lost: u64,
    lengths: super::lengths::LengthAcc,
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
                self.sent_chars = self.sent_chars.saturating_add(u64::from(s.sent_chars));
                self.cancelled += u64::from(s.cancelled);
                if let (Some(t), true) = (s.prompt_tokens, s.sent_chars > 0) {
                    self.calib_tokens = self.calib_tokens.saturating_add(u64::from(t));
                    self.calib_chars = self.calib_chars.saturating_add(u64::from(s.sent_chars));
                }
                if let Some(r) = s.resume {
                    self.resumed += 1;
                    self.resume_dup += u64::from(r.duplicates);
                    self.resume_lost += u64::from(r.lost);
                    if let Some(t) = r.ttft {
                        self.resume_ttft.push(t.as_secs_f64() * 1000.0);
                    }
                }
                if let (Some(t), true) = (s.ttft, s.sent_chars > 0) {
                    self.prefill
                        .add(f64::from(s.sent_chars), t.as_secs_f64() * 1000.0);
                }
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
                self.lengths.add(s);
            }
        }
    }
}

/// The median (sorting `v`); `None` when empty.
pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
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

/// Which measured requests a summary takes: those whose start is in
/// `[from, to)` (the whole run, or a stage).
#[derive(Debug, Clone, Copy)]
pub(super) struct Part {
    pub(super) from: Duration,
    pub(super) to: Duration,
}

impl Part {
    /// Every measured request.
    pub(super) const ALL: Part = Part {
        from: Duration::ZERO,
        to: Duration::MAX,
    };

    fn holds(&self, start: Duration, warmup: bool) -> bool {
        !warmup && start >= self.from && start < self.to
    }
}

/// When a part's requests began and ended.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) first: Duration,
    pub(super) last_start: Duration,
    pub(super) last_end: Duration,
}

/// A failure to read the run's record files back.
pub(super) fn unreadable(e: String) -> UserError {
    UserError::Environment {
        message: format!("cannot read back the run's requests: {e}"),
        hint: Some(format!(
            "the records are kept in {} until the run is summarised",
            std::env::temp_dir().display()
        )),
    }
}

/// One pass: the histograms of each step over a part, and its span.
pub(super) fn step_hists(
    sc: &Scenario,
    src: &Samples,
    part: Part,
) -> Result<(Vec<StepHists>, Option<Span>), UserError> {
    let mut hists: Vec<StepHists> = sc.steps.iter().map(|_| StepHists::default()).collect();
    let mut span: Option<Span> = None;
    src.for_each(|s| {
        if !part.holds(s.start, s.warmup) {
            return;
        }
        let end = s.start + s.stream_end;
        span = Some(match span {
            None => Span {
                first: s.start,
                last_start: s.start,
                last_end: end,
            },
            Some(p) => Span {
                first: p.first.min(s.start),
                last_start: p.last_start.max(s.start),
                last_end: p.last_end.max(end),
            },
        });
        if let (Some(h), Some(step)) = (
            hists.get_mut(usize::from(s.step)),
            sc.steps.get(usize::from(s.step)),
        ) {
            h.add(s, step.response, &sc.slo);
        }
    })
    .map_err(unreadable)?;
    Ok((hists, span))
}

/// Per-step figures and totals from their histograms over `window_s`
/// seconds. `itl` holds the pooled chunk gaps per step (empty when not
/// split this way).
pub(super) fn step_results(
    sc: &Scenario,
    hists: Vec<StepHists>,
    itl: &[LatencyHist],
    window_s: f64,
) -> (Vec<StepResult>, Totals) {
    let mut totals_errors = BTreeMap::new();
    let mut steps = Vec::with_capacity(sc.steps.len());
    let (mut t_req, mut t_failed, mut t_tokens, mut t_good) = (0u64, 0u64, 0u64, 0u64);
    for (i, (step, mut h)) in sc.steps.iter().zip(hists).enumerate() {
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
        h.tokens.request_chars_mean =
            (ok > 0 && h.sent_chars > 0).then(|| h.sent_chars as f64 / ok as f64);
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
            cancelled: h.cancelled,
            lengths: h.lengths.lengths(step),
            prefix: h.lengths.prefix(step),
            prompt_tokens_per_char: (h.calib_chars > 0 && h.calib_tokens > 0)
                .then(|| h.calib_tokens as f64 / h.calib_chars as f64),
            resume: (h.resumed > 0).then(|| super::ResumeResult {
                resumed: h.resumed,
                ttft_p50_ms: median(&mut h.resume_ttft),
                duplicates: h.resume_dup,
                lost: h.resume_lost,
            }),
            prefill: h
                .prefill
                .line()
                .filter(|l| l.n >= 10 && l.max_x >= 1.5 * l.min_x.max(1.0)),
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

/// Cut the sending part of a part's window (first to last request start)
/// into `n` equal blocks and summarise the requests and iterations that
/// started in each: one pass over each.
pub(super) fn build_blocks(
    sc: &Scenario,
    src: &Samples,
    part: Part,
    span: Option<Span>,
    n: u32,
) -> Result<Vec<Block>, UserError> {
    let (w_start, last_start) = span.map_or((part.from, part.from), |s| (s.first, s.last_start));
    let span = (last_start - w_start).max(Duration::from_millis(1));
    let width = span.as_secs_f64() / f64::from(n);
    let index_of = |start: Duration| -> usize {
        let x = (start.saturating_sub(w_start)).as_secs_f64() / width;
        (x.floor() as usize).min(n as usize - 1)
    };
    let mut per_block: Vec<Vec<StepHists>> = (0..n)
        .map(|_| sc.steps.iter().map(|_| StepHists::default()).collect())
        .collect();
    src.for_each(|s| {
        if !part.holds(s.start, s.warmup) {
            return;
        }
        if let (Some(h), Some(step)) = (
            per_block[index_of(s.start)].get_mut(usize::from(s.step)),
            sc.steps.get(usize::from(s.step)),
        ) {
            h.add(s, step.response, &sc.slo);
        }
    })
    .map_err(unreadable)?;
    let mut wf: Vec<(LatencyHist, u64)> = (0..n).map(|_| (LatencyHist::new(), 0)).collect();
    src.for_each_iteration(|it| {
        if !part.holds(it.start, it.warmup) {
            return;
        }
        let b = index_of(it.start);
        if it.ok {
            wf[b].0.record(it.duration);
        } else {
            wf[b].0.record_failure();
            wf[b].1 += 1;
        }
    })
    .map_err(unreadable)?;
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    Ok((0..n as usize)
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
        .collect())
}

/// Whole workflow iterations of a part (of one workflow of a mix, or all):
/// failures are +∞ in the duration.
pub(super) fn workflow_result(
    src: &Samples,
    part: Part,
    workflow: Option<u16>,
    window_s: f64,
) -> Result<WorkflowResult, UserError> {
    let mut wf = LatencyHist::new();
    let (mut n, mut ok) = (0u64, 0u64);
    src.for_each_iteration(|it| {
        if !part.holds(it.start, it.warmup) || workflow.is_some_and(|w| w != it.workflow) {
            return;
        }
        n += 1;
        if it.ok {
            ok += 1;
            wf.record(it.duration);
        } else {
            wf.record_failure();
        }
    })
    .map_err(unreadable)?;
    Ok(WorkflowResult {
        iterations: n,
        ok,
        failed: n - ok,
        success_rate: if n == 0 { 0.0 } else { ok as f64 / n as f64 },
        duration_ms: wf.dist(),
        iterations_per_s: n as f64 / window_s,
        histogram: wf.encode(),
    })
}
