//! Reading the gate's metrics out of a result: per step, pooled over the
//! streamed steps (`all`, histograms merged exactly) and per workflow.

use std::collections::BTreeMap;

use super::{RunResult, StepResult};
use crate::policy::metrics::{Base, Metric, Values, ALL, SHOWN, WORKFLOW};
use crate::scenario::ResponseKind;
use crate::stats::{Dist, LatencyHist};

/// The step's histogram of a latency base (`ttft`, `tpot`, `itl`, `ttfb`,
/// `e2e`), with its failures counted; `None` for a base the step has not
/// (a stream's timings of a JSON step).
pub fn step_hist(s: &StepResult, key: &str) -> Option<LatencyHist> {
    let streamed = s.response == ResponseKind::Sse;
    let (b64, failures) = match key {
        "ttft" if streamed => (&s.histograms.ttft, s.ttft_ms.failures),
        "tpot" if streamed => (&s.histograms.tpot, s.tpot_ms.failures),
        "itl" if streamed => (&s.histograms.itl, 0),
        "ttfb" => (&s.histograms.ttfb, s.ttfb_ms.failures),
        "e2e" => (&s.histograms.e2e, s.e2e_ms.failures),
        _ => return None,
    };
    // A histogram that does not decode contributes nothing; the step's
    // summaries still stand.
    Some(LatencyHist::decode(b64, failures).unwrap_or_default())
}

/// The step's summary of a latency base (for the quantiles it holds).
fn step_dist<'a>(s: &'a StepResult, key: &str) -> Option<&'a Dist> {
    let streamed = s.response == ResponseKind::Sse;
    match key {
        "ttft" if streamed => Some(&s.ttft_ms),
        "tpot" if streamed => Some(&s.tpot_ms),
        "itl" if streamed => Some(&s.itl_ms),
        "ttfb" => Some(&s.ttfb_ms),
        "e2e" => Some(&s.e2e_ms),
        _ => None,
    }
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

fn step_values(s: &StepResult, metrics: &[Metric]) -> Values {
    let mut v = Values::new();
    for m in metrics {
        let Some((key, q)) = m.latency() else {
            continue;
        };
        // Not shown for a JSON step: no stream to time.
        if key != "e2e" && key != "ttfb" && s.response != ResponseKind::Sse {
            continue;
        }
        let x = match (step_dist(s, key), dist_word(m)) {
            (Some(d), Some(w)) => d.get(&w),
            _ => step_hist(s, key).and_then(|h| h.quantile_ms(q)),
        };
        if let Some(x) = x {
            v.insert(m.name(), x);
        }
    }
    v.insert(
        "output_tokens_per_s".into(),
        s.throughput.output_tokens_per_s,
    );
    v.insert("requests_per_s".into(), s.throughput.requests_per_s);
    v.insert("goodput_per_s".into(), s.throughput.goodput_per_s);
    if s.requests > 0 {
        v.insert("error_rate".into(), s.failed as f64 / s.requests as f64);
    }
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
    let mut keys: Vec<&str> = metrics
        .iter()
        .filter_map(|m| m.latency())
        .map(|l| l.0)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut pooled: BTreeMap<&str, LatencyHist> = BTreeMap::new();
    for s in &r.steps {
        out.insert(s.name.clone(), step_values(s, &metrics));
        if s.response == ResponseKind::Sse {
            for key in &keys {
                if let Some(h) = step_hist(s, key) {
                    pooled.entry(key).or_default().merge(&h);
                }
            }
        }
    }
    let mut all = Values::new();
    for m in &metrics {
        let Some((key, q)) = m.latency() else {
            continue;
        };
        if let Some(x) = pooled.get(key).and_then(|h| h.quantile_ms(q)) {
            all.insert(m.name(), x);
        }
    }
    let t = &r.totals;
    all.insert("output_tokens_per_s".into(), t.output_tokens_per_s);
    all.insert("requests_per_s".into(), t.requests_per_s);
    all.insert("goodput_per_s".into(), t.goodput_per_s);
    if t.requests > 0 {
        all.insert("error_rate".into(), t.error_rate);
    }
    out.insert(ALL.into(), all);

    let w = &r.workflow;
    let mut wf = Values::new();
    for m in &metrics {
        if let (Base::E2e, Some(q)) = (m.base, m.quantile) {
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
    wf.insert("requests_per_s".into(), w.iterations_per_s);
    if w.iterations > 0 {
        wf.insert("error_rate".into(), w.failed as f64 / w.iterations as f64);
    }
    out.insert(WORKFLOW.into(), wf);
    out
}
