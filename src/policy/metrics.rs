//! The metric catalogue: every metric the gate can judge, its unit and
//! which way is worse. Plain data, read by the result, the gate and the
//! renderers alike.
//!
//! Scope `all` pools every streamed step (histograms merged exactly), so a
//! handful of gated metrics cover the whole workflow; each step is also its
//! own scope for the per-step table.

use std::collections::BTreeMap;

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
