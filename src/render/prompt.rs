//! Writers' workflows in the report: TTFT against the prompt's length (the
//! prefill cost, TTFT = a + b·length, fitted over every request) and how
//! streams resumed after a break joined the ones they continued.

use serde::Serialize;

use crate::result::RunResult;

/// One step's fit.
#[derive(Debug, Clone, Serialize)]
pub struct PrefillRow {
    step: String,
    requests: u64,
    /// Prompt lengths sent, characters.
    lengths: String,
    /// `a + b·length`.
    line: String,
    /// b per 1,000 characters with its 95% interval.
    per_k: String,
    /// The same per 1,000 prompt tokens, calibrated with the server's
    /// `usage.prompt_tokens` (`–` when it reports none).
    per_k_tokens: String,
    r2: String,
}

/// The rows of the steps whose prompts varied enough to fit.
pub fn rows(r: &RunResult) -> Vec<PrefillRow> {
    r.steps
        .iter()
        .filter_map(|s| {
            let l = s.prefill?;
            Some(PrefillRow {
                step: super::md_cell(&s.name),
                requests: l.n,
                lengths: format!("{:.0}–{:.0}", l.min_x, l.max_x),
                line: {
                    // The intercept as fitted: a negative one is not hidden.
                    let at_zero = if l.intercept < 0.0 {
                        format!("−{}", super::ms_number(-l.intercept))
                    } else {
                        super::ms_number(l.intercept)
                    };
                    let mut line = format!("{at_zero} ms + {:.3} ms × chars", l.slope);
                    if l.intercept < 0.0 || l.r2 < 0.8 {
                        line.push_str(" (not a straight line over these lengths: TTFT grows faster than linearly, or with other causes)");
                    }
                    line
                },
                per_k: format!(
                    "{} ms (95%: {} to {})",
                    super::ms_number(l.slope * 1000.0),
                    super::ms_number(l.slope_low * 1000.0),
                    super::ms_number(l.slope_high * 1000.0)
                ),
                per_k_tokens: s.prompt_tokens_per_char.filter(|t| *t > 0.0).map_or(
                    "–".into(),
                    |t| {
                        format!(
                            "{} ms ({:.2} tokens a char)",
                            super::ms_number(l.slope * 1000.0 / t),
                            t
                        )
                    },
                ),
                r2: format!("{:.3}", l.r2),
            })
        })
        .collect()
}

/// One line per step whose streams were resumed after a break.
pub fn resume_lines(r: &RunResult) -> Vec<String> {
    r.steps
        .iter()
        .filter_map(|s| {
            let x = s.resume.as_ref()?;
            Some(format!(
                "{}: {} streams resumed with Last-Event-ID, first token {} after reconnecting (median); {} events repeated, {} skipped",
                super::md_cell(&s.name),
                x.resumed,
                x.ttft_p50_ms
                    .map_or("–".into(), |t| format!("{} ms", super::ms_number(t))),
                x.duplicates,
                x.lost
            ))
        })
        .collect()
}
