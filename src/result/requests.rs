//! `--requests-out`: one JSON line per request.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

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
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Write every request, in start order, atomically.
pub fn write(path: &Path, scenario: &Scenario, samples: &[Sample]) -> Result<(), UserError> {
    write_sides(path, scenario, &[(None, samples)])
}

/// Write the requests of several sides (a duet's reference and candidate),
/// each line naming its side, in start order.
pub fn write_sides(
    path: &Path,
    scenario: &Scenario,
    sides: &[(Option<&str>, &[Sample])],
) -> Result<(), UserError> {
    let mut all: Vec<(Option<&str>, &Sample)> = sides
        .iter()
        .flat_map(|(side, samples)| samples.iter().map(move |s| (*side, s)))
        .collect();
    all.sort_by_key(|(_, s)| s.start);
    let mut buf = Vec::with_capacity(all.len() * 220);
    for (side, s) in all {
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
        };
        // Serialising plain numbers and strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut buf, &line);
        let _ = buf.write_all(b"\n");
    }
    crate::error::write_atomic(path, &buf)
}
