//! How the traffic was made, in the report: each step's prompt and output
//! lengths as asked and as realised (characters drawn, tokens the server
//! counted), TTFT of first against repeated shared prefixes with the
//! server's prefix-cache hit rate, writers' parallel books, and a
//! replayed trace with its timing.

use serde::Serialize;

use crate::result::lengths::Spread;
use crate::result::RunResult;

/// One step's lengths.
#[derive(Debug, Clone, Serialize)]
pub struct LengthRow {
    step: String,
    asked: String,
    prompt_chars: String,
    prompt_tokens: String,
    max_tokens: String,
    output_tokens: String,
}

/// One step's prefixes.
#[derive(Debug, Clone, Serialize)]
pub struct PrefixRow {
    step: String,
    asked: String,
    first: String,
    repeated: String,
    saving: String,
}

/// The traffic section.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficCtx {
    lengths: Vec<LengthRow>,
    /// The prompt tokens of the steps that draw no lengths, on one line.
    prompt_tokens: Option<String>,
    prefixes: Vec<PrefixRow>,
    hit_rate: Option<String>,
    lines: Vec<String>,
}

fn spread(s: Option<&Spread>) -> String {
    s.map_or("–".into(), |s| {
        format!("{} / {} / {} (n {})", s.p10, s.p50, s.p90, s.n)
    })
}

fn ttft(n: u64, p50: Option<f64>, p90: Option<f64>) -> String {
    let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{} ms", super::ms_number(v)));
    format!("{n} requests, p50 {}, p90 {}", ms(p50), ms(p90))
}

/// Whether a step drew its lengths (or was sent a trace's).
fn drew(l: &crate::result::lengths::LengthsResult) -> bool {
    l.asked_prompt.is_some() || l.asked_output.is_some() || l.prompt_chars.is_some()
}

/// The section, when the run has anything to say of its traffic.
pub fn context(r: &RunResult) -> Option<TrafficCtx> {
    // A replay sends the trace's lengths and prefixes, not the scenario's.
    let replayed = r.traffic.as_ref().is_some_and(|t| t.replay.is_some());
    let counted: Vec<String> = r
        .steps
        .iter()
        .filter_map(|s| {
            let l = s.lengths.as_ref().filter(|l| !drew(l))?;
            Some(format!(
                "{} {}",
                super::md_cell(&s.name),
                l.prompt_tokens.as_ref()?.p50
            ))
        })
        .collect();
    let prompt_tokens = (!counted.is_empty()).then(|| counted.join(" · "));
    let lengths = length_rows(r, replayed);
    let prefixes = prefix_rows(r, replayed);
    let hit_rate = r
        .server_metrics
        .as_ref()
        .and_then(|m| m.overall().prefix_cache_hit_rate())
        .map(|h| format!("{:.1}%", h * 100.0));
    let mut lines = Vec::new();
    if let Some(t) = &r.traffic {
        if let Some(k) = t.books_parallel {
            lines.push(format!(
                "writers work {k} books at once: at most {} streams of one writer in flight",
                t.streams_per_writer_max.unwrap_or(0)
            ));
        }
        if let Some(rp) = &t.replay {
            lines.extend(replay_lines(r, rp));
        }
    }
    let any = !lengths.is_empty() || !prefixes.is_empty() || !lines.is_empty();
    (any || prompt_tokens.is_some()).then_some(TrafficCtx {
        lengths,
        prompt_tokens,
        prefixes,
        hit_rate,
        lines,
    })
}

fn replay_lines(r: &RunResult, rp: &crate::scenario::trace::ReplayInfo) -> Vec<String> {
    let format = match rp.format {
        Some(crate::scenario::trace::Format::Mooncake) => "Mooncake",
        _ => "flora-gate",
    };
    let mut out = vec![format!(
        "replayed `{}` ({format} trace, sha256 `{}`): {} requests of {} sessions over {:.0} s of trace time at speed {}{}",
        rp.file.replace('`', "'"),
        rp.sha256.get(..12).unwrap_or_default(),
        rp.requests,
        rp.sessions,
        rp.span_s,
        rp.speed,
        rp.window.as_ref().map_or(String::new(), |w| format!(", window {w}"))
    )];
    let steps: Vec<String> = rp
        .per_step
        .iter()
        .map(|(s, n)| format!("{} {n}", super::md_cell(s)))
        .collect();
    out.push(format!("trace mix: {}", steps.join(", ")));
    if let Some(a) = &r.arrivals {
        let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{} ms", super::ms_number(v)));
        out.push(format!(
            "arrivals: {} of {} sent; lateness p50 {}, p99 {}; {} waited for their session's previous request (p99 {}); {} more than 200 ms late",
            a.started,
            a.due,
            ms(a.lateness_p50_ms),
            ms(a.lateness_p99_ms),
            rp.waited_for_session,
            ms(rp.session_wait_p99_ms),
            rp.late_over_200ms
        ));
    }
    out
}

/// The steps that draw lengths: asked and realised.
fn length_rows(r: &RunResult, replayed: bool) -> Vec<LengthRow> {
    r.steps
        .iter()
        .filter_map(|s| {
            let l = s.lengths.as_ref().filter(|l| drew(l))?;
            let mut asked = Vec::new();
            if replayed {
                asked.push("the trace's lengths".to_string());
            } else if let Some(p) = &l.asked_prompt {
                asked.push(format!("prompt {}", super::md_cell(p)));
            }
            if let Some(o) = l.asked_output.as_ref().filter(|_| !replayed) {
                asked.push(format!("output {}", super::md_cell(o)));
            }
            if let Some(c) = &l.calibration {
                asked.push(if c.requests > 0 {
                    format!(
                        "{:.2} chars a token, calibrated over {} requests",
                        c.chars_per_token, c.requests
                    )
                } else {
                    format!("{:.2} chars a token, given", c.chars_per_token)
                });
            }
            Some(LengthRow {
                step: super::md_cell(&s.name),
                asked: if asked.is_empty() {
                    "–".into()
                } else {
                    asked.join("; ")
                },
                prompt_chars: spread(l.prompt_chars.as_ref()),
                prompt_tokens: spread(l.prompt_tokens.as_ref()),
                max_tokens: spread(l.max_tokens.as_ref()),
                output_tokens: spread(l.output_tokens.as_ref()),
            })
        })
        .collect()
}

/// The steps with shared prefixes: first against repeated.
fn prefix_rows(r: &RunResult, replayed: bool) -> Vec<PrefixRow> {
    r.steps
        .iter()
        .filter_map(|s| {
            let p = s.prefix.as_ref()?;
            Some(PrefixRow {
                step: super::md_cell(&s.name),
                asked: if replayed {
                    "the trace's prefix groups".into()
                } else {
                    super::md_cell(&p.asked)
                },
                first: ttft(p.first, p.ttft_first_p50_ms, p.ttft_first_p90_ms),
                repeated: ttft(p.repeated, p.ttft_repeated_p50_ms, p.ttft_repeated_p90_ms),
                saving: match (p.ttft_first_p50_ms, p.ttft_repeated_p50_ms) {
                    (Some(a), Some(b)) if a > 0.0 => format!("{:+.0}%", (b / a - 1.0) * 100.0),
                    _ => "–".into(),
                },
            })
        })
        .collect()
}
