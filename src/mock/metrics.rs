//! The mock's `/metrics`: what it really does, under the names vLLM uses,
//! in the Prometheus text format, so server-side scraping and the
//! bottleneck rules can be tested against a server whose truth is known.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::config::MockStats;

/// Upper bounds of the TTFT histogram, seconds (vLLM's own).
const TTFT_BUCKETS_S: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A family's `# HELP` and `# TYPE` lines.
fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition. `slots` is how many requests are served at once
/// (`--max-concurrency`), the mock's "KV cache": its usage is the share in use.
// Long by design: every family the mock exposes, one after another in scrape
// order; a list to read, not logic to follow.
pub fn render(
    stats: &MockStats,
    slots: Option<usize>,
    db_pool: Option<usize>,
    model: &str,
) -> String {
    let mut o = String::with_capacity(4096);
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let label = format!(
        "model_name=\"{}\"",
        model.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let running = load(&stats.streaming);
    let waiting = load(&stats.in_flight).saturating_sub(running);
    head(
        &mut o,
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
    );
    let _ = writeln!(o, "vllm:num_requests_running{{{label}}} {running}");
    head(
        &mut o,
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
    );
    let _ = writeln!(o, "vllm:num_requests_waiting{{{label}}} {waiting}");
    let usage = slots.map_or(0.0, |n| (running as f64 / n.max(1) as f64).min(1.0));
    head(
        &mut o,
        "vllm:gpu_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
    );
    let _ = writeln!(o, "vllm:gpu_cache_usage_perc{{{label}}} {usage}");
    head(
        &mut o,
        "vllm:num_preemptions_total",
        "counter",
        "Cumulative number of preemptions from the engine.",
    );
    let _ = writeln!(
        o,
        "vllm:num_preemptions_total{{{label}}} {}",
        load(&stats.preemptions)
    );
    head(
        &mut o,
        "vllm:prefix_cache_queries_total",
        "counter",
        "Prompt tokens looked up in the prefix cache.",
    );
    let _ = writeln!(
        o,
        "vllm:prefix_cache_queries_total{{{label}}} {}",
        load(&stats.prefix_queries)
    );
    head(
        &mut o,
        "vllm:prefix_cache_hits_total",
        "counter",
        "Prompt tokens found in the prefix cache.",
    );
    let _ = writeln!(
        o,
        "vllm:prefix_cache_hits_total{{{label}}} {}",
        load(&stats.prefix_hits)
    );
    head(
        &mut o,
        "mock_streams_per_token_max",
        "gauge",
        "The most streams one bearer token has had at once.",
    );
    let _ = writeln!(
        o,
        "mock_streams_per_token_max {}",
        load(&stats.per_token_max)
    );
    head(
        &mut o,
        "mock_client_disconnects_total",
        "counter",
        "Streams whose client left before the last token.",
    );
    let _ = writeln!(
        o,
        "mock_client_disconnects_total {}",
        load(&stats.disconnects)
    );
    head(
        &mut o,
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
    );
    let _ = writeln!(
        o,
        "vllm:generation_tokens_total{{{label}}} {}",
        load(&stats.generated_tokens)
    );
    head(
        &mut o,
        "vllm:request_success_total",
        "counter",
        "Count of requests received.",
    );
    let _ = writeln!(
        o,
        "vllm:request_success_total{{{label}}} {}",
        load(&stats.requests)
    );
    head(
        &mut o,
        "vllm:time_to_first_token_seconds",
        "histogram",
        "Histogram of time to first token in seconds.",
    );
    if let Ok(h) = stats.ttft_us.lock() {
        for b in TTFT_BUCKETS_S {
            let upto = (b * 1e6) as u64;
            let n = if h.is_empty() {
                0
            } else {
                h.count_between(0, upto)
            };
            let _ = writeln!(
                o,
                "vllm:time_to_first_token_seconds_bucket{{{label},le=\"{b}\"}} {n}"
            );
        }
        let n = h.len();
        let _ = writeln!(
            o,
            "vllm:time_to_first_token_seconds_bucket{{{label},le=\"+Inf\"}} {n}"
        );
        let _ = writeln!(
            o,
            "vllm:time_to_first_token_seconds_sum{{{label}}} {}",
            h.mean() * n as f64 / 1e6
        );
        let _ = writeln!(o, "vllm:time_to_first_token_seconds_count{{{label}}} {n}");
    }
    if let Some(size) = db_pool {
        head(
            &mut o,
            "mock_db_pool_size",
            "gauge",
            "Connections of the database pool.",
        );
        let _ = writeln!(o, "mock_db_pool_size {size}");
        head(
            &mut o,
            "mock_db_pool_in_use",
            "gauge",
            "Pool connections in use.",
        );
        let _ = writeln!(o, "mock_db_pool_in_use {}", load(&stats.db_in_use));
        head(
            &mut o,
            "mock_db_pool_waiting",
            "gauge",
            "Requests waiting for a pool connection.",
        );
        let _ = writeln!(o, "mock_db_pool_waiting {}", load(&stats.db_waiting));
    }
    let (cpu, rss) = process();
    head(
        &mut o,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    );
    let _ = writeln!(o, "process_cpu_seconds_total {}", cpu.unwrap_or(0.0));
    head(
        &mut o,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    let _ = writeln!(o, "process_resident_memory_bytes {}", rss.unwrap_or(0.0));
    o
}

/// This process's CPU seconds and resident bytes (Linux `/proc`; `None` elsewhere).
fn process() -> (Option<f64>, Option<f64>) {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // utime and stime are fields 14 and 15, counted after the `(comm)` field.
    let cpu = stat.as_deref().and_then(|s| {
        let rest = s.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    });
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|pages| pages * 4096.0);
    (cpu, rss)
}
