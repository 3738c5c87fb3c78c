//! The charts of a run, built from its result: latency, throughput, users
//! and errors over time with the stages shaded; TTFT against users; the
//! TTFT distribution against the baseline; per-step bars; the server's
//! metrics over time.

use std::collections::BTreeSet;

use super::svg::{Band, Bars, Chart, Marker, Rule, Series};
use crate::result::baseline::Baseline;
use crate::result::time::{StageResult, WindowResult};
use crate::result::RunResult;
use crate::scenario::ResponseKind;
use crate::stats::LatencyHist;

/// A chart ready for the page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    /// The `<svg>` element.
    pub svg: String,
    /// A line under it.
    pub caption: String,
}

const CLASSES: [&str; 6] = ["s1", "s2", "s3", "s4", "s5", "s6"];

/// What a baseline offers to draw against.
#[derive(Debug, Clone, Default)]
pub struct Against<'a> {
    /// A committed baseline (its runs' quantiles).
    pub baseline: Option<&'a Baseline>,
    /// A duet's reference run (its full histograms).
    pub reference: Option<&'a RunResult>,
}

fn mid_s(start_ms: f64, end_ms: f64) -> f64 {
    (start_ms + end_ms) / 2000.0
}

fn bands(r: &RunResult) -> Vec<Band> {
    let mut out: Vec<Band> = r
        .stages
        .iter()
        .map(|s| Band {
            from: s.start_ms / 1000.0,
            to: s.end_ms / 1000.0,
            label: stage_label(r, s),
        })
        .collect();
    if out.is_empty() && r.window.start_ms > 0.0 {
        out.push(Band {
            from: 0.0,
            to: r.window.start_ms / 1000.0,
            label: "warm-up".into(),
        });
    }
    out
}

fn stage_label(r: &RunResult, s: &StageResult) -> String {
    let unit = if r.load.as_ref().is_some_and(|l| l.model == "open") {
        "/s"
    } else {
        " users"
    };
    let plan = r.load.as_ref().and_then(|l| l.stages.get(s.index as usize));
    match plan {
        Some(p) if (p.from - p.to).abs() < 1e-9 => format!("{} · {}{unit}", s.name, p.to),
        Some(p) => format!("{} · {}→{}{unit}", s.name, p.from, p.to),
        None => s.name.clone(),
    }
}

fn series(name: &str, class: &'static str, points: Vec<(f64, Option<f64>)>) -> Series {
    Series {
        name: name.into(),
        points,
        class,
        ..Series::default()
    }
}

