//! What a shaped load reports: a per-stage table, Mermaid charts of TTFT
//! and throughput against the load, the workflow mix, open-loop arrivals,
//! spike recovery and drift. Numbers are formatted here; templates place text.

use serde::Serialize;

use super::md_cell;
use crate::policy::metrics::Base;
use crate::result::dynamics::{Slope, DRIFT_FLAG_PCT_PER_H, DRIFT_MIN_CHANGE_PCT, RECOVERY_BAND};
use crate::result::time::StageResult;
use crate::result::values::pooled;
use crate::result::RunResult;
use crate::stats::LatencyHist;

/// One stage in the table.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    name: String,
    load: String,
    delivered: String,
    ttft_p50: String,
    ttft_p90: String,
    tpot_p50: String,
    tokens_per_s: String,
    errors: String,
}

/// One workflow of the mix.
#[derive(Debug, Clone, Serialize)]
pub struct MixRow {
    name: String,
    weight: String,
    share: String,
    iterations: u64,
    success: String,
    duration_p50: String,
}

/// The load-shape part of a report; `None` for a fixed load without a mix.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeContext {
    model: String,
    unit: String,
    stages: Vec<StageRow>,
    latency_chart: Option<String>,
    throughput_chart: Option<String>,
    chart_caption: String,
    mix: Vec<MixRow>,
    facts: Vec<String>,
}

use super::ms;

