//! A capacity search for people: the conclusion, every probe, and the curve
//! of latency and throughput against users with the SLO line and C* marked.

use std::fmt::Write as _;

use crate::gate::capacity::CapacityVerdict;
use crate::policy::slo::{Decision, Objective};
use crate::result::capacity::CapacityResult;

use super::ms;

fn word(d: Decision) -> &'static str {
    match d {
        Decision::Pass => "✅ pass",
        Decision::Fail => "❌ fail",
        Decision::Inconclusive => "❔ inconclusive",
    }
}

/// The conclusion in one line.
pub fn headline(r: &CapacityResult) -> String {
    let slos = Objective::labels(&r.objectives);
    let by = r.search.by;
    let c = &r.capacity;
    match (c.c_star, c.first_fail) {
        (Some(lo), Some(hi)) => format!(
            "capacity {} at {slos} ({} fail{}, binding {})",
            by.show(lo),
            by.show(hi),
            if c.bracket_inconclusive {
                " inconclusively"
            } else {
                ""
            },
            c.binding.as_deref().unwrap_or("-")
        ),
        (Some(lo), None) => format!(
            "capacity at least {} (the most tried) at {slos}",
            by.show(lo)
        ),
        (None, Some(hi)) if c.bracket_inconclusive => {
            format!(
                "no level shown to hold {slos} ({} inconclusive)",
                by.show(hi)
            )
        }
        (None, _) => format!("not even the lowest level holds {slos}"),
    }
}

/// Series colours of the charts: the measured series, dark first, then
/// the objective in red.
const SERIES: [&str; 2] = ["#1f4e9c", "#5b9bd5"];
const OBJECTIVE: &str = "#d62728";

/// A level on a chart's axis or in a table: `48`, `12.5`.
fn level(l: f64) -> String {
    crate::stats::format::trim_number(l)
}

