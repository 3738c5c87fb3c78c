//! The evidence of a run or a capacity search, as the rules read it: its
//! load levels (held stages, or probes), each with the server's signals
//! when they were scraped, and its streamed steps' prompt sizes.

use crate::result::capacity::CapacityResult;
use crate::result::{RunResult, StepResult};
use crate::scenario::ResponseKind;

use super::{Evidence, Level, PromptStep};

/// Streamed steps' TTFT p50, TPOT p50 and p90 (the first streamed step's),
/// JSON steps' E2E p50.
fn step_figures(steps: &[StepResult], l: &mut Level) {
    if let Some(s) = steps.iter().find(|s| s.response == ResponseKind::Sse) {
        l.ttft_p50 = s.ttft_ms.p50;
        l.tpot_p50 = s.tpot_ms.p50;
        l.tpot_p90 = s.tpot_ms.p90;
    }
    l.json_e2e_p50 = steps
        .iter()
        .find(|s| s.response != ResponseKind::Sse)
        .and_then(|s| s.e2e_ms.p50);
}

/// The levels of a run: its held stages (the target the same at start and
/// end); a run without them is one level.
pub fn levels_of_run(r: &RunResult) -> Vec<Level> {
    let mut out: Vec<Level> = r
        .stages
        .iter()
        .enumerate()
        .filter_map(|(at, s)| {
            // A held level that measured nothing (all warm-up) says nothing.
            r.held_level(s).map(|load| {
                let mut l = Level {
                    load,
                    tokens_per_s: s.totals.output_tokens_per_s,
                    requests: s.totals.requests,
                    rate_limited: s.totals.errors.get("rate_limited").copied().unwrap_or(0),
                    under_delivered: s.under_delivered,
                    server: r.server_metrics.as_ref().map(|m| m.stage(at)),
                    ..Level::default()
                };
                step_figures(&s.steps, &mut l);
                l
            })
        })
        .collect();
    out.sort_by(|a, b| a.load.total_cmp(&b.load));
    // A shape without two holds (ramps only): its windows, binned by the
    // load they achieved, are its levels.
    if out.len() < 2 && !r.stages.is_empty() {
        let binned = window_levels(r);
        if binned.len() >= 2 {
            return binned;
        }
    }
    if out.is_empty() {
        let mut l = Level {
            load: f64::from(r.provenance.concurrency),
            tokens_per_s: r.totals.output_tokens_per_s,
            requests: r.totals.requests,
            rate_limited: r.totals.errors.get("rate_limited").copied().unwrap_or(0),
            server: r.server_metrics.as_ref().map(|m| m.overall()),
            ..Level::default()
        };
        step_figures(&r.steps, &mut l);
        out.push(l);
    }
    out
}

/// Windows in one level differ in achieved load by at most this factor.
const BIN_RATIO: f64 = 1.25;
/// Fewest requests a binned level is read from.
const BIN_MIN_REQUESTS: u64 = 20;

