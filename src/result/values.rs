//! Reading the gate's metrics out of a result: per step, pooled over the
//! streamed steps (`all`, histograms merged exactly) and per workflow.

use std::collections::BTreeMap;

use super::{RunResult, StepResult};
use crate::policy::metrics::{Values, ALL, WORKFLOW};
use crate::scenario::ResponseKind;
use crate::stats::{Dist, LatencyHist};

fn put_dist(v: &mut Values, prefix: &str, d: &Dist, ps: &[&str]) {
    for p in ps {
        if let Some(x) = d.get(p) {
            v.insert(format!("{prefix}_{p}"), x);
        }
    }
}

fn put_hist(v: &mut Values, prefix: &str, h: &LatencyHist, ps: &[(&str, f64)]) {
    for (name, q) in ps {
        if let Some(x) = h.quantile_ms(*q) {
            v.insert(format!("{prefix}_{name}"), x);
        }
    }
}

fn step_values(s: &StepResult) -> Values {
    let mut v = Values::new();
    if s.response == ResponseKind::Sse {
        put_dist(&mut v, "ttft", &s.ttft_ms, &["p50", "p90", "p99"]);
        put_dist(&mut v, "tpot", &s.tpot_ms, &["p50", "p90"]);
        put_dist(&mut v, "itl", &s.itl_ms, &["p50"]);
    }
    put_dist(&mut v, "e2e", &s.e2e_ms, &["p50", "p90"]);
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

fn decode(b64: &str, failures: u64) -> LatencyHist {
    // A result whose histogram does not decode contributes nothing to the pool;
    // its per-step summaries still stand.
    LatencyHist::decode(b64, failures).unwrap_or_default()
}

/// All scopes of one result: `all`, `workflow` and each step.
pub fn extract(r: &RunResult) -> BTreeMap<String, Values> {
    let mut out = BTreeMap::new();
    let mut ttft = LatencyHist::new();
    let mut tpot = LatencyHist::new();
    let mut e2e = LatencyHist::new();
    let mut itl = LatencyHist::new();
    for s in &r.steps {
        out.insert(s.name.clone(), step_values(s));
        if s.response == ResponseKind::Sse {
            ttft.merge(&decode(&s.histograms.ttft, s.ttft_ms.failures));
            tpot.merge(&decode(&s.histograms.tpot, s.tpot_ms.failures));
            e2e.merge(&decode(&s.histograms.e2e, s.e2e_ms.failures));
            itl.merge(&decode(&s.histograms.itl, 0));
        }
    }
    let mut all = Values::new();
    put_hist(
        &mut all,
        "ttft",
        &ttft,
        &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99)],
    );
    put_hist(&mut all, "tpot", &tpot, &[("p50", 0.5), ("p90", 0.9)]);
    put_hist(&mut all, "itl", &itl, &[("p50", 0.5)]);
    put_hist(&mut all, "e2e", &e2e, &[("p50", 0.5), ("p90", 0.9)]);
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
    put_dist(&mut wf, "e2e", &w.duration_ms, &["p50", "p90"]);
    wf.insert("requests_per_s".into(), w.iterations_per_s);
    if w.iterations > 0 {
        wf.insert("error_rate".into(), w.failed as f64 / w.iterations as f64);
    }
    out.insert(WORKFLOW.into(), wf);
    out
}
