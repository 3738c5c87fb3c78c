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
    match s.scope.as_str() {
        crate::policy::metrics::ALL => s.label.clone(),
        crate::policy::metrics::WORKFLOW => format!("{} of the workflow", s.label),
        step => format!("{} of step `{}`", s.label, md_code(step)),
    }
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
            md_inline(&name(s)),
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
        md_inline(&name(s)),
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
        md_inline(&t.setup.to_string()),
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
            let _ = writeln!(o, "- **{}**", md_inline(&drift_sentence(s, d)));
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
            let _ = writeln!(o, "- {}", md_inline(&drift_sentence(s, d)));
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
    fn steps_read_as_the_issue_says() {
        assert_eq!(step_text(0.061, 0.047, 0.075), "+6.1% (±1.4%)");
        assert_eq!(p_text(0.0004), "< 0.001");
    }
}
