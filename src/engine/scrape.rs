//! Server-side metrics during a run: each Prometheus endpoint is scraped
//! every interval and the samples of the families that matter are kept on
//! the run's clock. A scrape that fails or is slow is counted, never waited
//! for past its timeout, and never stops or slows the run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::prom::{self, Kind};

/// The families each preset keeps (matched by name, or by name with a
/// `_bucket`/`_sum`/`_count` suffix).
pub const PRESETS: &[(&str, &[&str])] = &[
    (
        "vllm",
        &[
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:gpu_cache_usage_perc",
            "vllm:kv_cache_usage_perc",
            "vllm:num_preemptions_total",
            "vllm:prompt_tokens_total",
            "vllm:generation_tokens_total",
            "vllm:time_to_first_token_seconds",
            "vllm:inter_token_latency_seconds",
            "vllm:time_per_output_token_seconds",
            "vllm:e2e_request_latency_seconds",
            "vllm:prefix_cache_queries_total",
            "vllm:prefix_cache_hits_total",
        ],
    ),
    (
        "sglang",
        &[
            "sglang:num_running_reqs",
            "sglang:num_queue_reqs",
            "sglang:token_usage",
            "sglang:gen_throughput",
            "sglang:generation_tokens_total",
            "sglang:time_to_first_token_seconds",
            "sglang:cache_hit_rate",
        ],
    ),
    (
        "tgi",
        &[
            "tgi_queue_size",
            "tgi_batch_current_size",
            "tgi_request_count",
            "tgi_request_generated_tokens",
            "tgi_request_queue_duration",
        ],
    ),
    (
        "triton",
        &[
            "nv_inference_request_success",
            "nv_inference_request_failure",
            "nv_inference_queue_duration_us",
            "nv_inference_compute_infer_duration_us",
            "nv_gpu_utilization",
            "nv_gpu_memory_used_bytes",
        ],
    ),
    (
        "dcgm",
        &[
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_FB_USED",
            "DCGM_FI_DEV_FB_FREE",
            "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        ],
    ),
    (
        "node",
        &[
            "node_cpu_seconds_total",
            "node_memory_MemAvailable_bytes",
            "node_memory_MemTotal_bytes",
            "node_disk_io_time_seconds_total",
            "node_network_receive_bytes_total",
            "node_network_transmit_bytes_total",
            "node_load1",
        ],
    ),
    (
        "process",
        &["process_cpu_seconds_total", "process_resident_memory_bytes"],
    ),
];

/// An endpoint to scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeTarget {
    /// Its URL (checked against `allow_hosts` like the target).
    pub url: String,
    /// How often.
    pub interval: Duration,
    /// The families kept: the presets' and the ones the user named.
    pub families: Vec<String>,
}

/// Every preset's families, and `extra`.
pub fn families(extra: &[String]) -> Vec<String> {
    PRESETS
        .iter()
        .flat_map(|(_, f)| f.iter().map(|s| (*s).to_string()))
        .chain(extra.iter().cloned())
        .collect()
}

/// One series: a metric name and its labels, with its points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// The family's type.
    pub kind: Option<Kind>,
    /// Seconds from the run's start, and the value.
    pub points: Vec<(f64, f64)>,
}

/// What one endpoint gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scraped {
    /// The URL, as given.
    pub url: String,
    /// Scrapes tried.
    pub scrapes: u64,
    /// Scrapes that failed (no answer in time, an error status, a body
    /// that does not parse).
    pub failures: u64,
    /// The last failure, for the report.
    pub last_error: Option<String>,
    /// Series by `name{labels}`.
    pub series: BTreeMap<String, Series>,
    /// Series left out for the caps ([`MAX_SERIES`], [`MAX_PER_FAMILY`]):
    /// the most in any one scrape.
    pub dropped_series: u64,
    /// Label values cut to [`MAX_LABEL_CHARS`], or labels past
    /// [`MAX_LABELS`] left out, in all.
    pub cut_labels: u64,
}