/// TTFT and TPOT quantiles of a stage's streamed steps, histograms merged exactly.
fn stage_row(st: &StageResult, open: bool) -> (StageRow, [Option<f64>; 3]) {
    let (ttft, tpot) = (pooled(&st.steps, Base::Ttft), pooled(&st.steps, Base::Tpot));
    let q = |h: &LatencyHist, p| h.quantile_ms(p);
    let figures = [
        q(&ttft, 0.5),
        q(&ttft, 0.9),
        Some(st.totals.output_tokens_per_s),
    ];
    let load = if open {
        format!("{:.1}/s → {:.1}/s", st.intended, st.achieved)
    } else {
        format!("{:.0} → {:.1}", st.intended, st.achieved)
    };
    let errors = if st.totals.failed == 0 {
        "-".to_string()
    } else {
        format!(
            "{:.2}% ({})",
            st.totals.error_rate * 100.0,
            st.totals
                .errors
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    (
        StageRow {
            name: md_cell(&st.name),
            load,
            delivered: format!(
                "{:.1}%{}",
                st.delivered * 100.0,
                match (
                    st.under_delivered,
                    st.totals.errors.contains_key("rate_limited")
                ) {
                    // Users waiting out 429s deliver less: the server's limit at work.
                    (true, true) => " ⚠️",
                    // The generator's limit: the stage's figures measure it.
                    (true, false) => " ⚠️ invalid",
                    _ => "",
                }
            ),
            ttft_p50: ms(figures[0]),
            ttft_p90: ms(figures[1]),
            tpot_p50: ms(q(&tpot, 0.5)),
            tokens_per_s: format!("{:.0}", st.totals.output_tokens_per_s),
            errors,
        },
        figures,
    )
}

fn slope_text(name: &str, s: Option<&Slope>) -> Option<String> {
    let s = s?;
    Some(format!(
        "{name} {:+.1}%/h (99.9% interval {:+.1} to {:+.1}){}",
        s.pct_per_h,
        s.low,
        s.high,
        if s.flagged {
            format!(" ⚠️ drifting (significant, above {DRIFT_FLAG_PCT_PER_H}%/h and over {DRIFT_MIN_CHANGE_PCT}% across the run)")
        } else {
            String::new()
        }
    ))
}

/// A Mermaid xychart of series against the stages' load.
fn chart(
    title: &str,
    axis: &str,
    labels: &[String],
    series: &[(&str, Vec<Option<f64>>)],
    bar: bool,
) -> Option<String> {
    if labels.len() < 2 || series.iter().all(|(_, v)| v.iter().all(Option::is_none)) {
        return None;
    }
    let num = |v: &Option<f64>| {
        v.filter(|x| x.is_finite())
            .map_or("0".to_string(), |x| format!("{x:.1}"))
    };
    // The axis starts at 0, so bar heights compare as the numbers do.
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .filter(|x| x.is_finite())
        .fold(0.0f64, |a, b| a.max(*b));
    let mut c = format!(
        "xychart-beta\n    title \"{title}\"\n    x-axis [{}]\n    y-axis \"{axis}\" 0 --> {:.0}",
        labels.join(", "),
        (top * 1.1).ceil().max(1.0)
    );
    for (i, (_, values)) in series.iter().enumerate() {
        let kind = if bar && i == 0 { "bar" } else { "line" };
        c.push_str(&format!(
            "\n    {kind} [{}]",
            values.iter().map(num).collect::<Vec<_>>().join(", ")
        ));
    }
    Some(c)
}

/// The load-shape context of a result.
// Long by design: the shape section's parts in the order the report prints them
// (stages, knee, arrivals, dynamics, workflows), each a short block over the
// same result.
pub fn context(r: &RunResult) -> Option<ShapeContext> {
    let load = r.load.as_ref()?;
    if r.stages.is_empty() && r.workflows.is_empty() && r.arrivals.is_none() && r.dynamics.is_none()
    {
        return None;
    }
    let open = load.model == "open";
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let (mut p50, mut p90, mut tps) = (Vec::new(), Vec::new(), Vec::new());
    for st in &r.stages {
        let (row, f) = stage_row(st, open);
        rows.push(row);
        // A stage that measured nothing (inside the warm-up, say) has no point.
        if st.totals.requests == 0 {
            continue;
        }
        let x = if open {
            format!("{:.0}/s", st.achieved)
        } else {
            format!("{:.0}", st.achieved)
        };
        labels.push(format!("\"{}\"", x));
        p50.push(f[0]);
        p90.push(f[1]);
        tps.push(f[2]);
    }
    let axis = if open { "starts per second" } else { "users" };
    let latency_chart = chart(
        &format!("TTFT p50 and p90 (ms) by stage, against {axis}"),
        "ms",
        &labels,
        &[("p50", p50), ("p90", p90)],
        false,
    );
    let throughput_chart = chart(
        &format!("Output tokens per second by stage, against {axis}"),
        "tok/s",
        &labels,
        &[("tok/s", tps)],
        true,
    );
    let mix = r
        .workflows
        .iter()
        .map(|w| MixRow {
            name: md_cell(&w.name),
            weight: format!("{}", w.weight),
            share: format!("{:.1}%", w.share * 100.0),
            iterations: w.result.iterations,
            success: format!("{:.1}%", w.result.success_rate * 100.0),
            duration_p50: ms(w.result.duration_ms.p50),
        })
        .collect();
    let mut facts = Vec::new();
    if let Some(a) = &r.arrivals {
        facts.push(format!(
            "arrivals: {} of {} started on time ({:.1}%); {} missed at the in-flight cap, {} too late, {} held back while the target asked to wait or kept failing; lateness p50 {} ms, p99 {} ms",
            a.started,
            a.due,
            a.achieved_ratio * 100.0,
            a.missed_cap,
            a.missed_late,
            a.missed_held,
            ms(a.lateness_p50_ms),
            ms(a.lateness_p99_ms)
        ));
    }
    if let Some(d) = &r.dynamics {
        for rec in &d.recovery {
            facts.push(match (rec.before_ttft_p90_ms, rec.recovered_after_s) {
                (None, _) => format!(
                    "spike `{}` at {:.0}s: no TTFT p90 before it to recover to",
                    md_cell(&rec.stage),
                    rec.jump_s
                ),
                (Some(b), Some(s)) => format!(
                    "spike `{}` at {:.0}s: TTFT p90 back within {:.0}% of {} ms {:.0}s after {:.0}s",
                    md_cell(&rec.stage),
                    rec.jump_s,
                    (RECOVERY_BAND - 1.0) * 100.0,
                    ms(Some(b)),
                    s,
                    rec.from_s
                ),
                (Some(b), None) => format!(
                    "spike `{}` at {:.0}s: TTFT p90 not back within {:.0}% of {} ms by the end ⚠️",
                    md_cell(&rec.stage),
                    rec.jump_s,
                    (RECOVERY_BAND - 1.0) * 100.0,
                    ms(Some(b))
                ),
            });
        }
        if let Some(dr) = &d.drift {
            let parts: Vec<String> = [
                slope_text("TTFT p50", dr.ttft_p50.as_ref()),
                slope_text("TPOT p50", dr.tpot_p50.as_ref()),
                dr.generator_rss_mib_per_h
                    .map(|m| format!("generator memory {m:+.1} MiB/h")),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !parts.is_empty() {
                facts.push(format!(
                    "drift over {} windows: {}",
                    dr.windows,
                    parts.join("; ")
                ));
            }
        }
    }
    Some(ShapeContext {
        model: load.model.clone(),
        unit: if open {
            "starts/s intended → achieved"
        } else {
            "users intended → achieved"
        }
        .into(),
        stages: rows,
        latency_chart,
        throughput_chart,
        chart_caption: format!(
            "x: {} achieved per stage (stages that measured nothing left out); upper line TTFT p90, lower p50.",
            if open { "workflow starts per second" } else { "users" }
        ),
        mix,
        facts,
    })
}

/// The stages, mix and facts as plain lines, for the summary after a run.
pub fn text_lines(r: &RunResult) -> Vec<String> {
    let Some(c) = context(r) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if !c.stages.is_empty() {
        out.push(format!("stages ({}):", c.unit));
    }
    for s in &c.stages {
        out.push(format!(
            "  {}: {} ({}) · TTFT p50 {} p90 {} · TPOT p50 {} · {} tok/s · errors {}",
            s.name,
            s.load,
            s.delivered,
            s.ttft_p50,
            s.ttft_p90,
            s.tpot_p50,
            s.tokens_per_s,
            s.errors
        ));
    }
    for m in &c.mix {
        out.push(format!(
            "  workflow {}: {} of iterations ({}), {} ok, p50 {} ms",
            m.name, m.share, m.iterations, m.success, m.duration_p50
        ));
    }
    out.extend(c.facts.iter().map(|f| format!("  {f}")));
    out
}
