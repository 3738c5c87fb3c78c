//! The bottleneck analysis on mocks with a known bottleneck: one ramp of
//! held levels each, classified by the rule that must fire (and no other).

use crate::common::{report_md, run_cli, spawn_mock, text};

/// Ramp through held levels of 4, 16 and 32 users against a mock made with
/// `mock`, and return the report's bottleneck section.
fn analysis(mock: &[&str], token_count: usize) -> String {
    analysis_of("openai-chat", mock, token_count)
}

/// The same with another scenario.
fn analysis_of(scenario: &str, mock: &[&str], token_count: usize) -> String {
    analysis_with(
        scenario,
        mock,
        token_count,
        &["--stages", "0s:4,5s:4,0s:16,5s:16,0s:32,5s:32"],
    )
}

/// The report's bottleneck section (and the run's output) of a run of
/// `scenario` with `load` flags against a mock made with `mock`.
fn analysis_with(scenario: &str, mock: &[&str], token_count: usize, load: &[&str]) -> String {
    let mock = spawn_mock(mock);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut extra = vec!["--var", "max_tokens=16", "--warmup", "0s"];
    extra.extend_from_slice(load);
    let (o, out) = run_cli(dir.path(), scenario, &mock.url, token_count, &extra);
    let run = text(&o);
    assert!(out.exists(), "{run}");
    let md = format!("{}\n{run}", report_md(&out));
    let from = md
        .find("### Bottleneck analysis")
        .unwrap_or_else(|| panic!("no analysis: {md}"));
    let rest = &md[from + 4..];
    let section = &rest[..rest.find("\n### ").unwrap_or(rest.len())];
    format!("{section}\n--- the run:\n{run}")
}

#[test]
fn a_concurrency_limit_is_queueing() {
    let a = analysis(
        &[
            "--max-concurrency",
            "8",
            "--ttft-ms",
            "30",
            "--itl-ms",
            "3",
            "--output-tokens",
            "16",
        ],
        32,
    );
    assert!(a.contains("requests queue before they are served"), "{a}");
    assert!(!a.contains("batching saturates"), "{a}");
}

#[test]
fn a_ramp_without_holds_is_read_window_by_window_and_finds_the_queue() {
    // Ramps only (2 → 24 users), against a server that serves 4 at once:
    // the windows, binned by the users they had, are the levels.
    let a = analysis_with(
        "openai-chat",
        &[
            "--max-concurrency",
            "4",
            "--ttft-ms",
            "20",
            "--itl-ms",
            "5",
            "--output-tokens",
            "16",
        ],
        24,
        &["--stages", "2s:2,6s:12,6s:24", "--window", "1s"],
    );
    assert!(a.contains("requests queue before they are served"), "{a}");
    assert!(!a.contains("No bottleneck"), "{a}");
}

#[test]
fn a_compute_bound_server_is_named_saturated_never_held() {
    // Every other stream slows both the prefill and each token: TTFT and
    // TPOT rise together and throughput flattens, as on a CPU-bound server.
    let a = analysis(
        &[
            "--ttft-ms",
            "20",
            "--itl-ms",
            "3",
            "--output-tokens",
            "16",
            "--itl-per-stream-ms",
            "0.5",
            "--ttft-per-stream-ms",
            "4",
        ],
        32,
    );
    assert!(a.contains("the server is saturated"), "{a}");
    assert!(!a.contains("No bottleneck"), "{a}");
}

#[test]
fn streams_sharing_a_batch_is_batching() {
    let a = analysis(
        &[
            "--ttft-ms",
            "20",
            "--itl-ms",
            "3",
            "--output-tokens",
            "16",
            "--itl-per-stream-ms",
            "0.5",
        ],
        32,
    );
    assert!(a.contains("decode batching saturates"), "{a}");
    assert!(!a.contains("requests queue"), "{a}");
}

#[test]
fn a_per_token_rate_limit_is_rate_limiting() {
    let a = analysis(
        &[
            "--ttft-ms",
            "20",
            "--itl-ms",
            "2",
            "--output-tokens",
            "16",
            "--rate-limit",
            "2",
        ],
        4,
    );
    assert!(a.contains("requests were rate-limited"), "{a}");
}

