//! A capacity search for people: the conclusion, every probe, and the curve
//! of latency and throughput against users with the SLO line and C* marked.

use std::fmt::Write as _;

use crate::gate::capacity::CapacityResult;
use crate::gate::slo::Decision;

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), super::ms_number)
}

fn word(d: Decision) -> &'static str {
    match d {
        Decision::Pass => "✅ pass",
        Decision::Fail => "❌ fail",
        Decision::Inconclusive => "❔ inconclusive",
    }
}

/// The conclusion in one line.
pub fn headline(r: &CapacityResult) -> String {
    let slos = r
        .objectives
        .iter()
        .map(|o| format!("{} ≤ {}", o.metric, o.limit))
        .collect::<Vec<_>>()
        .join(", ");
    let c = &r.capacity;
    match (c.c_star, c.first_fail) {
        (Some(lo), Some(hi)) => format!(
            "capacity {lo} users at {slos} ({hi} fail{}, binding {})",
            if c.bracket_inconclusive {
                " inconclusively"
            } else {
                ""
            },
            c.binding.as_deref().unwrap_or("-")
        ),
        (Some(lo), None) => format!("capacity at least {lo} users (the most tried) at {slos}"),
        (None, Some(hi)) if c.bracket_inconclusive => {
            format!("no level shown to hold {slos} ({hi} users inconclusive)")
        }
        (None, _) => format!("not even one user holds {slos}"),
    }
}

/// The Markdown report: conclusion, probes, and Mermaid charts.
pub fn markdown(r: &CapacityResult) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## flora-gate capacity: {}\n",
        super::md_cell(&headline(r))
    );
    let _ = writeln!(
        o,
        "{} against `{}` · {} probes · {:.0} s · {} requests\n",
        super::md_cell(&r.scenario.name),
        super::md_cell(&r.target),
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
    let _ = writeln!(o, "| users | measured | extended | decision | TTFT p50 | TTFT p90 | TPOT p50 | tok/s | goodput/s |");
    let _ = writeln!(
        o,
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for p in &r.probes {
        let _ = writeln!(
            o,
            "| {} | {:.1} s | {} | {} | {} | {} | {} | {:.0} | {:.1} |",
            p.users,
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
    let mut by_users: Vec<_> = r.probes.iter().collect();
    by_users.sort_by_key(|p| p.users);
    by_users.dedup_by_key(|p| p.users);
    if by_users.len() >= 2 {
        let labels: Vec<String> = by_users
            .iter()
            .map(|p| {
                if Some(p.users) == r.capacity.c_star {
                    format!("\"C* {}\"", p.users)
                } else {
                    format!("\"{}\"", p.users)
                }
            })
            .collect();
        let num = |v: Option<f64>| {
            v.filter(|x| x.is_finite())
                .map_or("0".to_string(), |x| format!("{x:.1}"))
        };
        let ttft_limit = r
            .objectives
            .iter()
            .find(|o| o.metric.starts_with("ttft_"))
            .map(|o| o.limit);
        let p90: Vec<String> = by_users.iter().map(|p| num(p.ttft_p90_ms)).collect();
        let p50: Vec<String> = by_users.iter().map(|p| num(p.ttft_p50_ms)).collect();
        let top = by_users
            .iter()
            .filter_map(|p| p.ttft_p90_ms)
            .chain(ttft_limit)
            .filter(|x| x.is_finite())
            .fold(1.0f64, f64::max);
        let _ = writeln!(
            o,
            "\n```mermaid\nxychart-beta\n    title \"TTFT (ms) against users\"\n    x-axis [{}]\n    y-axis \"ms\" 0 --> {:.0}\n    line [{}]\n    line [{}]",
            labels.join(", "),
            (top * 1.1).ceil(),
            p90.join(", "),
            p50.join(", ")
        );
        if let Some(l) = ttft_limit {
            let _ = writeln!(
                o,
                "    line [{}]",
                vec![format!("{l:.1}"); by_users.len()].join(", ")
            );
        }
        let _ = writeln!(o, "```\n");
        let tps: Vec<String> = by_users
            .iter()
            .map(|p| format!("{:.0}", p.output_tokens_per_s))
            .collect();
        let tmax = by_users
            .iter()
            .map(|p| p.output_tokens_per_s)
            .fold(1.0f64, f64::max);
        let _ = writeln!(
            o,
            "```mermaid\nxychart-beta\n    title \"Output tokens per second against users\"\n    x-axis [{}]\n    y-axis \"tok/s\" 0 --> {:.0}\n    bar [{}]\n```\n",
            labels.join(", "),
            (tmax * 1.1).ceil(),
            tps.join(", ")
        );
        let _ = writeln!(
            o,
            "Lines: TTFT p90 (upper), p50 (lower){}; C* marks the largest level that held every objective.",
            if ttft_limit.is_some() { " and the TTFT objective (flat)" } else { "" }
        );
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
    let _ = writeln!(
        o,
        "{:>6}  {:>8}  {:>3}  {:<12}  {:>8}  {:>8}  {:>8}  {:>8}",
        "users", "measured", "ext", "decision", "ttft p50", "ttft p90", "tpot p50", "tok/s"
    );
    for p in &r.probes {
        let _ = writeln!(
            o,
            "{:>6}  {:>7.1}s  {:>3}  {:<12}  {:>8}  {:>8}  {:>8}  {:>8.0}",
            p.users,
            p.measured_s,
            p.extensions,
            decision_word(p.decision),
            ms(p.ttft_p50_ms),
            ms(p.ttft_p90_ms),
            ms(p.tpot_p50_ms),
            p.output_tokens_per_s
        );
    }
    let c = &r.capacity;
    let slos = r
        .objectives
        .iter()
        .map(|o| format!("{} ≤ {}", o.metric, o.limit))
        .collect::<Vec<_>>()
        .join(", ");
    let line =
        match (c.c_star, c.first_fail) {
            (Some(lo), Some(hi)) => format!(
            "capacity: {lo} users hold {slos}; {hi} do not{} (binding: {}); {:.0}s, {} requests",
            if c.bracket_inconclusive { " (inconclusive at its cap)" } else { "" },
            c.binding.as_deref().unwrap_or("-"),
            r.elapsed_s,
            r.requests
        ),
            (Some(lo), None) => format!(
                "capacity: at least {lo} users (the most tried) hold {slos}; {:.0}s, {} requests",
                r.elapsed_s, r.requests
            ),
            (None, Some(hi)) if c.bracket_inconclusive => format!(
                "capacity: no level was shown to hold {slos}: {hi} users stayed inconclusive at the longest probe; {:.0}s, {} requests",
                r.elapsed_s, r.requests
            ),
            (None, _) => format!(
                "capacity: not even one user holds {slos} (binding: {}); {:.0}s, {} requests",
                c.binding.as_deref().unwrap_or("-"),
                r.elapsed_s,
                r.requests
            ),
        };
    let _ = writeln!(o, "{line}");
    o
}
