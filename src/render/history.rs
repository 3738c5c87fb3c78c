//! The history's analysis in words: Markdown for a nightly issue or PR
//! comment, and plain text. Everything the records carry (scenario and
//! step names, commits, notes quoting them) is foreign text and made inert.

use std::fmt::Write as _;

use super::{md_cell, md_code, md_inline, plain, short_number};
use crate::gate::trend::{day, short, Drift, Found, Series, Trend, RECENT};

/// `+6.1% (±1.4%)`.
pub fn step_text(step: f64, low: f64, high: f64) -> String {
    format!(
        "{:+.1}% (±{:.1}%)",
        step * 100.0,
        (high - low) / 2.0 * 100.0
    )
}

/// The series' name in a sentence: `TTFT p90` or `TTFT p90 of step draft`.
fn name(s: &Series) -> String {
    let label = md_cell(&s.label);
    match s.scope.as_str() {
        crate::policy::metrics::ALL => label,
        crate::policy::metrics::WORKFLOW => format!("{label} of the workflow"),
        step => format!("{label} of step `{}`", md_code(step)),
    }
}

/// The setup in Markdown: the scenario's name and variables in code spans.
pub fn setup_md(s: &crate::result::history::Setup) -> String {
    let mut out = format!(
        "`{}` ({}) at {} users",
        md_code(&s.scenario),
        md_code(s.sha256.get(..12).unwrap_or(&s.sha256)),
        s.concurrency
    );
    if s.vars != "{}" {
        out.push_str(&format!(" with `{}`", md_code(&s.vars)));
    }
    out
}

fn commit(c: Option<&str>) -> String {
    c.map_or_else(
        || "(no commit)".into(),
        |c| format!("`{}`", md_code(short(c))),
    )
}

/// "TTFT p90 +6.1% (±1.4%) between abc1234 and def5678, 2026-12-02".
pub fn change_sentence(s: &Series, c: &Found) -> String {
    format!(
        "{} {} between {} and {}, {} (p = {})",
        name(s),
        step_text(c.change.step, c.change.low, c.change.high),
        commit(c.from_commit.as_deref()),
        commit(c.to_commit.as_deref()),
        day(&c.date),
        p_text(c.change.p_value)
    )
}

/// "TTFT p50 +12% (±3%) over 14 nights since 2026-11-20, no single step".
pub fn drift_sentence(s: &Series, d: &Drift) -> String {
    let steps = match d.steps {
        0 => "no single step".to_string(),
        1 => "one step above".to_string(),
        n => format!("{n} steps above"),
    };
    format!(
        "{} {} over {} nights since {}, {steps}: the newest {RECENT} nights against the {} before ({})",
        name(s),
        step_text(d.change, d.low, d.high),
        d.nights,
        day(&d.since),
        d.reference_nights,
        if d.level == "fail" {
            "past the margin"
        } else {
            "past the warn margin"
        }
    )
}

fn p_text(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// A sparkline of the values (gaps as spaces), at most `width` nights.
pub fn spark(values: &[Option<f64>], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail = &values[values.len().saturating_sub(width)..];
    let present = tail.iter().flatten();
    let lo = present.clone().copied().fold(f64::INFINITY, f64::min);
    let hi = present.copied().fold(f64::NEG_INFINITY, f64::max);
    tail.iter()
        .map(|v| match v {
            None => ' ',
            Some(x) if hi > lo => BARS[(((x - lo) / (hi - lo)) * 7.0).round() as usize],
            Some(_) => BARS[3],
        })
        .collect()
}

/// The headline: what moved in the gated metrics over all steps.
pub fn headline(t: &Trend) -> String {
    let span = match (t.nights.first(), t.nights.last()) {
        (Some(a), Some(b)) => format!("{} → {}", day(&a.date), day(&b.date)),
        _ => String::new(),
    };
    let mut moved: Vec<String> = Vec::new();
    for s in t.headline_series() {
        if let Some(c) = s.changes.iter().rev().find(|c| c.regression) {
            moved.push(format!(
                "{} {:+.1}% from {}",
                s.label,
                c.change.step * 100.0,
                day(&c.date)
            ));
        } else if let Some(d) = &s.drift {
            moved.push(format!(
                "{} {:+.1}% over {} nights",
                s.label,
                d.change * 100.0,
                d.nights
            ));
        }
    }
    let what = if moved.is_empty() {
        "no regression and no drift in the gated metrics".to_string()
    } else {
        moved.join("; ")
    };
    format!("{what} ({} nights, {span})", t.nights.len())
}

/// Change points and drifts, each with its series.
type Findings<'a> = (Vec<(&'a Series, &'a Found)>, Vec<(&'a Series, &'a Drift)>);

/// Changes and shown drifts of some series.
fn findings<'a>(series: impl Iterator<Item = &'a Series>) -> Findings<'a> {
    let mut changes = Vec::new();
    let mut drifts = Vec::new();
    for s in series {
        changes.extend(s.changes.iter().map(|c| (s, c)));
        if let Some(d) = s.drift.as_ref().filter(|d| d.beyond_steps()) {
            drifts.push((s, d));
        }
    }
    (changes, drifts)
}

