//! The metrics the gate can judge, and reading them out of a result.
//!
//! Scope `all` pools every streamed step (histograms merged exactly), so a
//! handful of gated metrics cover the whole workflow; each step is also its
//! own scope for the per-step table.

use std::collections::BTreeMap;

use crate::result::{RunResult, StepResult};
use crate::scenario::ResponseKind;
use crate::stats::{Dist, LatencyHist};

/// What a metric is and which way is worse.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Key in policies and files.
    pub name: &'static str,
    /// Human label.
    pub label: &'static str,
    /// Unit for display.
    pub unit: &'static str,
    /// True for latencies and error rates.
    pub higher_is_worse: bool,
}

/// Every metric the gate knows.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "ttft_p50",
        label: "TTFT p50",
        unit: "ms",
        higher_is_worse: true,
    },
    MetricDef {
        name: "ttft_p90",
        label: "TTFT p90",
        unit: "ms",
        higher_is_worse: true,
    },
    MetricDef {
        name: "ttft_p99",
        label: "TTFT p99",
        unit: "ms",
        higher_is_worse: true,
    },
    MetricDef {
        name: "tpot_p50",
        label: "TPOT p50",
        unit: "ms",
        higher_is_worse: true,
    },
    MetricDef {
        name: "tpot_p90",
        label: "TPOT p90",
        unit: "ms",
        higher_is_worse: true,
    },
    MetricDef {
        name: "itl_p50",
        label: "ITL p50",
        unit: "ms",
        higher_is_worse: true,
    },
    MetricDef {
        name: "e2e_p50",
        label: "E2E p50",
        unit: "ms",
        higher_is_worse: true,
    },
    MetricDef {
        name: "e2e_p90",
        label: "E2E p90",
        unit: "ms",
        higher_is_worse: true,
    },
    MetricDef {
        name: "output_tokens_per_s",
        label: "output tok/s",
        unit: "tok/s",
        higher_is_worse: false,
    },
    MetricDef {
        name: "requests_per_s",
        label: "requests/s",
        unit: "req/s",
        higher_is_worse: false,
    },
    MetricDef {
        name: "goodput_per_s",
        label: "goodput",
        unit: "req/s",
        higher_is_worse: false,
    },
    MetricDef {
        name: "error_rate",
        label: "error rate",
        unit: "",
        higher_is_worse: true,
    },
];

/// Look a metric up by name.
pub fn metric_def(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

/// Scope name of the pooled streamed steps.
pub const ALL: &str = "all";
/// Scope name of whole workflow iterations.
pub const WORKFLOW: &str = "workflow";

/// metric → value (+∞ allowed for latencies reached by failures).
pub type Values = BTreeMap<String, f64>;

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