/// Most series kept of one endpoint; past [`USER_SERIES`], only the
/// presets' families take new ones.
pub const MAX_SERIES: usize = 1000;
/// Most series of families the user named, per endpoint.
pub const USER_SERIES: usize = 800;
/// Most series of one family, per endpoint: a family whose labels explode
/// cannot crowd out the others.
pub const MAX_PER_FAMILY: usize = 200;
/// Longest label value kept, in characters.
pub const MAX_LABEL_CHARS: usize = 128;
/// Most labels of one series.
pub const MAX_LABELS: usize = 16;

/// A family that looks like a connection pool's (HikariCP, pgbouncer,
/// SQLAlchemy or Go `database/sql` exporters, `db_*`): kept without being
/// named, so a pool's waiters are evidence by default.
pub fn looks_like_pool(family: &str) -> bool {
    family.contains("pool")
        || family.starts_with("hikaricp_")
        || family.starts_with("pgbouncer_")
        || family.starts_with("db_")
        || family.contains("_connections")
}

fn is_preset(family: &str) -> bool {
    PRESETS.iter().any(|(_, f)| f.contains(&family))
}

/// The series key, and how many labels were cut or left out.
fn key(s: &prom::Sample) -> (String, u64) {
    if s.labels.is_empty() {
        return (s.name.clone(), 0);
    }
    let mut cut = s.labels.len().saturating_sub(MAX_LABELS) as u64;
    let labels: Vec<String> = s
        .labels
        .iter()
        .take(MAX_LABELS)
        .map(|(k, v)| {
            let k: String = k.chars().take(MAX_LABEL_CHARS).collect();
            let mut v: String = if v.chars().count() > MAX_LABEL_CHARS {
                cut += 1;
                v.chars().take(MAX_LABEL_CHARS).collect::<String>() + "…"
            } else {
                v.clone()
            };
            v = v.replace('\\', "\\\\").replace('"', "\\\"");
            format!("{k}=\"{v}\"")
        })
        .collect();
    (format!("{}{{{}}}", s.name, labels.join(",")), cut)
}

/// Keep what `text` holds of `families` at `t` seconds; `Err` when it does not parse.
pub fn absorb(into: &mut Scraped, families: &[String], text: &str, t: f64) -> Result<(), String> {
    let e = prom::parse(text).map_err(|e| e.to_string())?;
    let mut dropped = 0u64;
    let mut per_family: BTreeMap<String, usize> = BTreeMap::new();
    for k in into.series.keys() {
        let name = k.split('{').next().unwrap_or(k);
        *per_family.entry(e.family_of(name).to_string()).or_default() += 1;
    }
    // Presets first: their samples are taken before the user's families.
    let (presets, others): (Vec<_>, Vec<_>) = e
        .samples
        .iter()
        .filter(|s| {
            let family = e.family_of(&s.name);
            families.iter().any(|f| f == family || f == &s.name) || looks_like_pool(family)
        })
        .partition(|s| is_preset(e.family_of(&s.name)));
    for s in presets.into_iter().chain(others) {
        let family = e.family_of(&s.name);
        let (k, cut) = key(s);
        if !into.series.contains_key(&k) {
            let room = if is_preset(family) {
                MAX_SERIES
            } else {
                USER_SERIES
            };
            let in_family = per_family.get(family).copied().unwrap_or(0);
            if into.series.len() >= room || in_family >= MAX_PER_FAMILY {
                dropped += 1;
                continue;
            }
            *per_family.entry(family.to_string()).or_default() += 1;
            into.cut_labels += cut;
        }
        let series = into.series.entry(k).or_default();
        series.kind = Some(e.kind_of(&s.name));
        series.points.push((t, s.value));
    }
    into.dropped_series = into.dropped_series.max(dropped);
    Ok(())
}

