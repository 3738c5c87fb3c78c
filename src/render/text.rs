//! The plain-text summary table printed at the end of a run.

use std::fmt::Write;

use crate::result::RunResult;
use crate::stats::Dist;

fn fmt_ms(d: &Dist, p: &str) -> String {
    super::ms(d.get(p))
}

/// A table of steps × key metrics, and a line on the generator's health.
// Long by design: the text summary's blocks in print order (step table, totals,
// generator, notes).
pub fn summary(r: &RunResult) -> String {
    let mut rows: Vec<[String; 10]> = vec![[
        "step".into(),
        "reqs".into(),
        "ok %".into(),
        "ttft p50".into(),
        "ttft p90".into(),
        "tpot p50".into(),
        "e2e p50".into(),
        "e2e p90".into(),
        "tok/s".into(),
        "errors".into(),
    ]];
    for s in &r.steps {
        let errors = if s.errors.is_empty() {
            "-".to_string()
        } else {
            s.errors
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        rows.push([
            s.name.clone(),
            s.requests.to_string(),
            format!("{:.1}", s.success_rate * 100.0),
            fmt_ms(&s.ttft_ms, "p50"),
            fmt_ms(&s.ttft_ms, "p90"),
            fmt_ms(&s.tpot_ms, "p50"),
            fmt_ms(&s.e2e_ms, "p50"),
            fmt_ms(&s.e2e_ms, "p90"),
            format!("{:.0}", s.throughput.output_tokens_per_s),
            errors,
        ]);
    }
    let w = &r.workflow;
    // A replay sends requests, not workflows: no workflow row.
    let replayed = r.traffic.as_ref().is_some_and(|t| t.replay.is_some());
    if !replayed || w.iterations > 0 {
        rows.push([
            "workflow".into(),
            w.iterations.to_string(),
            format!("{:.1}", w.success_rate * 100.0),
            "-".into(),
            "-".into(),
            "-".into(),
            fmt_ms(&w.duration_ms, "p50"),
            fmt_ms(&w.duration_ms, "p90"),
            format!("{:.0}", r.totals.output_tokens_per_s),
            if w.failed > 0 {
                format!("failed×{}", w.failed)
            } else {
                "-".into()
            },
        ]);
    }
    let widths: Vec<usize> = (0..10)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "flora-gate: {} against {} · {} users · {:.1}s measured{}",
        r.provenance.scenario.name,
        crate::target::redact_userinfo(&r.provenance.target),
        r.provenance.concurrency,
        r.window.duration_s,
        if r.state() == crate::result::RunState::Complete {
            String::new()
        } else {
            format!(
                " · {} ({})",
                r.status,
                r.status_reason.as_deref().unwrap_or("")
            )
        }
    );
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 || c == 9 {
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if i == 0 {
            let _ = writeln!(out, "{}", "-".repeat(widths.iter().sum::<usize>() + 2 * 9));
        }
    }
    let _ = writeln!(
        out,
        "latencies in ms; failed requests count as ∞ in percentiles"
    );
    let t = &r.totals;
    let _ = writeln!(
        out,
        "totals: {} requests, {:.2}% errors, {:.1} req/s, {:.0} output tok/s, goodput {:.1} req/s",
        t.requests,
        t.error_rate * 100.0,
        t.requests_per_s,
        t.output_tokens_per_s,
        t.goodput_per_s
    );
    for line in super::shape::text_lines(r) {
        let _ = writeln!(out, "{line}");
    }
    let sc = &r.self_check;
    let lag = sc
        .loop_lag_p99_ms
        .map_or("-".into(), |v| format!("{v:.1} ms"));
    let cpu = sc
        .cpu_utilization
        .map_or("-".into(), |v| format!("{:.0}%", v * 100.0));
    let _ = writeln!(
        out,
        "load generator: {} (loop lag p99 {lag}, CPU {cpu} of {} cores){}",
        sc.verdict(),
        sc.cores,
        if sc.notes.is_empty() {
            String::new()
        } else {
            format!(" — {}", sc.notes.join("; "))
        }
    );
    out
}

/// The shards of a merged result, one line each, flags last.
pub fn shards(m: &crate::result::shard::Merged) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>5}  {:>9}  {:>9}  {:>9}  {:>10}  {:>12}  flag",
        "shard", "requests", "ttft p50", "late ms", "lag max", "clock offset"
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), super::ms_number);
    for s in &m.shards {
        let _ = writeln!(
            o,
            "{:>5}  {:>9}  {:>9}  {:>9.0}  {:>10}  {:>12}  {}",
            s.index,
            s.requests,
            ms(s.ttft_p50_ms),
            s.late_ms,
            ms(s.loop_lag_max_ms),
            s.clock_offset_ms
                .map_or("-".to_string(), |c| format!("{c:+.0} ms")),
            s.flag.as_deref().unwrap_or("")
        );
    }
    if let Some(note) = m.partial_note() {
        let _ = writeln!(o, "warning: {note}");
    }
    if m.all_running_from_ms > 0.0 {
        let _ = writeln!(
            o,
            "windows before {:.1} s are partial: not every shard was running yet",
            m.all_running_from_ms / 1000.0
        );
    }
    o
}