/// One Mermaid line chart against the levels probed, with a flat line at
/// `limit` when there is one.
fn chart(
    o: &mut String,
    title: &str,
    unit: &str,
    labels: &[String],
    lines: &[Vec<Option<f64>>],
    limit: Option<f64>,
    kind: &str,
) {
    let top = lines
        .iter()
        .flatten()
        .flatten()
        .copied()
        .chain(limit)
        .filter(|x| x.is_finite())
        .fold(1.0f64, f64::max);
    let ceiling = (top * 1.1).ceil();
    // Beyond any measured value (too many failures for the quantile, or
    // none measured at a level that ran away): drawn at the top.
    let num = |v: &Option<f64>| {
        v.filter(|x| x.is_finite())
            .map_or(format!("{ceiling:.1}"), |x| format!("{x:.1}"))
    };
    // A metric the scenario never measures (TPOT without streaming) has no line.
    let shown: Vec<&Vec<Option<f64>>> = lines
        .iter()
        .filter(|l| l.iter().any(Option::is_some))
        .collect();
    let mut palette: Vec<&str> = SERIES.iter().copied().cycle().take(shown.len()).collect();
    palette.push(OBJECTIVE);
    let palette = palette.join(", ");
    let _ = writeln!(
        o,
        "```mermaid\n%%{{init: {{\"themeVariables\": {{\"xyChart\": {{\"plotColorPalette\": \"{palette}\"}}}}}}}}%%\nxychart-beta\n    title \"{title}\"\n    x-axis [{}]\n    y-axis \"{unit}\" 0 --> {ceiling:.0}",
        labels.join(", "),
    );
    for l in shown {
        let _ = writeln!(
            o,
            "    {kind} [{}]",
            l.iter().map(num).collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(l) = limit {
        let _ = writeln!(
            o,
            "    line [{}]",
            vec![format!("{l:.1}"); labels.len()].join(", ")
        );
    }
    let _ = writeln!(o, "```\n");
}

/// The Markdown report: conclusion (or, judged against a baseline, the
/// verdict), probes, and Mermaid charts.
// Long by design: the report's sections in the order they are read (conclusion
// or verdict, probes table, charts, how the search ran); each is a few writes
// with no logic shared between them.
pub fn markdown(r: &CapacityResult, verdict: Option<&CapacityVerdict>) -> String {
    let mut o = String::new();
    let by = r.search.by;
    match verdict {
        Some(v) => {
            let _ = writeln!(
                o,
                "## {} flora-gate: {} — {}\n",
                v.verdict.mark(),
                v.verdict.to_string().to_uppercase(),
                super::md_cell(&v.headline)
            );
            let _ = writeln!(
                o,
                "This run: {}. A fall fails when even the most this run could hold is more than {:.0}% under the least the baseline held.\n",
                super::md_cell(&headline(r)),
                v.margin * 100.0
            );
        }
        None => {
            let _ = writeln!(
                o,
                "## flora-gate capacity: {}\n",
                super::md_cell(&headline(r))
            );
        }
    }
    let _ = writeln!(
        o,
        "{} against `{}` · by {} · {} probes · {:.0} s · {} requests\n",
        super::md_cell(&r.scenario.name),
        super::md_cell(&r.target),
        by.heading(),
        r.probes.len(),
        r.elapsed_s,
        r.requests
    );
    if let Some(why) = &r.stopped {
        let _ = writeln!(
            o,
            "> **Note:** the search stopped early: {}\n",
            super::md_cell(why)
        );
    }
    let _ = writeln!(o, "| {} | measured | extended | decision | TTFT p50 | TTFT p90 | TPOT p50 | tok/s | goodput/s |", by.heading());
    let _ = writeln!(
        o,
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for p in &r.probes {
        let _ = writeln!(
            o,
            "| {} | {:.1} s | {} | {} | {} | {} | {} | {:.0} | {:.1} |",
            level(p.level),
            p.measured_s,
            p.extensions,
            word(p.decision),
            ms(p.ttft_p50_ms),
            ms(p.ttft_p90_ms),
            ms(p.tpot_p50_ms),
            p.output_tokens_per_s,
            p.goodput_per_s
        );
    }
    let notes: Vec<String> = r
        .probes
        .iter()
        .filter_map(|p| {
            p.note
                .as_ref()
                .map(|n| format!("- {}: {}", by.show(p.level), super::md_cell(n)))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(o, "\n{}", notes.join("\n"));
    }
    let mut probed: Vec<_> = r.probes.iter().collect();
    probed.sort_by(|a, b| a.level.total_cmp(&b.level));
    probed.dedup_by(|a, b| a.level == b.level);
    if probed.len() >= 2 {
        let labels: Vec<String> = probed
            .iter()
            .map(|p| {
                if Some(p.level) == r.capacity.c_star {
                    format!("\"C* {}\"", level(p.level))
                } else {
                    format!("\"{}\"", level(p.level))
                }
            })
            .collect();
        let limit = |prefix: &str| {
            r.objectives
                .iter()
                .find(|o| o.metric.starts_with(prefix))
                .map(|o| o.limit)
        };
        let _ = writeln!(o);
        let against = format!("against {}", by.heading());
        chart(
            &mut o,
            &format!("TTFT (ms) {against}"),
            "ms",
            &labels,
            &[
                probed.iter().map(|p| p.ttft_p90_ms).collect(),
                probed.iter().map(|p| p.ttft_p50_ms).collect(),
            ],
            limit("ttft_"),
            "line",
        );
        chart(
            &mut o,
            &format!("TPOT p50 (ms) {against}"),
            "ms",
            &labels,
            &[probed.iter().map(|p| p.tpot_p50_ms).collect()],
            limit("tpot_"),
            "line",
        );
        chart(
            &mut o,
            &format!("Output tokens per second {against}"),
            "tok/s",
            &labels,
            &[probed.iter().map(|p| Some(p.output_tokens_per_s)).collect()],
            None,
            "bar",
        );
        let _ = writeln!(
            o,
            "Lines: TTFT p90 (upper) and p50 (lower); a flat line is the objective on that metric; a point at the top of a chart is off its scale (failures beyond the quantile, or a level stopped before it measured one). C* marks the largest level that held every objective."
        );
        let findings = crate::gate::diagnosis::of_capacity(r);
        let _ = writeln!(o, "\n### Bottleneck analysis\n");
        if findings.is_empty() {
            let _ = writeln!(
                o,
                "No bottleneck: latency and throughput held across the levels probed.\n"
            );
        }
        for f in findings {
            let _ = writeln!(
                o,
                "- **{}.** {}. _Rule:_ {}. _Refuted by:_ {}. _Next hypothesis:_ {}.\n",
                f.title,
                super::md_cell(&f.evidence),
                f.rule,
                f.refuted_by,
                f.next
            );
        }
    }
    o
}

/// A decision as a plain word.
pub fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Pass => "pass",
        Decision::Fail => "fail",
        Decision::Inconclusive => "inconclusive",
    }
}

/// The search as a plain-text table and one line of conclusion.
pub fn text(r: &CapacityResult) -> String {
    let mut o = String::new();
    let by = r.search.by;
    let _ = writeln!(
        o,
        "{:>11}  {:>8}  {:>3}  {:<12}  {:>8}  {:>8}  {:>8}  {:>8}",
        by.heading(),
        "measured",
        "ext",
        "decision",
        "ttft p50",
        "ttft p90",
        "tpot p50",
        "tok/s"
    );
    for p in &r.probes {
        let _ = writeln!(
            o,
            "{:>11}  {:>7.1}s  {:>3}  {:<12}  {:>8}  {:>8}  {:>8}  {:>8.0}",
            level(p.level),
            p.measured_s,
            p.extensions,
            decision_word(p.decision),
            ms(p.ttft_p50_ms),
            ms(p.ttft_p90_ms),
            ms(p.tpot_p50_ms),
            p.output_tokens_per_s
        );
        if let Some(n) = &p.note {
            let _ = writeln!(o, "{:>11}  {n}", "");
        }
    }
    let c = &r.capacity;
    let slos = Objective::labels(&r.objectives);
    let spent = format!("{:.0}s, {} requests", r.elapsed_s, r.requests);
    let line = match (c.c_star, c.first_fail) {
        (Some(lo), Some(hi)) => format!(
            "capacity: {} hold {slos}; {} do not{} (binding: {}); {spent}",
            by.show(lo),
            by.show(hi),
            if c.bracket_inconclusive {
                " (inconclusive at its cap: measure longer with `--probe` or `--max-extensions` to decide it)"
            } else {
                ""
            },
            c.binding.as_deref().unwrap_or("-"),
        ),
        (Some(lo), None) => format!(
            "capacity: at least {} (the most tried) hold {slos}; {spent}",
            by.show(lo)
        ),
        (None, Some(hi)) if c.bracket_inconclusive => format!(
            "capacity: no level was shown to hold {slos}: {} stayed inconclusive at the longest probe (measure longer: `--probe`, `--max-extensions`, or an objective further from what the server does); {spent}",
            by.show(hi)
        ),
        (None, _) => format!(
            "capacity: not even {} holds {slos} (binding: {}); {spent}",
            by.show(by.resolution()),
            c.binding.as_deref().unwrap_or("-"),
        ),
    };
    let _ = writeln!(o, "{line}");
    o
}
