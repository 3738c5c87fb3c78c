//! Every number a verdict could rest on, checked when a file is read: a
//! file that says a latency is negative or an error rate is 3 would
//! otherwise pass every gate.

use super::{Block, RunResult};

/// Most time windows a result may hold: the longest run at the shortest
/// window (1 s), with room for the drain.
pub const MAX_WINDOWS: u64 = crate::scenario::caps::MAX_ANY_DURATION.as_secs() + 3600;
/// Most stages a result may hold.
pub const MAX_STAGES: usize = 10_000;

/// Collects the first invalid number of a file.
#[derive(Default)]
pub(crate) struct Validator {
    first: Option<(String, String)>,
}

impl Validator {
    pub(crate) fn fail(&mut self, field: &str, why: &str) {
        self.first
            .get_or_insert_with(|| (field.to_string(), why.to_string()));
    }

    pub(crate) fn hash(&mut self, field: &str, s: &str) {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.fail(field, "must be 64 hexadecimal characters");
        }
    }

    pub(crate) fn fraction(&mut self, field: &str, x: f64) {
        if !(x.is_finite() && (0.0..=1.0).contains(&x)) {
            self.fail(field, &format!("{x} is not a fraction between 0 and 1"));
        }
    }

    pub(crate) fn rate(&mut self, field: &str, x: f64) {
        if !(x.is_finite() && x >= 0.0) {
            self.fail(field, &format!("{x} is not a rate (finite, 0 or more)"));
        }
    }

    pub(crate) fn latency(&mut self, field: &str, x: f64) {
        if !(x.is_finite() && x > 0.0) {
            self.fail(
                field,
                &format!("{x} is not a latency (finite, more than 0)"),
            );
        }
    }

    pub(crate) fn blocks(&mut self, field: &str, blocks: &[Block]) {
        for (b, block) in blocks.iter().enumerate() {
            for (name, s) in block
                .steps
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .chain([("workflow", &block.workflow)])
            {
                let f = |k: &str| format!("{field}[{b}].{name}.{k}");
                for (k, x) in [
                    ("ttft_p50_ms", s.ttft_p50_ms),
                    ("ttft_p90_ms", s.ttft_p90_ms),
                    ("tpot_p50_ms", s.tpot_p50_ms),
                    ("e2e_p50_ms", s.e2e_p50_ms),
                ] {
                    if let Some(x) = x {
                        self.latency(&f(k), x);
                    }
                }
                self.rate(&f("output_tokens_per_s"), s.output_tokens_per_s);
                if s.failed > s.requests {
                    self.fail(&f("failed"), "more failures than requests");
                }
            }
        }
    }

    pub(crate) fn done(self) -> Result<(), (String, String)> {
        self.first.map_or(Ok(()), Err)
    }
}

impl RunResult {
    /// Check every number a verdict could rest on: `Err((field, why))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut v = Validator::default();
        v.hash(
            "provenance.scenario.sha256",
            &self.provenance.scenario.sha256,
        );
        let t = &self.totals;
        v.fraction("totals.error_rate", t.error_rate);
        v.rate("totals.requests_per_s", t.requests_per_s);
        v.rate("totals.output_tokens_per_s", t.output_tokens_per_s);
        v.rate("totals.goodput_per_s", t.goodput_per_s);
        if t.ok.checked_add(t.failed) != Some(t.requests) {
            v.fail("totals.failed", "ok + failed is not the number of requests");
        }
        for (i, s) in self.steps.iter().enumerate() {
            let f = |k: &str| format!("steps[{i}].{k}");
            v.fraction(&f("success_rate"), s.success_rate);
            for (k, d) in [
                ("ttfb_ms", &s.ttfb_ms),
                ("first_event_ms", &s.first_event_ms),
                ("ttft_ms", &s.ttft_ms),
                ("e2e_ms", &s.e2e_ms),
                ("stream_end_ms", &s.stream_end_ms),
                ("tpot_ms", &s.tpot_ms),
                ("itl_ms", &s.itl_ms),
            ] {
                for (p, x) in [
                    ("p50", d.p50),
                    ("p90", d.p90),
                    ("p95", d.p95),
                    ("p99", d.p99),
                ] {
                    if let Some(x) = x {
                        v.latency(&f(&format!("{k}.{p}")), x);
                    }
                }
            }
            v.rate(&f("throughput.requests_per_s"), s.throughput.requests_per_s);
            v.rate(
                &f("throughput.output_tokens_per_s"),
                s.throughput.output_tokens_per_s,
            );
            v.rate(&f("throughput.goodput_per_s"), s.throughput.goodput_per_s);
        }
        v.blocks("blocks", &self.blocks);
        // Indexes size the merge's tables: each within what a run can have.
        let mut last = None;
        for (i, w) in self.windows.iter().enumerate() {
            if u64::from(w.index) >= MAX_WINDOWS || last.is_some_and(|l| w.index <= l) {
                v.fail(
                    &format!("windows[{i}].index"),
                    &format!(
                        "{} is not the next window of a run (increasing, under {MAX_WINDOWS})",
                        w.index
                    ),
                );
            }
            last = Some(w.index);
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.index as usize >= MAX_STAGES {
                v.fail(
                    &format!("stages[{i}].index"),
                    &format!("{} is over {MAX_STAGES} stages", s.index),
                );
            }
        }
        v.done()
    }
}
