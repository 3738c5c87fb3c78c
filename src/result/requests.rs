//! `--requests-out`: one JSON line per request.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::engine::spill::Samples;
use crate::engine::{ErrorClass, Sample};
use crate::error::UserError;
use crate::scenario::Scenario;

#[derive(Serialize)]
struct Line<'a> {
    /// `reference` or `candidate` in a duet.
    #[serde(skip_serializing_if = "Option::is_none")]
    side: Option<&'a str>,
    request_id: String,
    step: &'a str,
    vu: u32,
    iteration: u64,
    start_ms: f64,
    ttfb_ms: Option<f64>,
    first_event_ms: Option<f64>,
    ttft_ms: Option<f64>,
    e2e_ms: Option<f64>,
    stream_end_ms: f64,
    tpot_ms: Option<f64>,
    output_tokens: u64,
    usage_tokens: Option<u64>,
    chunks: u32,
    status: Option<u16>,
    error: Option<ErrorClass>,
    warmup: bool,
    /// The writer's book, from 1, when a writer has several.
    #[serde(skip_serializing_if = "Option::is_none")]
    book: Option<u8>,
    /// Characters of the drawn prompt (its prefix included).
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_chars: Option<u32>,
    /// Prompt tokens as the server counted them.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens: Option<u32>,
    /// The drawn `max_tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    /// `first` or `repeated`: the prompt's shared prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<&'static str>,
    /// The prefix's group (its key, hex): requests with the same group
    /// open with the same text.
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_group: Option<String>,
    /// The prefix's characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_chars: Option<u32>,
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Write every request, atomically, in the order they ended.
pub fn write(path: &Path, scenario: &Scenario, samples: &Samples) -> Result<(), UserError> {
    write_sides(path, scenario, &[(None, samples)])
}

/// Write the requests of several sides (a duet's reference and candidate),
/// each line naming its side, streamed from the run's records: one line at
/// a time, never the whole log in memory. Lines come in the order requests
/// ended, side by side; sort by `start_ms` for the order they began.
pub fn write_sides(
    path: &Path,
    scenario: &Scenario,
    sides: &[(Option<&str>, &Samples)],
) -> Result<(), UserError> {
    let mut read_error = None;
    crate::error::write_atomic_with(path, &mut |w| {
        for (side, samples) in sides {
            let mut failed = None;
            let read = samples.for_each(|s| {
                if failed.is_none() {
                    if let Err(e) = write_line(w, scenario, *side, s) {
                        failed = Some(e);
                    }
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            if let Err(e) = read {
                read_error = Some(e.clone());
                return Err(std::io::Error::other(e));
            }
        }
        Ok(())
    })
    .map_err(|e| match read_error {
        Some(why) => UserError::Environment {
            message: format!("cannot read back the run's requests for the request log: {why}"),
            hint: None,
        },
        None => e,
    })
}

fn write_line(
    w: &mut dyn Write,
    scenario: &Scenario,
    side: Option<&str>,
    s: &Sample,
) -> std::io::Result<()> {
    let line = Line {
        side,
        request_id: crate::engine::sample::request_id(s.vu, s.iteration, s.step),
        step: scenario
            .steps
            .get(usize::from(s.step))
            .map_or("?", |st| st.name.as_str()),
        vu: s.vu,
        iteration: s.iteration,
        start_ms: ms(s.start),
        ttfb_ms: s.ttfb.map(ms),
        first_event_ms: s.first_event.map(ms),
        ttft_ms: s.ttft.map(ms),
        e2e_ms: s.e2e.map(ms),
        stream_end_ms: ms(s.stream_end),
        tpot_ms: s.tpot().map(ms),
        output_tokens: s.output_tokens(),
        usage_tokens: s.usage_tokens,
        chunks: s.chunks,
        status: s.status,
        error: s.error,
        warmup: s.warmup,
        book: (s.asked.book > 0).then_some(s.asked.book),
        prompt_chars: (s.asked.prompt_chars > 0).then_some(s.asked.prompt_chars),
        prompt_tokens: s.prompt_tokens,
        max_tokens: (s.asked.max_tokens > 0).then_some(s.asked.max_tokens),
        prefix: s.asked.prefix.name(),
        prefix_group: s
            .asked
            .prefix
            .name()
            .map(|_| format!("{:016x}", s.asked.prefix_key)),
        prefix_chars: (s.asked.prefix_chars > 0).then_some(s.asked.prefix_chars),
    };
    serde_json::to_writer(&mut *w, &line).map_err(std::io::Error::other)?;
    w.write_all(b"\n")
}