fn change_rows(o: &mut String, rows: &[(&Series, &Found)]) {
    o.push_str("| | metric | step | between | from | p |\n|---|---|---:|---|---|---:|\n");
    for (s, c) in rows {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} … {} | {} | {} |",
            if c.regression {
                "🔺 worse"
            } else {
                "🔻 better"
            },
            name(s),
            step_text(c.change.step, c.change.low, c.change.high),
            commit(c.from_commit.as_deref()),
            commit(c.to_commit.as_deref()),
            day(&c.date),
            p_text(c.change.p_value)
        );
    }
}

/// A gated series' row: its newest value, its nights, a sparkline of the
/// last 30 and their range (a sparkline always fills its height).
fn series_row(s: &Series) -> String {
    let newest = s.values.iter().rev().flatten().next();
    let tail = &s.values[s.values.len().saturating_sub(30)..];
    let lo = tail.iter().flatten().copied().fold(f64::INFINITY, f64::min);
    let hi = tail
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let range = if lo.is_finite() && hi > lo {
        format!(
            "{}–{} ({:.1}%)",
            short_number(lo),
            short_number(hi),
            (hi / lo - 1.0) * 100.0
        )
    } else {
        "—".into()
    };
    format!(
        "| {} | {} | {} | `{}` | {range} |",
        name(s),
        newest.map_or_else(
            || "—".into(),
            |v| format!("{} {}", short_number(*v), s.unit)
        ),
        s.values.iter().flatten().count(),
        spark(&s.values, 30)
    )
}

/// Rows of the "other series" table at most.
const MAX_OTHER_ROWS: usize = 60;

/// The Markdown report.
pub fn markdown(t: &Trend) -> String {
    let mut o = String::with_capacity(8 * 1024);
    let _ = writeln!(
        o,
        "## flora-gate history · {}\n\n**{}.**\n",
        setup_md(&t.setup),
        md_inline(&headline(t))
    );
    let (changes, drifts) = findings(t.headline_series());
    if !changes.is_empty() {
        o.push_str("### Change points (gated metrics, all steps)\n\n");
        change_rows(&mut o, &changes);
        o.push('\n');
    }
    if !drifts.is_empty() {
        o.push_str("### Against the long-term reference\n\n");
        for (s, d) in drifts {
            let _ = writeln!(o, "- **{}**", drift_sentence(s, d));
        }
        o.push('\n');
    }
    o.push_str("### Gated series\n\n| metric | newest | nights | last 30 nights | their range |\n|---|---:|---:|---|---:|\n");
    for s in t.headline_series() {
        let _ = writeln!(o, "{}", series_row(s));
    }
    let (others, other_drifts) = findings(t.other_series());
    if !others.is_empty() || !other_drifts.is_empty() {
        let _ = writeln!(
            o,
            "\n<details><summary>Other series that moved: {} change point(s), {} drift(s) (per step, per workflow, ungated metrics)</summary>\n",
            others.len(),
            other_drifts.len()
        );
        change_rows(&mut o, &others[..others.len().min(MAX_OTHER_ROWS)]);
        if others.len() > MAX_OTHER_ROWS {
            let _ = writeln!(
                o,
                "\n… and {} more in the JSON.",
                others.len() - MAX_OTHER_ROWS
            );
        }
        for (s, d) in other_drifts.iter().take(MAX_OTHER_ROWS) {
            let _ = writeln!(o, "- {}", drift_sentence(s, d));
        }
        o.push_str("\n</details>\n");
    }
    if !t.notes.is_empty() {
        o.push_str("\n### Notes\n\n");
        for n in t.notes.iter().take(40) {
            let _ = writeln!(o, "- {}", md_inline(n));
        }
        if t.notes.len() > 40 {
            let _ = writeln!(o, "- … and {} more (see the JSON)", t.notes.len() - 40);
        }
    }
    let _ = writeln!(
        o,
        "\n<details><summary>Method</summary>\n\n{}.\n\n</details>",
        md_cell(&t.method)
    );
    o
}

