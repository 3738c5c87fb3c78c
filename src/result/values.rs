//! Reading the gate's metrics out of a result: per step, pooled over the
//! streamed steps (`all`, histograms merged exactly) and per workflow.

use std::collections::BTreeMap;

use super::{RunResult, StepResult};
use crate::policy::metrics::{Base, Metric, Values, ALL, BASES, SHOWN, WORKFLOW};
use crate::scenario::ResponseKind;
use crate::stats::{Dist, LatencyHist};

/// Where a step keeps one latency: its summary, its histogram and the
/// failures counted in it (+∞). The one place a latency base meets a step's
/// fields: a new base does not compile until it has its arm here and in
/// [`rate`]. `None` for a rate, or a base the step has not (a stream's
/// timings of a JSON step).
fn latency(s: &StepResult, base: Base) -> Option<(&Dist, &str, u64)> {
    if base.def().streamed_only && s.response != ResponseKind::Sse {
        return None;
    }
    let h = &s.histograms;
    match base {
        Base::Ttft => Some((&s.ttft_ms, &h.ttft, s.ttft_ms.failures)),
        Base::Tpot => Some((&s.tpot_ms, &h.tpot, s.tpot_ms.failures)),
        // Gaps of failed streams are real gaps: no failure is +∞ here.
        Base::Itl => Some((&s.itl_ms, &h.itl, 0)),
        Base::Ttfb => Some((&s.ttfb_ms, &h.ttfb, s.ttfb_ms.failures)),
        Base::E2e => Some((&s.e2e_ms, &h.e2e, s.e2e_ms.failures)),
        Base::OutputTokensPerS | Base::RequestsPerS | Base::GoodputPerS | Base::ErrorRate => None,
    }
}

/// One latency pooled over steps (histograms merged exactly, failures +∞);
/// the steps that have not that latency add nothing.
pub fn pooled(steps: &[StepResult], base: Base) -> LatencyHist {
    let mut h = LatencyHist::new();
    for x in steps.iter().filter_map(|s| step_hist(s, base)) {
        h.merge(&x);
    }
    h
}

/// What one scope counted: a step, the run, or the workflow (whose
/// "requests" are iterations, with no tokens or goodput of their own).
struct Counts {
    output_tokens_per_s: Option<f64>,
    requests_per_s: f64,
    goodput_per_s: Option<f64>,
    requests: u64,
    failed: u64,
}

/// A rate in one scope; `None` for a latency, a rate the scope has not, or
/// an error rate of no requests.
fn rate(base: Base, c: &Counts) -> Option<f64> {
    match base {
        Base::OutputTokensPerS => c.output_tokens_per_s,
        Base::RequestsPerS => Some(c.requests_per_s),
        Base::GoodputPerS => c.goodput_per_s,
        Base::ErrorRate => (c.requests > 0).then(|| c.failed as f64 / c.requests as f64),
        Base::Ttft | Base::Tpot | Base::Itl | Base::Ttfb | Base::E2e => None,
    }
}

/// The step's histogram of a latency base, with its failures counted;
/// `None` for a base the step has not.
pub fn step_hist(s: &StepResult, base: Base) -> Option<LatencyHist> {
    let (_, b64, failures) = latency(s, base)?;
    // A histogram that does not decode contributes nothing; the step's
    // summaries still stand.
    Some(LatencyHist::decode(b64, failures).unwrap_or_default())
}

