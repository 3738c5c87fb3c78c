//! The server's metrics next to the load: a table of the series the
//! bottleneck analysis reads first, then the rest, over the run and per stage.

use serde::Serialize;

use super::short_number as short;
use crate::result::server::{Figures, ServerMetrics, ServerSeries};
use crate::result::RunResult;

/// Rows shown; the rest stay in the result.
const MAX_ROWS: usize = 16;

/// One series.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRow {
    series: String,
    run: String,
    stages: String,
}

/// The section.
#[derive(Debug, Clone, Serialize)]
pub struct ServerCtx {
    /// The resource panel, shown first.
    resources: Vec<super::resources::ResourceRow>,
    rows: Vec<ServerRow>,
    /// Per endpoint: scrapes and failures.
    endpoints: Vec<String>,
    /// Stage names, in the order of the per-stage figures.
    stage_names: String,
    /// Series not shown.
    more: usize,
}

/// A series' figures in a few characters: `mean 3.2 · max 8`, `12/s`, `p50 0.05 · p90 0.2`.
fn figures(kind: &str, f: &Figures) -> String {
    let show = |v: Option<f64>| v.map_or("–".into(), short);
    match kind {
        "counter" => f
            .rate_per_s
            .map_or("–".into(), |r| format!("{}/s", short(r))),
        "histogram" => format!("p50 {} · p90 {}", show(f.p50), show(f.p90)),
        _ => format!("mean {} · max {}", show(f.mean), show(f.max)),
    }
}

/// The headline figure alone, for the per-stage column.
fn headline(kind: &str, f: &Figures) -> String {
    let v = match kind {
        "counter" => f.rate_per_s,
        "histogram" => f.p50,
        _ => f.mean,
    };
    v.map_or("–".into(), short)
}

/// A series the analysis reads first: queues, caches, pools, CPU, memory.
pub fn is_key(s: &ServerSeries) -> bool {
    const KEYS: [&str; 8] = [
        "waiting", "queue", "running", "cache", "preempt", "pool", "cpu", "memory",
    ];
    let name = s
        .series
        .split('{')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    KEYS.iter().any(|k| name.contains(k))
}

/// Key series first, then the rest.
fn rank(s: &ServerSeries) -> u8 {
    u8::from(!is_key(s))
}

/// A series as shown: with an `endpoint` label when several endpoints
/// were scraped (two `process_cpu_seconds_total` are two processes).
fn shown(s: &ServerSeries, endpoints: &[String]) -> String {
    if endpoints.len() < 2 {
        return s.series.clone();
    }
    let at = endpoints
        .get(s.endpoint as usize)
        .map_or("?", String::as_str);
    match s.series.split_once('{') {
        Some((name, rest)) => format!("{name}{{endpoint=\"{at}\",{rest}"),
        None => format!("{}{{endpoint=\"{at}\"}}", s.series),
    }
}

fn section(m: &ServerMetrics, stage_names: &[String]) -> ServerCtx {
    let mut series: Vec<&ServerSeries> = m.series.iter().collect();
    series.sort_by_key(|s| rank(s));
    let endpoints = crate::result::resources::endpoint_names(m);
    let rows = series
        .iter()
        .take(MAX_ROWS)
        .map(|s| ServerRow {
            series: super::md_code(&shown(s, &endpoints)),
            run: figures(&s.kind, &s.overall),
            stages: s
                .stages
                .iter()
                .map(|f| headline(&s.kind, f))
                .collect::<Vec<_>>()
                .join(" / "),
        })
        .collect();
    ServerCtx {
        resources: m
            .resources
            .as_ref()
            .map(super::resources::rows)
            .unwrap_or_default(),
        rows,
        endpoints: m
            .endpoints
            .iter()
            .map(|e| {
                let mut t = format!(
                    "{}: {} scrapes, {} failed",
                    super::md_cell(&e.url),
                    e.scrapes,
                    e.failures
                );
                if let Some(err) = &e.last_error {
                    t += &format!(" (last: {})", super::md_cell(err));
                }
                if e.dropped_series > 0 {
                    t += &format!(
                        "; {} series left out (at most {} per endpoint, {} per family; the presets' kept first)",
                        e.dropped_series,
                        crate::engine::scrape::MAX_SERIES,
                        crate::engine::scrape::MAX_PER_FAMILY
                    );
                }
                if e.cut_labels > 0 {
                    t += &format!("; {} long or surplus labels cut", e.cut_labels);
                }
                t
            })
            .collect(),
        stage_names: stage_names
            .iter()
            .map(|n| super::md_cell(n))
            .collect::<Vec<_>>()
            .join(" / "),
        more: m.series.len().saturating_sub(MAX_ROWS),
    }
}

/// The section of a run with server metrics.
pub fn context(r: &RunResult) -> Option<ServerCtx> {
    let m = r.server_metrics.as_ref()?;
    let names: Vec<String> = r.stages.iter().map(|s| s.name.clone()).collect();
    Some(section(m, &names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_by_kind() {
        let f = Figures {
            mean: Some(3.25),
            max: Some(8.0),
            rate_per_s: Some(12_345.0),
            p50: Some(0.05),
            p90: Some(0.2),
        };
        assert_eq!(figures("gauge", &f), "mean 3.2 · max 8");
        assert_eq!(figures("counter", &f), "12.3k/s");
        assert_eq!(figures("histogram", &f), "p50 0.05 · p90 0.2");
        assert_eq!(headline("untyped", &Figures::default()), "–");
    }

    #[test]
    fn two_endpoints_series_are_told_apart() {
        let s = |endpoint: u32, key: &str| ServerSeries {
            series: key.into(),
            kind: "counter".into(),
            endpoint,
            overall: Figures::default(),
            windows: Vec::new(),
            stages: Vec::new(),
        };
        let two = ["10.0.0.1:8000".to_string(), "10.0.0.2:8000".to_string()];
        assert_eq!(
            shown(&s(1, "process_cpu_seconds_total"), &two),
            "process_cpu_seconds_total{endpoint=\"10.0.0.2:8000\"}"
        );
        assert_eq!(
            shown(&s(0, "x{a=\"1\"}"), &two),
            "x{endpoint=\"10.0.0.1:8000\",a=\"1\"}"
        );
        assert_eq!(shown(&s(0, "x"), &two[..1]), "x");
    }
}