/// Latency, throughput, users and errors over the run's windows.
// Long by design: the timeline's charts in page order (latency, throughput,
// users, errors), each built from the same windows.
pub fn timeline(r: &RunResult) -> Vec<Figure> {
    // Windows wholly inside the measured part: one cut by the warm-up or
    // the end would draw a rate that never happened.
    let (from, to) = (r.window.start_ms - 1.0, r.window.end_ms + 1.0);
    let w: Vec<_> = r
        .windows
        .iter()
        .filter(|w| !w.warmup && w.start_ms >= from && w.end_ms <= to)
        .collect();
    if w.len() < 2 {
        return Vec::new();
    }
    let at = |f: &dyn Fn(&WindowResult) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
        w.iter()
            .map(|x| (mid_s(x.start_ms, x.end_ms), f(x)))
            .collect()
    };
    let bands = bands(r);
    let mut out = Vec::new();
    let mut rules = Vec::new();
    if let Some(t) = r.slo.ttft_ms {
        rules.push(Rule {
            y: t,
            label: format!("TTFT objective {} ms", super::super::ms_number(t)),
        });
    }
    if let Some(t) = r.slo.tpot_ms {
        rules.push(Rule {
            y: t,
            label: format!("TPOT objective {} ms", super::super::ms_number(t)),
        });
    }
    let latency = Chart {
        title: "Latency over time".into(),
        x_label: "seconds from the start".into(),
        y_label: "ms".into(),
        series: vec![
            series("TTFT p50", "s1", at(&|x| x.ttft_p50_ms)),
            series("TTFT p90", "s2", at(&|x| x.ttft_p90_ms)),
            series("TPOT p50", "s3", at(&|x| x.tpot_p50_ms)),
        ],
        bands: bands.clone(),
        rules,
        ..Chart::default()
    };
    out.push(Figure {
        svg: latency.svg(),
        caption: format!(
            "Per window of {}; stages shaded; objectives as red lines. Points in a long run are thinned to each bucket's lowest and highest, so spikes stay.",
            window_len(r)
        ),
    });
    let tokens = Chart {
        title: "Throughput over time".into(),
        x_label: "seconds from the start".into(),
        y_label: "output tokens per second".into(),
        series: vec![series(
            "output tok/s",
            "s1",
            at(&|x| Some(x.output_tokens_per_s)),
        )],
        bands: bands.clone(),
        ..Chart::default()
    };
    let requests = Chart {
        title: "Requests over time".into(),
        x_label: "seconds from the start".into(),
        y_label: "requests started per second".into(),
        series: vec![series("requests/s", "s2", at(&|x| Some(x.requests_per_s)))],
        bands: bands.clone(),
        ..Chart::default()
    };
    let open = r.load.as_ref().is_some_and(|l| l.model == "open");
    let users = Chart {
        title: if open {
            "Arrivals: intended and achieved".into()
        } else {
            "Users: intended and in flight".into()
        },
        x_label: "seconds from the start".into(),
        y_label: if open { "starts per second" } else { "users" }.into(),
        series: vec![
            Series {
                dashed: true,
                ..series("intended", "s4", at(&|x| Some(x.load.intended)))
            },
            series(
                if open { "achieved" } else { "users active" },
                "s1",
                at(&|x| {
                    Some(if open {
                        x.load.arrivals_started as f64
                            / ((x.end_ms - x.start_ms) / 1000.0).max(1e-9)
                    } else {
                        x.load.users
                    })
                }),
            ),
            series("requests in flight", "s3", at(&|x| Some(x.load.in_flight))),
        ],
        bands: bands.clone(),
        ..Chart::default()
    };
    out.push(Figure {
        svg: requests.svg(),
        caption: "Requests started per window, per second.".into(),
    });
    out.push(Figure {
        svg: tokens.svg(),
        caption: "Output tokens of the requests started in each window, per second.".into(),
    });
    out.push(Figure {
        svg: users.svg(),
        caption: "Intended load dashed; what the generator achieved solid.".into(),
    });
    let classes: BTreeSet<&String> = w.iter().flat_map(|x| x.errors.keys()).collect();
    if !classes.is_empty() {
        let errors = Chart {
            title: "Errors over time".into(),
            x_label: "seconds from the start".into(),
            y_label: "failed requests per window".into(),
            series: classes
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    series(
                        c,
                        CLASSES[i % CLASSES.len()],
                        at(&|x| Some(x.errors.get(*c).copied().unwrap_or(0) as f64)),
                    )
                })
                .collect(),
            bands,
            ..Chart::default()
        };
        out.push(Figure {
            svg: errors.svg(),
            caption: "Failed requests per window, by class.".into(),
        });
    }
    out
}

fn window_len(r: &RunResult) -> String {
    r.windows.first().map_or("the run".into(), |w| {
        format!("{:.0} s", (w.end_ms - w.start_ms) / 1000.0)
    })
}

/// Streamed steps' TTFT, histograms merged exactly.
fn pooled_ttft(steps: &[crate::result::StepResult]) -> LatencyHist {
    crate::result::values::pooled(steps, crate::policy::metrics::Base::Ttft)
}

/// TTFT against users over the held stages, with the objective and the
/// first level past it.
pub fn ttft_by_load(r: &RunResult) -> Option<Figure> {
    let mut levels: Vec<(f64, Option<f64>, Option<f64>)> = r
        .stages
        .iter()
        .filter_map(|s| {
            let load = r.held_level(s)?;
            let h = pooled_ttft(&s.steps);
            Some((load, h.quantile_ms(0.5), h.quantile_ms(0.9)))
        })
        .collect();
    levels.sort_by(|a, b| a.0.total_cmp(&b.0));
    if levels.len() < 2 {
        return None;
    }
    let slo = r.slo.ttft_ms;
    let knee = slo.and_then(|t| levels.iter().find(|l| l.2.is_some_and(|v| v > t)));
    let unit = if r.load.as_ref().is_some_and(|l| l.model == "open") {
        "starts per second"
    } else {
        "users"
    };
    let chart = Chart {
        title: format!("TTFT against {unit}"),
        x_label: unit.into(),
        y_label: "ms".into(),
        series: vec![
            Series {
                dots: true,
                ..series(
                    "TTFT p50",
                    "s1",
                    levels.iter().map(|l| (l.0, l.1)).collect(),
                )
            },
            Series {
                dots: true,
                ..series(
                    "TTFT p90",
                    "s2",
                    levels.iter().map(|l| (l.0, l.2)).collect(),
                )
            },
        ],
        rules: slo
            .map(|t| Rule {
                y: t,
                label: format!("objective {} ms", super::super::ms_number(t)),
            })
            .into_iter()
            .collect(),
        markers: knee
            .map(|k| Marker {
                x: k.0,
                label: format!("p90 past the objective at {}", k.0),
            })
            .into_iter()
            .collect(),
        ..Chart::default()
    };
    Some(Figure {
        svg: chart.svg(),
        caption: "One point per held stage. The marker is the first level whose TTFT p90 is past the objective."
            .into(),
    })
}

