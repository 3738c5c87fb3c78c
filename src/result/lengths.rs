//! What each step's requests asked and got: the realised prompt lengths
//! (characters drawn, tokens the server counted), output lengths (asked
//! `max_tokens`, tokens received) and the TTFT of first and repeated
//! shared prefixes.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::engine::sample::PrefixUse;
use crate::engine::Sample;
use crate::scenario::lengths::Calibration;
use crate::scenario::Step;
use crate::stats::LatencyHist;

/// A realised distribution of whole numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    /// Requests.
    pub n: u64,
    /// Smallest.
    pub min: u64,
    /// 10th percentile.
    pub p10: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// One step's lengths.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LengthsResult {
    /// The prompt length asked, as written, with its unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_prompt: Option<String>,
    /// The output length asked (tokens), as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_output: Option<String>,
    /// Characters per token the prompt lengths in tokens were sent with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Characters of the drawn prompts (prefix included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_chars: Option<Spread>,
    /// Prompt tokens as the server counted them (`usage.prompt_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<Spread>,
    /// `max_tokens` asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<Spread>,
    /// Output tokens received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<Spread>,
}

/// TTFT of requests opening with a prefix the run had not sent before
/// against one it had: the server's prefix cache at work.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrefixResult {
    /// The prefixes asked (`count × length, scope`).
    pub asked: String,
    /// Requests with a prefix's first use.
    pub first: u64,
    /// Requests with a prefix sent before.
    pub repeated: u64,
    /// TTFT p50 of first uses, ms.
    pub ttft_first_p50_ms: Option<f64>,
    /// TTFT p90 of first uses, ms.
    pub ttft_first_p90_ms: Option<f64>,
    /// TTFT p50 of repeats, ms.
    pub ttft_repeated_p50_ms: Option<f64>,
    /// TTFT p90 of repeats, ms.
    pub ttft_repeated_p90_ms: Option<f64>,
}

/// How the traffic was made, beyond the load shape: writers' parallel
/// books and a replayed trace.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Traffic {
    /// Books a writer works at once (`books_parallel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub books_parallel: Option<u32>,
    /// The most streams one writer had in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams_per_writer_max: Option<u64>,
    /// The trace replayed (`--replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<crate::scenario::trace::ReplayInfo>,
}

impl Traffic {
    /// The run's traffic record, when it has anything to say.
    pub fn of(
        sc: &crate::scenario::Scenario,
        load: &crate::scenario::LoadSpec,
        trace: &crate::engine::LoadTrace,
    ) -> Option<Traffic> {
        let parallel = sc.books_parallel > 1;
        let t = Traffic {
            books_parallel: parallel.then_some(sc.books_parallel),
            streams_per_writer_max: parallel.then_some(trace.writer_streams_max),
            replay: load.replay.as_ref().map(|r| r.info(trace.replay.as_ref())),
        };
        (t != Traffic::default()).then_some(t)
    }
}

/// Accumulates one step's lengths.
pub(super) struct LengthAcc {
    prompt_chars: Histogram<u64>,
    prompt_tokens: Histogram<u64>,
    max_tokens: Histogram<u64>,
    output_tokens: Histogram<u64>,
    ttft_first: LatencyHist,
    ttft_repeated: LatencyHist,
}

impl Default for LengthAcc {
    fn default() -> Self {
        let h = || Histogram::new(3).expect("3 significant digits are valid");
        LengthAcc {
            prompt_chars: h(),
            prompt_tokens: h(),
            max_tokens: h(),
            output_tokens: h(),
            ttft_first: LatencyHist::new(),
            ttft_repeated: LatencyHist::new(),
        }
    }
}

impl LengthAcc {
    /// Add a successful request.
    pub(super) fn add(&mut self, s: &Sample) {
        let put = |h: &mut Histogram<u64>, v: u64| {
            if v > 0 {
                h.saturating_record(v);
            }
        };
        put(&mut self.prompt_chars, u64::from(s.asked.prompt_chars));
        put(
            &mut self.prompt_tokens,
            u64::from(s.prompt_tokens.unwrap_or(0)),
        );
        put(&mut self.max_tokens, u64::from(s.asked.max_tokens));
        if s.asked.max_tokens > 0 || s.asked.prompt_chars > 0 {
            put(&mut self.output_tokens, s.output_tokens());
        }
        if let Some(t) = s.ttft {
            match s.asked.prefix {
                PrefixUse::First => self.ttft_first.record(t),
                PrefixUse::Repeated => self.ttft_repeated.record(t),
                PrefixUse::None => {}
            }
        }
    }

    /// The step's lengths, when it drew any or the server counted its prompts.
    pub(super) fn lengths(&self, step: &Step) -> Option<LengthsResult> {
        let l = step.lengths.as_ref();
        let r = LengthsResult {
            asked_prompt: l.and_then(|l| {
                l.prompt
                    .as_ref()
                    .map(|d| format!("{} {}", d.describe(), l.unit.noun()))
            }),
            asked_output: l.and_then(|l| {
                l.output
                    .as_ref()
                    .map(|d| format!("{} tokens", d.describe()))
            }),
            calibration: step.calibration,
            prompt_chars: spread(&self.prompt_chars),
            prompt_tokens: spread(&self.prompt_tokens),
            max_tokens: spread(&self.max_tokens),
            output_tokens: spread(&self.output_tokens),
        };
        (r.prompt_chars.is_some() || r.prompt_tokens.is_some() || r.max_tokens.is_some())
            .then_some(r)
    }

    /// First against repeated prefixes, when the step has prefixes.
    pub(super) fn prefix(&self, step: &Step) -> Option<PrefixResult> {
        let l = step.lengths.as_ref()?;
        let p = l.prefix?;
        let q = |h: &LatencyHist, x: f64| h.quantile_ms(x).filter(|v| v.is_finite());
        Some(PrefixResult {
            asked: format!(
                "{} × {} {}, {}",
                p.count,
                p.length,
                l.unit.noun(),
                match p.scope {
                    crate::scenario::lengths::Scope::Shared => "shared",
                    crate::scenario::lengths::Scope::Book => "per book",
                }
            ),
            first: self.ttft_first.count(),
            repeated: self.ttft_repeated.count(),
            ttft_first_p50_ms: q(&self.ttft_first, 0.5),
            ttft_first_p90_ms: q(&self.ttft_first, 0.9),
            ttft_repeated_p50_ms: q(&self.ttft_repeated, 0.5),
            ttft_repeated_p90_ms: q(&self.ttft_repeated, 0.9),
        })
    }
}

fn spread(h: &Histogram<u64>) -> Option<Spread> {
    (!h.is_empty()).then(|| Spread {
        n: h.len(),
        min: h.min(),
        p10: h.value_at_quantile(0.1),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        max: h.max(),
        mean: h.mean(),
    })
}
