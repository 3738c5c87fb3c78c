//! A run's request log (`--requests-out`) as a trace in flora-gate's
//! format: each request at its start, its user as the session, its book,
//! step and drawn lengths; so production-like traffic measured once can
//! be replayed against a candidate.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{read_line, MAX_LINE};
use crate::error::UserError;

/// Most requests a log converted at once may hold (they are sorted in memory).
pub const MAX_REQUESTS: usize = 5_000_000;

#[derive(Debug, Deserialize)]
struct LogLine {
    step: String,
    vu: u64,
    start_ms: f64,
    #[serde(default)]
    side: Option<String>,
    #[serde(default)]
    book: Option<u32>,
    #[serde(default)]
    prompt_chars: Option<u32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    prefix_group: Option<String>,
    #[serde(default)]
    prefix_chars: Option<u32>,
}

#[derive(Debug, Serialize)]
struct TraceLine<'a> {
    t_ms: f64,
    session: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    book: Option<String>,
    step: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_chars: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_chars: Option<u32>,
}

/// What a conversion did.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// Requests written.
    pub requests: usize,
    /// Sessions among them.
    pub sessions: usize,
    /// Lines of a duet's reference side, left out.
    pub reference_left_out: usize,
}

/// Convert the request log `input` into a trace at `output`.
pub fn convert(input: &Path, output: &Path) -> Result<Converted, UserError> {
    let invalid =
        |n: u64, m: String| UserError::invalid("request log", input, Some(format!("line {n}")), m);
    let file = std::fs::File::open(input).map_err(|e| UserError::Read {
        path: input.to_path_buf(),
        source: e,
    })?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::with_capacity(1024);
    let mut lines: Vec<LogLine> = Vec::new();
    let mut left_out = 0;
    let mut n = 0u64;
    loop {
        let more = read_line(&mut reader, &mut buf).map_err(|e| invalid(n + 1, e.to_string()))?;
        if !more {
            break;
        }
        n += 1;
        let text = String::from_utf8_lossy(&buf);
        if text.trim().is_empty() {
            continue;
        }
        let l: LogLine = serde_json::from_str(text.trim()).map_err(|e| {
            invalid(
                n,
                format!("not a request-log line ({})", super::json_error(&e)),
            )
        })?;
        if !(l.start_ms.is_finite() && l.start_ms >= 0.0) {
            return Err(invalid(n, format!("`start_ms` is {}", l.start_ms)));
        }
        if l.step.len() > MAX_LINE / 64 {
            return Err(invalid(n, "the step name is too long".into()));
        }
        if l.side.as_deref() == Some("reference") {
            left_out += 1;
            continue;
        }
        if lines.len() >= MAX_REQUESTS {
            return Err(invalid(
                n,
                format!("more than {MAX_REQUESTS} requests; split the log"),
            ));
        }
        lines.push(l);
    }
    if lines.is_empty() {
        return Err(UserError::invalid(
            "request log",
            input,
            None,
            "it holds no requests",
        ));
    }
    // The log is in the order requests ended; a trace is in the order they began.
    lines.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    let sessions: std::collections::HashSet<u64> = lines.iter().map(|l| l.vu).collect();
    crate::error::write_atomic_with(output, &mut |w| {
        for l in &lines {
            let t = TraceLine {
                t_ms: l.start_ms,
                session: format!("user-{}", l.vu),
                book: l.book.map(|b| format!("book-{b}")),
                step: &l.step,
                prompt_chars: l.prompt_chars,
                output_tokens: l.max_tokens,
                // A prefix needs its length, and a prompt to open.
                prefix: l
                    .prefix_group
                    .as_deref()
                    .filter(|_| l.prefix_chars.is_some() && l.prompt_chars.is_some()),
                prefix_chars: l
                    .prefix_chars
                    .filter(|_| l.prefix_group.is_some() && l.prompt_chars.is_some()),
            };
            serde_json::to_writer(&mut *w, &t).map_err(std::io::Error::other)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;
    Ok(Converted {
        requests: lines.len(),
        sessions: sessions.len(),
        reference_left_out: left_out,
    })
}