/// The metrics read: those every result carries and those asked for.
fn wanted(extra: &[String]) -> Vec<Metric> {
    let mut out: Vec<Metric> = Vec::new();
    for name in SHOWN
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
    {
        if let Ok(m) = Metric::parse(name) {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

/// The word a step's summary files a quantile under (`p90`), if it has one.
fn dist_word(m: &Metric) -> Option<String> {
    let name = m.name();
    let word = name.rsplit('_').next()?.to_string();
    matches!(word.as_str(), "p50" | "p90" | "p95" | "p99").then_some(word)
}

/// Every rate base, in table order.
fn rates() -> impl Iterator<Item = Base> {
    BASES.iter().filter(|d| !d.latency).map(|d| d.base)
}

fn insert_rates(v: &mut Values, c: &Counts) {
    for base in rates() {
        if let Some(x) = rate(base, c) {
            v.insert(base.def().key.into(), x);
        }
    }
}

fn step_values(s: &StepResult, metrics: &[Metric]) -> Values {
    let mut v = Values::new();
    for m in metrics {
        let Some((base, q)) = m.latency() else {
            continue;
        };
        let Some((dist, _, _)) = latency(s, base) else {
            continue;
        };
        let x = match dist_word(m) {
            Some(w) => dist.get(&w),
            None => step_hist(s, base).and_then(|h| h.quantile_ms(q)),
        };
        if let Some(x) = x {
            v.insert(m.name(), x);
        }
    }
    let t = &s.throughput;
    insert_rates(
        &mut v,
        &Counts {
            output_tokens_per_s: Some(t.output_tokens_per_s),
            requests_per_s: t.requests_per_s,
            goodput_per_s: Some(t.goodput_per_s),
            requests: s.requests,
            failed: s.failed,
        },
    );
    v
}

/// All scopes of one result: `all`, `workflow` and each step, with the
/// metrics every result carries.
pub fn extract(r: &RunResult) -> BTreeMap<String, Values> {
    extract_with(r, &[])
}

/// As [`extract`], with the named metrics too (any latency quantile: a
/// policy's `ttft_p95`, `itl_p99.9`).
pub fn extract_with(r: &RunResult, extra: &[String]) -> BTreeMap<String, Values> {
    let metrics = wanted(extra);
    let mut out = BTreeMap::new();
    let mut bases: Vec<Base> = metrics
        .iter()
        .filter_map(|m| m.latency())
        .map(|l| l.0)
        .collect();
    bases.sort_unstable();
    bases.dedup();
    let mut pooled: BTreeMap<Base, LatencyHist> = BTreeMap::new();
    for s in &r.steps {
        out.insert(s.name.clone(), step_values(s, &metrics));
        // `all` pools the streamed steps.
        if s.response == ResponseKind::Sse {
            for &base in &bases {
                if let Some(h) = step_hist(s, base) {
                    pooled.entry(base).or_default().merge(&h);
                }
            }
        }
    }
    let mut all = Values::new();
    for m in &metrics {
        let Some((base, q)) = m.latency() else {
            continue;
        };
        if let Some(x) = pooled.get(&base).and_then(|h| h.quantile_ms(q)) {
            all.insert(m.name(), x);
        }
    }
    let t = &r.totals;
    insert_rates(
        &mut all,
        &Counts {
            output_tokens_per_s: Some(t.output_tokens_per_s),
            requests_per_s: t.requests_per_s,
            goodput_per_s: Some(t.goodput_per_s),
            requests: t.requests,
            failed: t.failed,
        },
    );
    out.insert(ALL.into(), all);
    out.insert(WORKFLOW.into(), workflow_values(r, &metrics));
    out
}

/// The workflow scope: its duration is an end-to-end latency; its rates
/// count iterations.
fn workflow_values(r: &RunResult, metrics: &[Metric]) -> Values {
    let w = &r.workflow;
    let mut wf = Values::new();
    for m in metrics {
        if let Some((Base::E2e, q)) = m.latency() {
            let x = match dist_word(m) {
                Some(word) => w.duration_ms.get(&word),
                None => LatencyHist::decode(&w.histogram, w.failed)
                    .ok()
                    .and_then(|h| h.quantile_ms(q)),
            };
            if let Some(x) = x {
                wf.insert(m.name(), x);
            }
        }
    }
    insert_rates(
        &mut wf,
        &Counts {
            output_tokens_per_s: None,
            requests_per_s: w.iterations_per_s,
            goodput_per_s: None,
            requests: w.iterations,
            failed: w.failed,
        },
    );
    wf
}