/// The TTFT distribution as a CDF, against the baseline's (its runs'
/// quantiles) or a duet reference's (its whole histogram).
pub fn ttft_cdf(r: &RunResult, against: &Against) -> Option<Figure> {
    let h = pooled_ttft(&r.steps);
    if h.count() == 0 {
        return None;
    }
    let qs: Vec<f64> = (1..200)
        .map(|i| f64::from(i) / 200.0)
        .chain([0.995, 0.999])
        .collect();
    let curve = |h: &LatencyHist| -> Vec<(f64, Option<f64>)> {
        let mut pts: Vec<(f64, Option<f64>)> = qs
            .iter()
            .filter_map(|q| {
                h.quantile_ms(*q)
                    .filter(|v| v.is_finite())
                    .map(|v| (v, Some(q * 100.0)))
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts.dedup_by(|a, b| a.0 == b.0);
        pts
    };
    let mut lines = vec![series("this run", "s1", curve(&h))];
    let mut caption = "Share of streamed requests with a TTFT at most x.".to_string();
    if let Some(reference) = against.reference {
        let rh = pooled_ttft(&reference.steps);
        if rh.count() > 0 {
            lines.push(Series {
                dashed: true,
                ..series("reference", "s4", curve(&rh))
            });
            caption += " Dashed: the duet's reference deployment.";
        }
    } else if let Some(b) = against.baseline {
        let mut pts = Vec::new();
        for (metric, q) in [("ttft_p50", 50.0), ("ttft_p90", 90.0), ("ttft_p99", 99.0)] {
            let mut v = b.values("all", metric);
            v.retain(|x| x.is_finite());
            if v.is_empty() {
                continue;
            }
            v.sort_by(f64::total_cmp);
            pts.push((v[v.len() / 2], Some(q)));
        }
        if !pts.is_empty() {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            lines.push(Series {
                dashed: true,
                dots: true,
                ..series("baseline (median of its runs)", "s4", pts)
            });
            caption += " Dashed dots: the baseline's p50, p90 and p99 (median over its runs).";
        }
    }
    let chart = Chart {
        title: "TTFT distribution".into(),
        x_label: "TTFT, ms".into(),
        y_label: "% of requests".into(),
        series: lines,
        ..Chart::default()
    };
    Some(Figure {
        svg: chart.svg(),
        caption,
    })
}

/// TTFT p50 per streamed step, this run against the baseline.
pub fn step_bars(r: &RunResult, against: &Against) -> Option<Figure> {
    let steps: Vec<_> = r
        .steps
        .iter()
        .filter(|s| s.response == ResponseKind::Sse)
        .collect();
    if steps.is_empty() {
        return None;
    }
    let mut series = vec![(
        "this run".to_string(),
        "s1",
        steps.iter().map(|s| s.ttft_ms.p50).collect::<Vec<_>>(),
    )];
    let base: Vec<Option<f64>> = steps
        .iter()
        .map(|s| {
            if let Some(reference) = against.reference {
                return reference
                    .steps
                    .iter()
                    .find(|x| x.name == s.name)
                    .and_then(|x| x.ttft_ms.p50);
            }
            let mut v = against.baseline?.values(&s.name, "ttft_p50");
            v.retain(|x| x.is_finite());
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        })
        .collect();
    if base.iter().any(Option::is_some) {
        let name = if against.reference.is_some() {
            "reference"
        } else {
            "baseline"
        };
        series.push((name.to_string(), "s4", base));
    }
    let bars = Bars {
        title: "TTFT p50 by step".into(),
        y_label: "ms".into(),
        categories: steps.iter().map(|s| s.name.clone()).collect(),
        series,
    };
    Some(Figure {
        svg: bars.svg(),
        caption: "Hover a bar for its value.".into(),
    })
}

/// The resource panel over the run's windows (host CPU and memory, network,
/// processes, GPUs, the pool), then the server's key series, one small
/// chart each.
pub fn server_panels(r: &RunResult) -> Vec<Figure> {
    let Some(m) = &r.server_metrics else {
        return Vec::new();
    };
    let bands = bands(r);
    let mut out = m
        .resources
        .as_ref()
        .map(|res| resource_panels(r, res))
        .unwrap_or_default();
    out.extend(key_series(r, m, &bands));
    out
}

/// One chart per resource line, per window.
fn resource_panels(r: &RunResult, res: &crate::result::usage::Resources) -> Vec<Figure> {
    let bands = bands(r);
    let over = |pick: &Pick| -> Vec<(f64, Option<f64>)> {
        res.windows
            .iter()
            .zip(&r.windows)
            .filter(|(_, w)| w.end_ms <= r.window.end_ms + 1.0)
            .map(|(u, w)| (mid_s(w.start_ms, w.end_ms), pick(u)))
            .collect()
    };
    resource_charts(&res.overall)
        .into_iter()
        .filter_map(|(title, unit, lines)| {
            let series: Vec<Series> = lines
                .iter()
                .zip(CLASSES)
                .map(|((name, pick), class)| series(name, class, over(pick)))
                .collect();
            let chart = Chart {
                title: title.clone(),
                x_label: "seconds from the start".into(),
                y_label: unit.into(),
                series,
                bands: bands.clone(),
                ..Chart::default()
            };
            chart.has_data().then(|| Figure {
                svg: chart.svg(),
                caption: format!("{title}, per window ({unit})."),
            })
        })
        .collect()
}

/// A resource read from one window's usage.
type Pick = Box<dyn Fn(&crate::result::usage::Usage) -> Option<f64>>;
/// A chart's lines: a name and what it reads.
type Lines = Vec<(&'static str, Pick)>;

/// The resource charts `u` has: title, unit and lines.
fn resource_charts(u: &crate::result::usage::Usage) -> Vec<(String, &'static str, Lines)> {
    use crate::result::usage::Usage;
    let mut charts: Vec<(String, &str, Lines)> = Vec::new();
    for (i, h) in u.hosts.iter().enumerate() {
        charts.push((
            format!("{} CPU busy", h.endpoint),
            "%",
            vec![
                (
                    "all cores",
                    Box::new(move |u: &Usage| u.hosts.get(i)?.cpu_busy_pct),
                ),
                (
                    "busiest core",
                    Box::new(move |u: &Usage| u.hosts.get(i)?.busiest_core_pct),
                ),
            ],
        ));
        charts.push((
            format!("{} memory used", h.endpoint),
            "%",
            vec![(
                "memory",
                Box::new(move |u: &Usage| u.hosts.get(i)?.memory_used_pct),
            )],
        ));
        for (k, n) in h.network.iter().enumerate() {
            charts.push((
                format!("{} {}", h.endpoint, n.device),
                "bytes/s",
                vec![
                    (
                        "receive",
                        Box::new(move |u: &Usage| {
                            Some(u.hosts.get(i)?.network.get(k)?.rx_bytes_per_s)
                        }),
                    ),
                    (
                        "send",
                        Box::new(move |u: &Usage| {
                            Some(u.hosts.get(i)?.network.get(k)?.tx_bytes_per_s)
                        }),
                    ),
                ],
            ));
        }
    }
    for (i, p) in u.processes.iter().enumerate() {
        charts.push((
            format!("{} process CPU", p.endpoint),
            "% of a core",
            vec![(
                "CPU",
                Box::new(move |u: &Usage| u.processes.get(i)?.cpu_pct),
            )],
        ));
    }
    for (i, g) in u.gpus.iter().enumerate() {
        charts.push((
            g.gpu.clone(),
            "%",
            vec![
                (
                    "utilisation",
                    Box::new(move |u: &Usage| u.gpus.get(i)?.util_pct),
                ),
                (
                    "memory",
                    Box::new(move |u: &Usage| u.gpus.get(i)?.memory_used_pct),
                ),
            ],
        ));
    }
    if u.pool.is_some() {
        charts.push((
            "DB pool".into(),
            "connections",
            vec![
                ("in use", Box::new(|u: &Usage| u.pool.as_ref()?.in_use)),
                ("waiting", Box::new(|u: &Usage| u.pool.as_ref()?.waiting)),
            ],
        ));
    }
    charts
}

/// The server's key series over the run's windows.
fn key_series(
    r: &RunResult,
    m: &crate::result::server::ServerMetrics,
    bands: &[super::svg::Band],
) -> Vec<Figure> {
    m.series
        .iter()
        .filter(|s| crate::render::server::is_key(s))
        .take(8)
        .filter_map(|s| {
            let pick = |f: &crate::result::server::Figures| match s.kind.as_str() {
                "counter" => f.rate_per_s,
                "histogram" => f.p50,
                _ => f.mean,
            };
            let points: Vec<(f64, Option<f64>)> = s
                .windows
                .iter()
                .zip(&r.windows)
                .filter(|(_, w)| w.end_ms <= r.window.end_ms + 1.0)
                .map(|(f, w)| (mid_s(w.start_ms, w.end_ms), pick(f)))
                .collect();
            let chart = Chart {
                title: s.series.clone(),
                x_label: "seconds from the start".into(),
                y_label: match s.kind.as_str() {
                    "counter" => "per second",
                    "histogram" => "p50",
                    _ => "mean",
                }
                .into(),
                series: vec![series(&s.series, "s5", points)],
                bands: bands.to_vec(),
                ..Chart::default()
            };
            chart.has_data().then(|| Figure {
                svg: chart.svg(),
                caption: format!("The server's `{}`, per window ({}).", s.series, s.kind),
            })
        })
        .collect()
}
