//! A capacity search as HTML: the headline, the probes, TTFT, TPOT and
//! throughput against the level with the objective and C*, and the
//! bottleneck analysis.

use std::fmt::Write as _;

use super::esc;
use super::svg::{Bars, Chart, Marker, Rule, Series};
use crate::gate::capacity::CapacityVerdict;
use crate::result::capacity::CapacityResult;

use crate::stats::format::ms;

fn charts(r: &CapacityResult, o: &mut String) {
    let mut probed: Vec<_> = r.probes.iter().collect();
    probed.sort_by(|a, b| a.level.total_cmp(&b.level));
    probed.dedup_by(|a, b| a.level == b.level);
    if probed.len() < 2 {
        return;
    }
    let by = r.search.by;
    let limit = |prefix: &str| {
        r.objectives
            .iter()
            .find(|o| o.metric.starts_with(prefix))
            .map(|o| Rule {
                y: o.limit,
                label: format!("objective: {}", o.label()),
            })
    };
    let c_star = r.capacity.c_star.map(|c| Marker {
        x: c,
        label: format!("C* {}", by.show(c)),
    });
    let line = |name: &str,
                class: &'static str,
                f: &dyn Fn(&crate::result::capacity::Probe) -> Option<f64>| Series {
        name: name.into(),
        class,
        dots: true,
        points: probed
            .iter()
            .map(|p| (p.level, f(p).filter(|v| v.is_finite())))
            .collect(),
        ..Series::default()
    };
    let ttft = Chart {
        title: format!("TTFT against {}", by.heading()),
        x_label: by.heading().into(),
        y_label: "ms".into(),
        series: vec![
            line("TTFT p50", "s1", &|p| p.ttft_p50_ms),
            line("TTFT p90", "s2", &|p| p.ttft_p90_ms),
        ],
        rules: limit("ttft_").into_iter().collect(),
        markers: c_star.clone().into_iter().collect(),
        ..Chart::default()
    };
    let tpot = Chart {
        title: format!("TPOT p50 against {}", by.heading()),
        x_label: by.heading().into(),
        y_label: "ms".into(),
        series: vec![line("TPOT p50", "s3", &|p| p.tpot_p50_ms)],
        rules: limit("tpot_").into_iter().collect(),
        markers: c_star.into_iter().collect(),
        ..Chart::default()
    };
    let tokens = Bars {
        title: format!("Output tokens per second against {}", by.heading()),
        y_label: "tok/s".into(),
        categories: probed.iter().map(|p| by.show(p.level)).collect(),
        series: vec![(
            "output tok/s".into(),
            "s1",
            probed.iter().map(|p| Some(p.output_tokens_per_s)).collect(),
        )],
    };
    let _ = write!(
        o,
        "<section id=\"curves\"><h2>Curves</h2><div class=\"grid\"><figure>{}<figcaption>One point per level probed; a level whose quantile is infinite (failures beyond it) is left out. The dotted line is C*, the largest level that held every objective.</figcaption></figure><figure>{}<figcaption>Time per output token at each level.</figcaption></figure><figure>{}<figcaption>Throughput at each level.</figcaption></figure></div></section>",
        ttft.svg(),
        tpot.svg(),
        tokens.svg()
    );
}

/// The capacity's sections, as HTML.
pub fn body(r: &CapacityResult, verdict: Option<&CapacityVerdict>) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let by = r.search.by;
    match verdict {
        Some(v) => {
            let word = v.verdict.to_string().to_uppercase();
            let _ = write!(
                o,
                "<header><h1><span class=\"verdict {}\">{}</span>flora-gate capacity · {}</h1><p class=\"headline\">{}</p><p class=\"muted\">This run: {}.</p>",
                esc(&word),
                esc(&word),
                esc(&r.scenario.name),
                esc(&v.headline),
                esc(&super::super::capacity::headline(r))
            );
        }
        None => {
            let _ = write!(
                o,
                "<header><h1><span class=\"verdict none\">CAPACITY</span>flora-gate capacity · {}</h1><p class=\"headline\">{}</p>",
                esc(&r.scenario.name),
                esc(&super::super::capacity::headline(r))
            );
        }
    }
    let _ = write!(
        o,
        "<p class=\"muted\">capacity · <code>{}</code> · by {} · {} probes · {:.0} s · {} requests</p></header>",
        esc(&r.target),
        by.heading(),
        r.probes.len(),
        r.elapsed_s,
        r.requests
    );
    if let Some(why) = &r.stopped {
        let _ = write!(
            o,
            "<p class=\"finding\"><strong>Note:</strong> the search stopped early: {}</p>",
            esc(why)
        );
    }
    let _ = write!(
        o,
        "<section id=\"probes\"><h2>Probes</h2><div class=\"table-wrap\"><table><tr><th>{}</th><th>measured</th><th>extended</th><th>decision</th><th>TTFT p50</th><th>TTFT p90</th><th>TPOT p50</th><th>tok/s</th><th>goodput/s</th><th>note</th></tr>",
        by.heading()
    );
    for p in &r.probes {
        let _ = write!(
            o,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{:.1} s</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0}</td><td class=\"num\">{:.1}</td><td>{}</td></tr>",
            esc(&by.show(p.level)),
            p.measured_s,
            p.extensions,
            super::super::capacity::decision_word(p.decision),
            ms(p.ttft_p50_ms),
            ms(p.ttft_p90_ms),
            ms(p.tpot_p50_ms),
            p.output_tokens_per_s,
            p.goodput_per_s,
            esc(p.note.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table></div></section>");
    charts(r, &mut o);
    let findings = crate::gate::diagnosis::of_capacity(r);
    o.push_str("<section id=\"bottleneck\"><h2>Bottleneck analysis</h2>");
    if findings.is_empty() {
        o.push_str("<div class=\"finding none\">No bottleneck: latency and throughput held across the levels probed.</div>");
    }
    for f in findings {
        let _ = write!(
            o,
            "<div class=\"finding\"><strong>{}.</strong> {}.<dl><dt>rule</dt><dd>{}</dd><dt>refuted by</dt><dd>{}</dd><dt>next hypothesis</dt><dd>{}</dd></dl></div>",
            super::from_markdown(&f.title),
            super::from_markdown(&super::super::md_cell(&f.evidence)),
            super::from_markdown(&f.rule),
            super::from_markdown(&f.refuted_by),
            super::from_markdown(&f.next)
        );
    }
    o.push_str("</section>");
    o
}
