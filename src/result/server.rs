//! Server-side metrics in the result: per series, the figures of the whole
//! measured run and of each window — gauges as mean and max, counters as
//! rates (a reset counts from zero), histograms as quantiles from their
//! bucket counters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::scrape::{Scraped, Series};
use crate::stats::prom::Kind;

/// One scraped endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Its URL.
    pub url: String,
    /// Scrapes tried.
    pub scrapes: u64,
    /// Scrapes that failed or timed out (never a failure of the run).
    pub failures: u64,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Series left out for the caps on series per endpoint and per family
    /// (the most in one scrape).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_series: u64,
    /// Label values cut short or labels left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cut_labels: u64,
    /// A merged result: the shards that scraped it (the series are the
    /// first one's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<u32>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Figures of a series over a stretch of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Gauge: mean of the samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Gauge: highest sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Counter: increase per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    /// Histogram: median of the observations in the stretch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    /// Histogram: 90th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
}

/// One series (a histogram is one series of its buckets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSeries {
    /// `name{labels}` (a histogram without its `le`).
    pub series: String,
    /// gauge, counter, histogram or untyped (read as a gauge).
    pub kind: String,
    /// Which endpoint it came from (its index in `endpoints`).
    #[serde(default)]
    pub endpoint: u32,
    /// Over the measured window.
    pub overall: Figures,
    /// Per window of the run, by window index.
    pub windows: Vec<Figures>,
    /// Per stage of the result (as its `stages` list), over the measured part of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Figures>,
}

/// Everything scraped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetrics {
    /// The endpoints and how their scrapes went.
    pub endpoints: Vec<Endpoint>,
    /// The series kept.
    pub series: Vec<ServerSeries>,
    /// Resources as people read them, derived from the series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<super::usage::Resources>,
}

fn points_in(s: &Series, from: f64, to: f64) -> Vec<(f64, f64)> {
    s.points
        .iter()
        .copied()
        .filter(|(t, _)| *t >= from && *t < to)
        .collect()
}

/// A counter's points for a stretch: the last one before it too, so a
/// stretch as short as the scrape interval still has an increase (the one
/// between the scrapes around its start and its end).
fn counter_points(s: &Series, from: f64, to: f64) -> Vec<(f64, f64)> {
    let before = s.points.iter().rev().find(|(t, _)| *t < from).copied();
    before.into_iter().chain(points_in(s, from, to)).collect()
}

fn gauge(points: &[(f64, f64)]) -> Figures {
    let vals: Vec<f64> = points
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .collect();
    if vals.is_empty() {
        return Figures::default();
    }
    Figures {
        mean: Some(vals.iter().sum::<f64>() / vals.len() as f64),
        max: vals.iter().copied().reduce(f64::max),
        ..Figures::default()
    }
}

/// The increase of a counter over its points, a drop being a reset to zero.
fn increase(points: &[(f64, f64)]) -> Option<f64> {
    let mut total = 0.0;
    for w in points.windows(2) {
        let (a, b) = (w[0].1, w[1].1);
        if !(a.is_finite() && b.is_finite()) {
            continue;
        }
        total += if b >= a { b - a } else { b };
    }
    (points.len() >= 2).then_some(total)
}

fn counter(points: &[(f64, f64)]) -> Figures {
    let span = match (points.first(), points.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => b.0 - a.0,
        _ => return Figures::default(),
    };
    Figures {
        rate_per_s: increase(points).map(|n| n / span),
        ..Figures::default()
    }
}

/// Quantile `q` of the observations a histogram's buckets gained, by linear
/// interpolation inside the bucket (Prometheus' `histogram_quantile`).
fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let width = count - prev.1;
            let frac = if width > 0.0 {
                (rank - prev.1) / width
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, count);
    }
    None
}