#[test]
fn a_light_run_has_no_finding() {
    let a = analysis(
        &["--ttft-ms", "40", "--itl-ms", "4", "--output-tokens", "16"],
        32,
    );
    assert!(a.contains("No bottleneck"), "{a}");
}

#[test]
fn a_small_database_pool_is_a_non_llm_tier() {
    // The novel workflow creates a book (a JSON step) on one pooled
    // connection held 100 ms; its streams are not limited.
    let a = analysis_of(
        "novel",
        &[
            "--db-pool",
            "1",
            "--db-ms",
            "100",
            "--ttft-ms",
            "20",
            "--itl-ms",
            "2",
            "--output-tokens",
            "16",
        ],
        32,
    );
    assert!(a.contains("a tier other than the model slows down"), "{a}");
    assert!(!a.contains("requests queue"), "{a}");
}

#[test]
fn a_full_kv_cache_with_preemptions_is_memory_pressure_not_batching() {
    // Room for 12 streams: at 16 and 32 users every stream is evicted once
    // and stalls 150 ms; the scraped cache is full and preempting.
    let a = analysis_with(
        "openai-chat",
        &[
            "--ttft-ms",
            "20",
            "--itl-ms",
            "3",
            "--output-tokens",
            "16",
            "--kv-slots",
            "12",
            "--preempt-ms",
            "150",
        ],
        32,
        &[
            "--stages",
            "0s:4,5s:4,0s:16,5s:16,0s:32,5s:32",
            "--server-metrics",
            "/metrics",
        ],
    );
    assert!(a.contains("memory / KV-cache pressure"), "{a}");
    assert!(a.contains("KV-cache usage peaked at 100%"), "{a}");
    assert!(!a.contains("batching saturates"), "{a}");
}

#[test]
fn ttft_that_follows_the_prompt_is_prefill_bound() {
    // The novel workflow's streamed steps send prompts of different sizes;
    // each byte costs 100 µs of TTFT on this mock.
    let a = analysis_with(
        "novel",
        &[
            "--ttft-ms",
            "10",
            "--itl-ms",
            "2",
            "--output-tokens",
            "16",
            "--prefill-us-per-char",
            "100",
        ],
        16,
        &["-c", "8", "-d", "5s"],
    );
    assert!(a.contains("prefill-bound"), "{a}");
    assert!(a.contains("per 1,000 characters of prompt"), "{a}");
}

#[test]
fn one_run_with_server_metrics_finds_the_queue_and_shows_the_figures() {
    // 16 users on 4 slots: one level, but the server's waiting queue says it.
    let mock = spawn_mock(&[
        "--max-concurrency",
        "4",
        "--ttft-ms",
        "20",
        "--itl-ms",
        "3",
        "--output-tokens",
        "16",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (o, out) = run_cli(
        dir.path(),
        "openai-chat",
        &mock.url,
        16,
        &[
            "--var",
            "max_tokens=16",
            "-c",
            "16",
            "-d",
            "4s",
            "--server-metrics",
            "/metrics",
        ],
    );
    assert!(out.exists(), "{}", text(&o));
    let md = report_md(&out);
    assert!(md.contains("### Server metrics"), "{md}");
    assert!(
        md.contains("`vllm:num_requests_waiting{model_name=\"mock-novelist\"}`"),
        "{md}"
    );
    assert!(md.contains("the server's waiting queue held"), "{md}");
    // The same light load on a server with room: no finding, said so.
    let mock = spawn_mock(&["--ttft-ms", "20", "--itl-ms", "3", "--output-tokens", "16"]);
    let light = |secs: &str, scrape: &str| {
        let (o, out) = run_cli(
            dir.path(),
            "openai-chat",
            &mock.url,
            16,
            &[
                "--var",
                "max_tokens=16",
                "-c",
                "4",
                "-d",
                secs,
                "--server-metrics",
                scrape,
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        report_md(&out)
    };
    let md = light("3s", "/metrics");
    assert!(
        md.contains("No bottleneck found at this load; the server's waiting queue"),
        "{md}"
    );
    assert!(md.contains("stayed clear"), "{md}");
    // Every scrape failing (404) is evidence of nothing: not "clear".
    let md = light("2s", "/no-metrics-here");
    assert!(!md.contains("stayed clear"), "{md}");
    assert!(
        !md.contains("No bottleneck"),
        "nothing to say it with: {md}"
    );
}
