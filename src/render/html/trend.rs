//! The history as HTML: the findings, one chart per gated series (each
//! night a dot, each level between change points a dashed line, each change
//! point a marker naming its commit range), the nights and the notes.

use std::fmt::Write as _;

use super::svg::{Band, Chart, Marker, Series as Line};
use super::{esc, from_markdown};
use crate::gate::trend::{day, short, Series, Trend};
use crate::render::history::{change_sentence, drift_sentence, headline, step_text};

/// Most charts drawn (gated series first); the rest are in the JSON.
const MAX_CHARTS: usize = 24;

fn chart(t: &Trend, s: &Series) -> String {
    let scope = match s.scope.as_str() {
        crate::policy::metrics::ALL => "all steps".to_string(),
        step => step.to_string(),
    };
    let points: Vec<(f64, Option<f64>)> = s
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1) as f64, *v))
        .collect();
    let mut series = vec![Line {
        name: "night".into(),
        points,
        class: "s1",
        dots: true,
        ..Line::default()
    }];
    // The level of each segment between change points.
    let mut edges = vec![0];
    edges.extend(s.changes.iter().map(|c| c.change.index));
    edges.push(s.values.len());
    for (k, w) in edges.windows(2).enumerate() {
        let seg: Vec<f64> = s.values[w[0]..w[1]]
            .iter()
            .flatten()
            .map(|v| v.ln())
            .collect();
        if seg.is_empty() {
            continue;
        }
        let level = (seg.iter().sum::<f64>() / seg.len() as f64).exp();
        series.push(Line {
            name: if k == 0 {
                "level".into()
            } else {
                String::new()
            },
            points: vec![(w[0] as f64 + 1.0, Some(level)), (w[1] as f64, Some(level))],
            class: "s2",
            dashed: true,
            ..Line::default()
        });
    }
    let markers = s
        .changes
        .iter()
        .map(|c| Marker {
            x: c.change.index as f64 + 0.5,
            label: format!(
                "{:+.1}% {}…{}",
                c.change.step * 100.0,
                c.from_commit.as_deref().map_or("?", short),
                c.to_commit.as_deref().map_or("?", short)
            ),
        })
        .collect();
    let bands = s
        .drift
        .as_ref()
        .filter(|d| d.beyond_steps())
        .map(|d| Band {
            from: 0.5,
            to: d.reference_nights as f64 + 0.5,
            label: "reference".into(),
        })
        .into_iter()
        .collect();
    let first = t.nights.first().map_or("", |n| day(&n.date));
    Chart {
        title: format!("{} · {scope}", s.label),
        x_label: format!("night (1 = {first})"),
        y_label: s.unit.clone(),
        series,
        bands,
        markers,
        ..Chart::default()
    }
    .svg()
}

/// The trend page's body.
pub fn body(t: &Trend) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let findings = t.findings();
    let (class, word) = if findings == 0 {
        ("PASS", "STEADY")
    } else {
        ("WARN", "MOVED")
    };
    let _ = write!(
        o,
        "<header><h1><span class=\"verdict {class}\">{word}</span>flora-gate history · {}</h1><p class=\"headline\">{}</p><p class=\"muted\">history · {} nights · {} series</p></header>",
        from_markdown(&crate::render::history::setup_md(&t.setup)),
        esc(&headline(t)),
        t.nights.len(),
        t.series.len()
    );
    o.push_str("<section id=\"findings\"><h2>Change points and drift</h2>");
    let headline: Vec<&Series> = t.headline_series().collect();
    let others: Vec<&Series> = t
        .other_series()
        .filter(|s| !s.changes.is_empty() || s.drift.as_ref().is_some_and(|d| d.beyond_steps()))
        .collect();
    if !findings_of(&headline, &mut o) {
        o.push_str("<div class=\"finding none\">No change point and no drift in the gated metrics over all steps.</div>");
    }
    if !others.is_empty() {
        let _ = write!(
            o,
            "<details><summary>{} other series moved (per step, per workflow, ungated metrics)</summary>",
            others.len()
        );
        findings_of(&others, &mut o);
        o.push_str("</details>");
    }
    o.push_str("</section><section id=\"series\"><h2>Series</h2><div class=\"grid\">");
    for s in headline.iter().chain(others.iter()).take(MAX_CHARTS) {
        let caption = match s.changes.last() {
            Some(c) => format!(
                "Newest change: {} from {}.",
                step_text(c.change.step, c.change.low, c.change.high),
                day(&c.date)
            ),
            None => "No change point.".into(),
        };
        let _ = write!(
            o,
            "<figure>{}<figcaption>{}</figcaption></figure>",
            chart(t, s),
            esc(&caption)
        );
    }
    o.push_str("</div></section>");
    nights(t, &mut o);
    if !t.notes.is_empty() {
        o.push_str("<section id=\"notes\"><h2>Notes</h2><ul>");
        for n in &t.notes {
            let _ = write!(
                o,
                "<li>{}</li>",
                from_markdown(&crate::render::md_inline(n))
            );
        }
        o.push_str("</ul></section>");
    }
    let _ = write!(
        o,
        "<section id=\"method\"><h2>Method</h2><p>{}.</p></section>",
        esc(&t.method)
    );
    o
}

/// The findings of some series as sentences; whether there were any.
fn findings_of(series: &[&Series], o: &mut String) -> bool {
    let mut any = false;
    for s in series {
        for c in &s.changes {
            any = true;
            let _ = write!(
                o,
                "<div class=\"finding{}\">{}</div>",
                if c.regression { "" } else { " none" },
                from_markdown(&change_sentence(s, c))
            );
        }
        if let Some(d) = s.drift.as_ref().filter(|d| d.beyond_steps()) {
            any = true;
            let _ = write!(
                o,
                "<div class=\"finding\">{}</div>",
                from_markdown(&drift_sentence(s, d))
            );
        }
    }
    any
}

fn nights(t: &Trend, o: &mut String) {
    o.push_str("<section id=\"nights\"><h2>Nights</h2><div class=\"table-wrap\"><table><tr><th>#</th><th>date</th><th>commit</th><th>source</th><th>flora-gate</th><th>runner</th></tr>");
    for (i, n) in t.nights.iter().enumerate().rev() {
        let _ = write!(
            o,
            "<tr><td class=\"num\">{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            esc(day(&n.date)),
            esc(n.commit.as_deref().map_or("—", short)),
            esc(&n.source),
            esc(&n.tool_version),
            esc(&n.runner)
        );
    }
    o.push_str("</table></div></section>");
}