fn histogram(buckets: &[(f64, &Series)], from: f64, to: f64) -> Figures {
    let mut gained: Vec<(f64, f64)> = buckets
        .iter()
        .filter_map(|(le, s)| increase(&points_in(s, from, to)).map(|n| (*le, n)))
        .collect();
    gained.sort_by(|a, b| a.0.total_cmp(&b.0));
    Figures {
        p50: bucket_quantile(&gained, 0.5),
        p90: bucket_quantile(&gained, 0.9),
        ..Figures::default()
    }
}

/// The result's figures of what was scraped between `from` and `to`
/// seconds (the measured window), in windows of `window` seconds, and over
/// each stage's span (seconds from the start).
pub fn summarise(
    scraped: &[Scraped],
    from: f64,
    to: f64,
    window: f64,
    stages: &[(f64, f64)],
) -> Option<ServerMetrics> {
    if scraped.is_empty() {
        return None;
    }
    let windows = if window > 0.0 {
        (to / window).ceil().max(0.0) as usize
    } else {
        0
    };
    let mut series = Vec::new();
    for (endpoint, s) in scraped.iter().enumerate() {
        let endpoint = u32::try_from(endpoint).unwrap_or(u32::MAX);
        // Histogram buckets, grouped by their series without `le`.
        let mut hists: BTreeMap<String, Vec<(f64, &Series)>> = BTreeMap::new();
        for (key, ser) in &s.series {
            let kind = ser.kind.unwrap_or(Kind::Untyped);
            if kind == Kind::Histogram {
                if let Some((base, le)) = split_le(key) {
                    hists.entry(base).or_default().push((le, ser));
                }
                continue;
            }
            let figures = |a: f64, b: f64| match kind {
                Kind::Counter => counter(&counter_points(ser, a, b)),
                _ => gauge(&points_in(ser, a, b)),
            };
            series.push(ServerSeries {
                series: key.clone(),
                endpoint,
                kind: match kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                    _ => "untyped",
                }
                .into(),
                overall: figures(from, to),
                windows: (0..windows)
                    .map(|i| figures(i as f64 * window, (i + 1) as f64 * window))
                    .collect(),
                stages: stages.iter().map(|&(a, b)| figures(a, b)).collect(),
            });
        }
        for (base, buckets) in hists {
            series.push(ServerSeries {
                series: base,
                endpoint,
                kind: "histogram".into(),
                overall: histogram(&buckets, from, to),
                windows: (0..windows)
                    .map(|i| histogram(&buckets, i as f64 * window, (i + 1) as f64 * window))
                    .collect(),
                stages: stages
                    .iter()
                    .map(|&(a, b)| histogram(&buckets, a, b))
                    .collect(),
            });
        }
    }
    let m = ServerMetrics {
        endpoints: scraped
            .iter()
            .map(|s| Endpoint {
                url: crate::target::redact_userinfo(&s.url),
                scrapes: s.scrapes,
                failures: s.failures,
                last_error: s.last_error.clone(),
                dropped_series: s.dropped_series,
                cut_labels: s.cut_labels,
                shards: Vec::new(),
            })
            .collect(),
        series,
        resources: None,
    };
    Some(m)
}

/// The server metrics of a merged run: every shard's endpoints, each
/// endpoint once. An endpoint several shards scraped keeps the series of
/// the first shard that scraped it (its figures are that shard's scrape,
/// never an average of different scrapes) and lists every shard that did;
/// endpoints scraped by one shard each are all kept, so sums over series
/// (rates, queues) add the endpoints up exactly. Shards share the plan's
/// clock, so windows and stages line up. `None` when no shard scraped.
pub fn merge(shards: &[(u32, &ServerMetrics)]) -> Option<ServerMetrics> {
    if shards.is_empty() {
        return None;
    }
    let mut m = ServerMetrics {
        endpoints: Vec::new(),
        series: Vec::new(),
        resources: None,
    };
    for &(shard, s) in shards {
        for (i, e) in s.endpoints.iter().enumerate() {
            if let Some(kept) = m.endpoints.iter_mut().find(|k| k.url == e.url) {
                kept.shards.push(shard);
                continue;
            }
            let index = u32::try_from(m.endpoints.len()).unwrap_or(u32::MAX);
            m.endpoints.push(Endpoint {
                shards: vec![shard],
                ..e.clone()
            });
            let from = u32::try_from(i).unwrap_or(u32::MAX);
            m.series.extend(
                s.series
                    .iter()
                    .filter(|x| x.endpoint == from)
                    .map(|x| ServerSeries {
                        endpoint: index,
                        ..x.clone()
                    }),
            );
        }
    }
    Some(m)
}