/// The measured windows grouped by the load they achieved (users active,
/// or arrivals started per second), each group a level: its load the
/// windows' mean, its latencies their medians, its throughput their mean,
/// the server's signals combined over them.
pub fn window_levels(r: &RunResult) -> Vec<Level> {
    let open = r.load.as_ref().is_some_and(|l| l.model == "open");
    let mut bins: std::collections::BTreeMap<i64, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, w) in r.windows.iter().enumerate() {
        let secs = ((w.end_ms - w.start_ms) / 1000.0).max(1e-9);
        let achieved = if open {
            w.load.arrivals_started as f64 / secs
        } else {
            w.load.users
        };
        if w.warmup || w.partial || w.requests == 0 || !achieved.is_finite() || achieved < 1.0 {
            continue;
        }
        let key = (achieved.ln() / BIN_RATIO.ln()).round() as i64;
        bins.entry(key).or_default().push(i);
    }
    let median = |mut v: Vec<f64>| -> Option<f64> {
        v.retain(|x| x.is_finite());
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    bins.values()
        .filter_map(|idx| {
            let ws: Vec<&crate::result::time::WindowResult> =
                idx.iter().map(|&i| &r.windows[i]).collect();
            let requests: u64 = ws.iter().map(|w| w.requests).sum();
            if requests < BIN_MIN_REQUESTS {
                return None;
            }
            let n = ws.len() as f64;
            let secs = |w: &crate::result::time::WindowResult| {
                ((w.end_ms - w.start_ms) / 1000.0).max(1e-9)
            };
            let load = ws
                .iter()
                .map(|w| {
                    if open {
                        w.load.arrivals_started as f64 / secs(w)
                    } else {
                        w.load.users
                    }
                })
                .sum::<f64>()
                / n;
            let intended = ws.iter().map(|w| w.load.intended).sum::<f64>() / n;
            let server = r.server_metrics.as_ref().map(|m| {
                crate::result::server::Signals::combine(
                    &idx.iter().map(|&i| m.window(i)).collect::<Vec<_>>(),
                )
            });
            Some(Level {
                load: (load * 10.0).round() / 10.0,
                ttft_p50: median(ws.iter().filter_map(|w| w.ttft_p50_ms).collect()),
                tpot_p50: median(ws.iter().filter_map(|w| w.tpot_p50_ms).collect()),
                tpot_p90: median(ws.iter().filter_map(|w| w.tpot_p90_ms).collect()),
                tokens_per_s: ws.iter().map(|w| w.output_tokens_per_s).sum::<f64>() / n,
                requests,
                rate_limited: ws
                    .iter()
                    .map(|w| w.errors.get("rate_limited").copied().unwrap_or(0))
                    .sum(),
                // In a ramp, users join at whole levels while the intended
                // line rises smoothly: up to one user behind is on time.
                under_delivered: !open
                    && intended > 0.0
                    && load + 1.0 < intended * crate::result::time::DELIVERY_FLOOR,
                server,
                ..Level::default()
            })
        })
        .collect()
}

/// The streamed steps' prompt sizes against their TTFT, over the whole run.
fn prompts(r: &RunResult) -> Vec<PromptStep> {
    r.steps
        .iter()
        .filter(|s| s.response == ResponseKind::Sse)
        .filter_map(|s| {
            Some(PromptStep {
                step: s.name.clone(),
                chars: s.output_tokens.request_chars_mean?,
                ttft_p50: s.ttft_ms.p50?,
                requests: s.ok,
            })
        })
        .collect()
}

fn generator_figures(s: &crate::engine::selfcheck::SelfCheck) -> Option<String> {
    let lag = s.loop_lag_p99_ms?;
    let mut t = format!(
        "event-loop lag p99 {lag:.0} ms (limit {:.0} ms)",
        crate::engine::selfcheck::LAG_LIMIT_MS
    );
    if let Some(c) = s.cpu_utilization {
        t += &format!(
            ", the generator's CPU {:.0}% of {} cores",
            c * 100.0,
            s.cores
        );
    }
    if let Some(h) = s.host_cpu_utilization {
        t += &format!(", the machine's {:.0}%", h * 100.0);
    }
    Some(t)
}

/// What a run offers the rules.
pub fn of_run(r: &RunResult) -> Evidence {
    Evidence {
        levels: levels_of_run(r),
        generator_saturated: r.self_check.saturated,
        machine_starved: r.self_check.starved(),
        generator_figures: generator_figures(&r.self_check),
        prompts: prompts(r),
        // A scrape that failed is evidence of nothing.
        server_scraped: r
            .server_metrics
            .as_ref()
            .is_some_and(|m| m.endpoints.iter().any(|e| e.scrapes > e.failures)),
        cancelled: r.steps.iter().map(|s| s.cancelled).sum(),
        client_tokens_per_s: r.totals.output_tokens_per_s,
        server_overall: r.server_metrics.as_ref().map(|m| m.overall()),
        resumed: r
            .steps
            .iter()
            .filter_map(|s| s.resume.as_ref())
            .fold((0, 0, 0), |a, x| {
                (a.0 + x.resumed, a.1 + x.duplicates, a.2 + x.lost)
            }),
    }
}

/// What a capacity search offers: its conclusive probes, one per level.
pub fn of_capacity(c: &CapacityResult) -> Evidence {
    let mut probes: Vec<_> = c.probes.iter().filter(|p| p.note.is_none()).collect();
    probes.sort_by(|a, b| a.level.total_cmp(&b.level));
    probes.dedup_by(|a, b| a.level == b.level);
    Evidence {
        levels: probes
            .iter()
            .map(|p| Level {
                load: p.level,
                ttft_p50: p.ttft_p50_ms,
                tpot_p50: p.tpot_p50_ms,
                tokens_per_s: p.output_tokens_per_s,
                requests: p.requests,
                ..Level::default()
            })
            .collect(),
        ..Evidence::default()
    }
}