/// The plain-text report: the headline, the gated findings as sentences,
/// how much else moved, the notes.
pub fn text(t: &Trend) -> String {
    let mut o = format!("flora-gate history · {}\n{}.\n", t.setup, headline(t));
    let unmark = |s: String| plain(&s).replace('`', "");
    let (changes, drifts) = findings(t.headline_series());
    for (s, c) in changes {
        let word = if c.regression { "worse: " } else { "better:" };
        let _ = writeln!(o, "  {word} {}", unmark(change_sentence(s, c)));
    }
    for (s, d) in drifts {
        let _ = writeln!(o, "  drift:  {}", unmark(drift_sentence(s, d)));
    }
    let (others, other_drifts) = findings(t.other_series());
    if !others.is_empty() || !other_drifts.is_empty() {
        let _ = writeln!(
            o,
            "  {} change point(s) and {} drift(s) in other series (per step, ungated): `--format json` or the HTML report lists them",
            others.len(),
            other_drifts.len()
        );
    }
    for n in &t.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_and_keep_gaps() {
        assert_eq!(spark(&[Some(1.0), None, Some(2.0), Some(1.5)], 30), "▁ █▅");
        assert_eq!(spark(&[Some(3.0), Some(3.0)], 30), "▄▄");
        assert_eq!(spark(&[Some(1.0), Some(2.0), Some(3.0)], 2), "▁█");
    }

    #[test]
    fn foreign_names_and_commits_stay_inert() {
        use crate::gate::change::Change;
        use crate::gate::trend::{Found, Night, Trend};
        use crate::result::history::Setup;
        let night = |c: &str| Night {
            commit: Some(c.into()),
            date: "2026-12-01T03:00:00Z".into(),
            source: "nightly".into(),
            tool_version: "1".into(),
            runner: "r".into(),
        };
        let series = Series {
            scope: "dr|aft`<img src=x onerror=alert(1)>".into(),
            metric: "ttft_p90".into(),
            label: "TTFT p90".into(),
            unit: "ms".into(),
            higher_is_worse: true,
            gated: true,
            values: vec![Some(1.0), Some(2.0)],
            changes: vec![Found {
                change: Change {
                    index: 1,
                    earliest: 1,
                    latest: 1,
                    step: 1.0,
                    low: 0.5,
                    high: 1.5,
                    p_value: 0.001,
                    before: 1,
                    after: 1,
                },
                from_commit: Some("`|@everyone".into()),
                to_commit: Some("<script>x".into()),
                date: "2026-12-01T03:00:00Z".into(),
                regression: true,
            }],
            drift: None,
        };
        let t = Trend {
            kind: "flora-gate/trend".into(),
            schema_version: 1,
            setup: Setup {
                scenario: "[click](https://evil.test) <b>".into(),
                sha256: "ab".into(),
                concurrency: 1,
                vars: "{}".into(),
            },
            nights: vec![night("a"), night("b")],
            series: vec![series],
            notes: vec!["line 3 left out: a `<iframe>` record @team #12".into()],
            method: "m".into(),
        };
        // Outside code spans (which GitHub renders as text), nothing is live.
        let md: String = markdown(&t)
            .lines()
            .map(|l| l.split('`').step_by(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n");
        for raw in [
            "<img",
            "<script",
            "<b>",
            "<iframe",
            "](https",
            "@everyone",
            "@team",
        ] {
            assert!(!md.contains(raw), "`{raw}` is live in:\n{md}");
        }
        // Every table row keeps its cells: no foreign pipe splits one.
        let full = markdown(&t);
        for row in full.lines().filter(|l| l.starts_with("| 🔺")) {
            let cells = row.replace("\\|", "").matches('|').count();
            assert_eq!(cells, 7, "{row}");
        }
        assert!(
            full.contains("`dr\\|aft'<img src=x onerror=alert(1)>`"),
            "{full}"
        );
        let html = crate::render::html::trend::body(&t);
        for raw in ["<img", "<script", "<b>", "<iframe"] {
            assert!(!html.contains(raw), "`{raw}` is live in the HTML");
        }
    }

    #[test]
    fn steps_read_as_the_issue_says() {
        assert_eq!(step_text(0.061, 0.047, 0.075), "+6.1% (±1.4%)");
        assert_eq!(p_text(0.0004), "< 0.001");
    }
}