/// What the bottleneck analysis reads of the server's metrics over one
/// stretch (the run, a window or a stage): each figure summed over the
/// series that carry it (several models or endpoints), `None` when no
/// scraped series carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Requests waiting for admission, mean (vLLM, SGLang, TGI queues).
    pub waiting: Option<f64>,
    /// Requests being served, mean.
    pub running: Option<f64>,
    /// KV-cache usage, highest sample, as a share (1 = full).
    pub kv_usage: Option<f64>,
    /// Preemptions (a sequence evicted for memory) per second.
    pub preemptions_per_s: Option<f64>,
    /// Callers waiting for a database-pool connection, mean.
    pub pool_waiting: Option<f64>,
    /// Pool connections in use, highest sample.
    pub pool_in_use: Option<f64>,
    /// Pool size.
    pub pool_size: Option<f64>,
    /// The server process's CPU, cores busy (`process_cpu_seconds_total`).
    pub cpu_cores: Option<f64>,
    /// Tokens the server says it generated, per second.
    pub generated_per_s: Option<f64>,
    /// The busiest scraped host's CPU busy share, % (node_exporter).
    pub host_cpu_busy_pct: Option<f64>,
    /// Prompt tokens looked up in the prefix cache, per second (vLLM).
    pub prefix_queries_per_s: Option<f64>,
    /// Of those, found there, per second.
    pub prefix_hits_per_s: Option<f64>,
    /// The cache hit rate a server reports itself (SGLang), mean.
    pub prefix_hit_rate: Option<f64>,
}

/// The role a series plays for the analysis, by its metric name. A pool's
/// families are the ones the scraper keeps as a pool's.
pub(super) fn role(name: &str) -> Option<&'static str> {
    let pool = crate::engine::scrape::looks_like_pool(name);
    Some(match name {
        "vllm:num_requests_waiting" | "sglang:num_queue_reqs" | "tgi_queue_size" => "waiting",
        "vllm:num_requests_running" | "sglang:num_running_reqs" | "tgi_batch_current_size" => {
            "running"
        }
        "vllm:gpu_cache_usage_perc" | "vllm:kv_cache_usage_perc" | "sglang:token_usage" => "kv",
        "vllm:num_preemptions_total" => "preemptions",
        "vllm:prefix_cache_queries_total" | "vllm:prefix_cache_queries" => "prefix_queries",
        "vllm:prefix_cache_hits_total" | "vllm:prefix_cache_hits" => "prefix_hits",
        "sglang:cache_hit_rate" => "prefix_hit_rate",
        "vllm:generation_tokens_total" | "sglang:generation_tokens_total" => "generated",
        "process_cpu_seconds_total" => "cpu",
        n if pool && (n.contains("waiting") || n.contains("pending")) => "pool_waiting",
        n if pool && n.contains("idle") => "pool_idle",
        n if pool && (n.contains("in_use") || n.contains("active")) => "pool_in_use",
        n if pool && (n.ends_with("_size") || n.ends_with("_max")) => "pool_size",
        _ => return None,
    })
}

impl Signals {
    /// The share of prompt tokens the server's prefix cache served: hits
    /// over queries (vLLM), or the rate it reports (SGLang).
    pub fn prefix_cache_hit_rate(&self) -> Option<f64> {
        match (self.prefix_hits_per_s, self.prefix_queries_per_s) {
            (Some(h), Some(q)) if q > 0.0 => Some((h / q).clamp(0.0, 1.0)),
            _ => self.prefix_hit_rate,
        }
    }