/// Scrape `target` until `stop`; what it gave goes to `into`.
pub async fn run(
    client: reqwest::Client,
    target: ScrapeTarget,
    t0: Instant,
    stop: CancellationToken,
    into: Arc<Mutex<Scraped>>,
) {
    let mut tick = tokio::time::interval(target.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // A scrape may take most of an interval, never more, and never over 10 s.
    let timeout = target.interval.mul_f64(0.8).min(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let t = t0.elapsed().as_secs_f64();
        let got = tokio::time::timeout(timeout, fetch(&client, &target.url)).await;
        let Ok(mut s) = into.lock() else { return };
        s.scrapes += 1;
        let outcome = match got {
            Err(_) => Err(format!("no answer within {timeout:?}")),
            Ok(Err(e)) => Err(e),
            Ok(Ok(text)) => absorb(&mut s, &target.families, &text, t),
        };
        if let Err(e) = outcome {
            s.failures += 1;
            s.last_error = Some(e);
        }
    }
}

/// Most bytes read of one scrape.
const MAX_BODY: usize = 8 << 20;

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let mut r = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("status {}", r.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("more than {} MiB", MAX_BODY >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "not UTF-8 text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_chosen_families_are_kept_with_their_labels() {
        let mut s = Scraped::default();
        let fams = families(&["hikaricp_connections_active".into()]);
        let text = "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} 3\nunrelated_total 9\nhikaricp_connections_active{pool=\"db\"} 7\n";
        absorb(&mut s, &fams, text, 1.0).expect("parses");
        absorb(&mut s, &fams, text.replace(" 3\n", " 5\n").as_str(), 2.0).expect("parses");
        let w = &s.series["vllm:num_requests_waiting{model_name=\"m\"}"];
        assert_eq!(w.points, [(1.0, 3.0), (2.0, 5.0)]);
        assert_eq!(w.kind, Some(Kind::Gauge));
        assert!(s
            .series
            .contains_key("hikaricp_connections_active{pool=\"db\"}"));
        assert!(!s.series.keys().any(|k| k.starts_with("unrelated")));
        assert!(absorb(&mut s, &fams, "{{garbage", 3.0).is_err());
    }

    #[test]
    fn series_are_capped_per_endpoint_and_family_with_the_presets_first() {
        let mut s = Scraped::default();
        let fams = families(&["bomb_total".to_string()]);
        for scrape in 0..3 {
            let mut text = String::from("# TYPE bomb_total counter\n");
            for i in 0..20_000 {
                text.push_str(&format!("bomb_total{{id=\"{scrape}-{i}\"}} 1\n"));
            }
            text.push_str("vllm:num_requests_waiting 3\n");
            let long = "x".repeat(1000);
            let labels: Vec<String> = (0..50).map(|k| format!("l{k}=\"{long}\"")).collect();
            text.push_str(&format!(
                "vllm:num_requests_running{{{}}} 1\n",
                labels.join(",")
            ));
            absorb(&mut s, &fams, &text, f64::from(scrape)).expect("parses");
        }
        assert!(s.series.len() <= MAX_SERIES, "{}", s.series.len());
        let bombs = s
            .series
            .keys()
            .filter(|k| k.starts_with("bomb_total"))
            .count();
        assert_eq!(bombs, MAX_PER_FAMILY);
        assert_eq!(s.dropped_series, 20_000, "a whole scrape's new series");
        assert_eq!(
            s.series["vllm:num_requests_waiting"].points.len(),
            3,
            "the preset kept"
        );
        let running = s
            .series
            .keys()
            .find(|k| k.starts_with("vllm:num_requests_running"))
            .expect("kept, its labels cut");
        assert!(
            running.len() < MAX_LABELS * (MAX_LABEL_CHARS + 16),
            "{}",
            running.len()
        );
        assert!(s.cut_labels >= 34, "{}", s.cut_labels);
    }

    #[test]
    fn connection_pools_are_kept_without_being_named() {
        let mut s = Scraped::default();
        let text = "hikaricp_connections_pending{pool=\"db\"} 3\npgbouncer_pools_client_waiting_connections 1\ndb_pool_in_use 4\nunrelated_total 1\n";
        absorb(&mut s, &families(&[]), text, 0.0).expect("parses");
        assert_eq!(s.series.len(), 3, "{:?}", s.series.keys());
        assert!(!s.series.keys().any(|k| k.starts_with("unrelated")));
    }
}