    /// Several stretches' signals as one: gauges and rates averaged over
    /// the stretches that have them, highs kept as the highest.
    pub fn combine(all: &[Signals]) -> Signals {
        fn mean(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
            let xs: Vec<f64> = v.flatten().filter(|x| x.is_finite()).collect();
            (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
        }
        fn max(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
            v.flatten().filter(|x| x.is_finite()).reduce(f64::max)
        }
        Signals {
            waiting: mean(all.iter().map(|s| s.waiting)),
            running: mean(all.iter().map(|s| s.running)),
            kv_usage: max(all.iter().map(|s| s.kv_usage)),
            preemptions_per_s: mean(all.iter().map(|s| s.preemptions_per_s)),
            pool_waiting: mean(all.iter().map(|s| s.pool_waiting)),
            pool_in_use: max(all.iter().map(|s| s.pool_in_use)),
            pool_size: max(all.iter().map(|s| s.pool_size)),
            cpu_cores: mean(all.iter().map(|s| s.cpu_cores)),
            generated_per_s: mean(all.iter().map(|s| s.generated_per_s)),
            host_cpu_busy_pct: max(all.iter().map(|s| s.host_cpu_busy_pct)),
            prefix_queries_per_s: mean(all.iter().map(|s| s.prefix_queries_per_s)),
            prefix_hits_per_s: mean(all.iter().map(|s| s.prefix_hits_per_s)),
            prefix_hit_rate: mean(all.iter().map(|s| s.prefix_hit_rate)),
        }
    }
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

impl ServerMetrics {
    /// The analysis' figures over the stretch `pick` chooses of each series.
    pub fn signals(&self, pick: impl Fn(&ServerSeries) -> Option<&Figures>) -> Signals {
        let mut out = Signals::default();
        for s in &self.series {
            let name = s.series.split('{').next().unwrap_or_default();
            let (Some(role), Some(f)) = (role(name), pick(s)) else {
                continue;
            };
            match role {
                "waiting" => out.waiting = add(out.waiting, f.mean),
                "running" => out.running = add(out.running, f.mean),
                "kv" => {
                    out.kv_usage = match (out.kv_usage, f.max) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    }
                }
                "preemptions" => out.preemptions_per_s = add(out.preemptions_per_s, f.rate_per_s),
                "cpu" => out.cpu_cores = add(out.cpu_cores, f.rate_per_s),
                "generated" => out.generated_per_s = add(out.generated_per_s, f.rate_per_s),
                "pool_waiting" => out.pool_waiting = add(out.pool_waiting, f.mean),
                "pool_in_use" => out.pool_in_use = add(out.pool_in_use, f.max),
                "pool_size" => out.pool_size = add(out.pool_size, f.max),
                "prefix_queries" => {
                    out.prefix_queries_per_s = add(out.prefix_queries_per_s, f.rate_per_s);
                }
                "prefix_hits" => out.prefix_hits_per_s = add(out.prefix_hits_per_s, f.rate_per_s),
                "prefix_hit_rate" => out.prefix_hit_rate = add(out.prefix_hit_rate, f.mean),
                _ => {}
            }
        }
        out
    }

    /// The busiest host's CPU in a stretch's resources.
    fn host_cpu(u: Option<&super::usage::Usage>) -> Option<f64> {
        u?.hosts
            .iter()
            .filter_map(|h| h.cpu_busy_pct)
            .reduce(f64::max)
    }

    /// Over the measured run.
    pub fn overall(&self) -> Signals {
        Signals {
            host_cpu_busy_pct: Self::host_cpu(self.resources.as_ref().map(|r| &r.overall)),
            ..self.signals(|s| Some(&s.overall))
        }
    }

    /// Over the result's `i`-th stage (its place in `stages`, not its index in the load).
    pub fn stage(&self, i: usize) -> Signals {
        Signals {
            host_cpu_busy_pct: Self::host_cpu(
                self.resources.as_ref().and_then(|r| r.stages.get(i)),
            ),
            ..self.signals(|s| s.stages.get(i))
        }
    }

    /// Over window `i`.
    pub fn window(&self, i: usize) -> Signals {
        Signals {
            host_cpu_busy_pct: Self::host_cpu(
                self.resources.as_ref().and_then(|r| r.windows.get(i)),
            ),
            ..self.signals(|s| s.windows.get(i))
        }
    }
}

/// `x_bucket{a="1",le="0.5"}` → (`x{a="1"}`, 0.5).
fn split_le(key: &str) -> Option<(String, f64)> {
    let (name, labels) = key.split_once('{')?;
    let name = name.strip_suffix("_bucket")?;
    let labels = labels.strip_suffix('}')?;
    let mut le = None;
    let mut rest = Vec::new();
    for part in labels.split(',') {
        match part.strip_prefix("le=\"").and_then(|v| v.strip_suffix('"')) {
            Some(v) => le = crate::stats::prom::parse_value(v),
            None => rest.push(part),
        }
    }
    let base = if rest.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", rest.join(","))
    };
    Some((base, le?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(kind: Kind, points: &[(f64, f64)]) -> Series {
        Series {
            kind: Some(kind),
            points: points.to_vec(),
        }
    }

    #[test]
    fn gauges_counters_and_histograms_become_figures() {
        let mut s = Scraped {
            url: "http://127.0.0.1:1/metrics".into(),
            scrapes: 4,
            ..Scraped::default()
        };
        s.series.insert(
            "waiting".into(),
            series(Kind::Gauge, &[(0.5, 2.0), (1.5, 4.0), (2.5, 6.0)]),
        );
        // 10 tokens a second, with a restart (reset to 0) between 2 s and 3 s.
        s.series.insert(
            "tokens_total".into(),
            series(
                Kind::Counter,
                &[(0.0, 100.0), (1.0, 110.0), (2.0, 120.0), (3.0, 10.0)],
            ),
        );
        for (le, n) in [("0.1", 50.0), ("0.5", 90.0), ("+Inf", 100.0)] {
            s.series.insert(
                format!("ttft_bucket{{m=\"x\",le=\"{le}\"}}"),
                series(Kind::Histogram, &[(0.0, 0.0), (3.0, n)]),
            );
        }
        let m = summarise(&[s], 0.0, 4.0, 2.0, &[(0.0, 2.0), (2.0, 4.0)]).expect("figures");
        let by = |k: &str| m.series.iter().find(|x| x.series == k).expect(k).clone();
        let w = by("waiting");
        assert_eq!((w.overall.mean, w.overall.max), (Some(4.0), Some(6.0)));
        assert_eq!(w.windows.len(), 2);
        assert_eq!(w.windows[0].mean, Some(3.0));
        assert_eq!(w.stages[1].mean, Some(6.0));
        let t = by("tokens_total");
        assert_eq!(t.overall.rate_per_s, Some(10.0));
        let h = by("ttft{m=\"x\"}");
        assert_eq!(h.kind, "histogram");
        assert_eq!(h.overall.p50, Some(0.1));
        assert!((h.overall.p90.expect("p90") - 0.5).abs() < 1e-9);
        assert_eq!(m.endpoints[0].scrapes, 4);
        // Only known roles become signals; the waiting gauge is one.
        assert_eq!(m.overall().waiting, None);
        assert_eq!(role("vllm:num_requests_waiting"), Some("waiting"));
        assert_eq!(role("hikaricp_connections_pending"), Some("pool_waiting"));
        assert_eq!(role("mock_db_pool_in_use"), Some("pool_in_use"));
        assert_eq!(role("mock_db_pool_size"), Some("pool_size"));
        assert_eq!(role("node_load1"), None);
    }
}
