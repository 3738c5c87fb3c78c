//! The Prometheus text parser on the formats real servers write (fixtures
//! of each preset's exporter), on arbitrary input, and on the mock's own
//! `/metrics`.

use flora_gate::stats::prom::{self, Exposition, Kind, Sample};
use proptest::prelude::*;

use crate::common::spawn_mock;

fn fixture(name: &str) -> Exposition {
    let path = format!(
        "{}/tests/fixtures/prom/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    prom::parse(&std::fs::read_to_string(&path).expect("fixture")).expect(name)
}

fn value(e: &Exposition, name: &str, label: Option<(&str, &str)>) -> f64 {
    e.samples
        .iter()
        .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .unwrap_or_else(|| panic!("{name} {label:?}"))
        .value
}

#[test]
fn every_preset_format_is_read_as_its_exporter_writes_it() {
    let v = fixture("vllm");
    assert_eq!(v.samples.len(), 12);
    assert_eq!(value(&v, "vllm:num_requests_waiting", None), 3.0);
    assert_eq!(value(&v, "vllm:gpu_cache_usage_perc", None), 0.8734);
    assert_eq!(value(&v, "vllm:generation_tokens_total", None), 1_234_567.0);
    assert_eq!(
        value(
            &v,
            "vllm:time_to_first_token_seconds_bucket",
            Some(("le", "+Inf"))
        ),
        1000.0
    );
    assert_eq!(
        v.kind_of("vllm:time_to_first_token_seconds_sum"),
        Kind::Histogram
    );
    assert_eq!(
        value(
            &v,
            "vllm:request_success_total",
            Some(("finished_reason", "length"))
        ),
        3.0
    );
    let s = fixture("sglang");
    assert_eq!(value(&s, "sglang:num_running_reqs", None), 28.0);
    assert_eq!(s.kind_of("sglang:generation_tokens_total"), Kind::Counter);
    let t = fixture("tgi");
    assert_eq!(value(&t, "tgi_queue_size", None), 4.0);
    assert_eq!(
        t.kind_of("tgi_request_generated_tokens_bucket"),
        Kind::Histogram
    );
    let tr = fixture("triton");
    assert_eq!(
        value(
            &tr,
            "nv_inference_request_success",
            Some(("model", "tensorrt_llm"))
        ),
        2201.0
    );
    let d = fixture("dcgm");
    assert_eq!(value(&d, "DCGM_FI_DEV_GPU_UTIL", Some(("gpu", "0"))), 98.0);
    assert_eq!(
        d.samples[0].label("modelName"),
        Some("NVIDIA H100 80GB HBM3")
    );
    let n = fixture("node");
    assert_eq!(
        value(&n, "node_memory_MemAvailable_bytes", None),
        6.8719476736e10
    );
    assert_eq!(value(&n, "process_cpu_seconds_total", None), 1234.56);
    assert_eq!(
        value(
            &n,
            "hikaricp_connections_active",
            Some(("pool", "novel-db"))
        ),
        19.0
    );
}

fn metric_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}"
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,10}"
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        metric_name(),
        prop::collection::vec((label_name(), any::<String>()), 0..4),
        prop_oneof![
            any::<f64>(),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::NAN),
            -1e12f64..1e12
        ],
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(name, labels, value, timestamp_ms)| Sample {
            name,
            labels,
            value,
            timestamp_ms,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_input_never_panics(text in any::<String>()) {
        let _ = prom::parse(&text);
    }

    #[test]
    fn line_noise_never_panics(lines in prop::collection::vec("[ -~]{0,60}", 0..20)) {
        let _ = prom::parse(&lines.join("\n"));
    }

    #[test]
    fn what_is_rendered_parses_back_the_same(samples in prop::collection::vec(sample(), 0..8)) {
        let e = Exposition { samples, ..Exposition::default() };
        let back = prom::parse(&prom::render(&e)).expect("its own output parses");
        prop_assert_eq!(back.samples.len(), e.samples.len());
        for (a, b) in e.samples.iter().zip(&back.samples) {
            prop_assert_eq!(&a.name, &b.name);
            prop_assert_eq!(&a.labels, &b.labels);
            prop_assert_eq!(a.timestamp_ms, b.timestamp_ms);
            prop_assert!(a.value == b.value || (a.value.is_nan() && b.value.is_nan()), "{} vs {}", a.value, b.value);
        }
    }
}

#[test]
fn the_mock_exposes_what_it_does_under_vllm_names() {
    let mock = spawn_mock(&[
        "--ttft-ms",
        "5",
        "--itl-ms",
        "1",
        "--output-tokens",
        "4",
        "--max-concurrency",
        "2",
    ]);
    let client = std::process::Command::new(crate::common::BIN)
        .args([
            "run",
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "--requests",
            "6",
            "-c",
            "2",
            "--no-progress",
            "--tokens",
        ])
        .arg(tokens())
        .arg("-o")
        .arg(std::env::temp_dir().join(format!("prom-mock-{}.json", std::process::id())))
        .output()
        .expect("runs");
    assert!(client.status.success(), "{}", crate::common::text(&client));
    let body = get(&format!("{}/metrics", mock.url));
    let e = prom::parse(&body).expect("the mock's metrics parse");
    assert_eq!(value(&e, "vllm:generation_tokens_total", None), 24.0);
    assert_eq!(
        value(&e, "vllm:time_to_first_token_seconds_count", None),
        6.0
    );
    assert_eq!(value(&e, "vllm:num_requests_running", None), 0.0);
    assert_eq!(e.kind_of("vllm:num_requests_waiting"), Kind::Gauge);
    assert!(value(&e, "process_resident_memory_bytes", None) > 0.0);
}

fn tokens() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("prom-tokens-{}.csv", std::process::id()));
    std::fs::write(
        &p,
        "user_id,access_token\nu1,prom-token-1\nu2,prom-token-2\n",
    )
    .expect("written");
    p
}

fn get(url: &str) -> String {
    crate::common::get_body(url)
}

#[test]
fn a_run_keeps_the_servers_figures_and_a_failing_scrape_never_fails_it() {
    let mock = spawn_mock(&[
        "--ttft-ms",
        "20",
        "--itl-ms",
        "5",
        "--output-tokens",
        "16",
        "--max-concurrency",
        "2",
    ]);
    // A port nothing listens on: every scrape fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}/metrics", dead.local_addr().expect("addr"));
    drop(dead);
    let out = std::env::temp_dir().join(format!("prom-run-{}.json", std::process::id()));
    let o = std::process::Command::new(crate::common::BIN)
        .args([
            "run",
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "-c",
            "4",
            "-d",
            "3s",
            "--no-progress",
        ])
        .args(["--server-metrics", &format!("{}/metrics", mock.url)])
        .args([
            "--server-metrics",
            &dead_url,
            "--server-metrics-interval",
            "250ms",
        ])
        .arg("--tokens")
        .arg(tokens())
        .arg("-o")
        .arg(&out)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", crate::common::text(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("result")).expect("JSON");
    let m = &r["server_metrics"];
    assert!(
        m["endpoints"][0]["scrapes"].as_u64().expect("scrapes") >= 8,
        "{m}"
    );
    assert_eq!(m["endpoints"][0]["failures"], 0, "{m}");
    assert!(
        m["endpoints"][1]["failures"].as_u64().expect("failures") >= 8,
        "{m}"
    );
    let series = |name: &str| {
        m["series"]
            .as_array()
            .expect("series")
            .iter()
            .find(|s| s["series"].as_str().is_some_and(|k| k.starts_with(name)))
            .unwrap_or_else(|| panic!("{name} in {m}"))
            .clone()
    };
    // 2 streams at once, 16 tokens in ~100 ms each: about 300 tokens a second.
    let tokens_per_s = series("vllm:generation_tokens_total")["overall"]["rate_per_s"]
        .as_f64()
        .expect("rate");
    assert!((150.0..450.0).contains(&tokens_per_s), "{tokens_per_s}");
    // Four users on two slots: about two waiting all the time.
    let waiting = series("vllm:num_requests_waiting")["overall"]["mean"]
        .as_f64()
        .expect("mean");
    assert!((1.0..=2.5).contains(&waiting), "{waiting}");
    let ttft = series("vllm:time_to_first_token_seconds")["overall"]["p50"]
        .as_f64()
        .expect("p50");
    assert!(ttft > 0.02, "{ttft}");
    let errors: Vec<String> = crate::schema::validator()
        .iter_errors(&r)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_scenarios_server_metrics_are_scraped_and_checked_like_the_target() {
    let mock = spawn_mock(&["--ttft-ms", "10", "--itl-ms", "2", "--output-tokens", "8"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = |urls: &str| {
        let p = dir.path().join("s.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"s\"\n[safety]\nallow_hosts = [\"127.0.0.1\"]\n[server_metrics]\nurls = [{urls}]\ninterval = \"200ms\"\n[[steps]]\nname = \"chat\"\npath = \"/v1/chat/completions\"\nbody = '{{\"model\": \"m\", \"stream\": true, \"max_tokens\": 8, \"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}]}}'\n"
            ),
        )
        .expect("write");
        p
    };
    let out = dir.path().join("r.json");
    let run = |s: &std::path::Path| {
        std::process::Command::new(crate::common::BIN)
            .args([
                "run",
                "-t",
                &mock.url,
                "-c",
                "2",
                "-d",
                "2s",
                "--no-progress",
            ])
            .arg("--tokens")
            .arg(tokens())
            .arg("-s")
            .arg(s)
            .arg("-o")
            .arg(&out)
            .output()
            .expect("runs")
    };
    // A path is taken on the target's origin.
    let o = run(&scenario("\"/metrics\""));
    assert!(o.status.success(), "{}", crate::common::text(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("result")).expect("JSON");
    let e = &r["server_metrics"]["endpoints"][0];
    assert_eq!(e["url"], format!("{}/metrics", mock.url), "{e}");
    assert!(e["scrapes"].as_u64().expect("scrapes") >= 5, "{e}");
    // Another host is refused before any request, naming where it came from.
    std::fs::remove_file(&out).expect("rm");
    let o = run(&scenario("\"http://198.51.100.7/metrics\""));
    assert_eq!(o.status.code(), Some(2), "{}", crate::common::text(&o));
    let t = crate::common::text(&o);
    assert!(t.contains("allow_hosts") && t.contains("metrics"), "{t}");
    assert!(!out.exists());
}

/// An endpoint that answers every scrape with 30,000 series no scrape had
/// before, and one series of 5,000 labels of 1 KB each.
async fn cardinality_bomb() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    let n = std::sync::Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let scrape = n.fetch_add(1, Ordering::Relaxed);
            async move {
                let mut text = String::with_capacity(2 << 20);
                for i in 0..30_000 {
                    text.push_str(&format!(
                        "vllm:num_requests_running{{id=\"{scrape}-{i}\"}} 1\n"
                    ));
                }
                let long = "y".repeat(1000);
                let labels: Vec<String> = (0..5000).map(|k| format!("l{k}=\"{long}\"")).collect();
                text.push_str(&format!(
                    "vllm:num_requests_waiting{{{}}} 2\n",
                    labels.join(",")
                ));
                text
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cardinality_bomb_is_capped_and_said() {
    let bomb = cardinality_bomb().await;
    let mock = spawn_mock(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("r.json");
    let html = dir.path().join("r.html");
    let tok = tokens();
    let (o, h) = (out.clone(), html.clone());
    let run = tokio::task::spawn_blocking(move || {
        let r = crate::common::flora(&[
            "run",
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "--tokens",
            tok.to_str().expect("utf-8"),
            "-c",
            "2",
            "-d",
            "4s",
            "--warmup",
            "0s",
            "--no-progress",
            "--server-metrics",
            &bomb,
            "--server-metrics-interval",
            "250ms",
            "-o",
            o.to_str().expect("utf-8"),
        ]);
        let rep = crate::common::flora(&[
            "report",
            "-r",
            o.to_str().expect("utf-8"),
            "-f",
            "html",
            "-o",
            h.to_str().expect("utf-8"),
        ]);
        (r, rep)
    })
    .await
    .expect("joined");
    assert!(run.0.status.success(), "{}", crate::common::text(&run.0));
    assert!(run.1.status.success(), "{}", crate::common::text(&run.1));
    let size = std::fs::metadata(&out).expect("result").len();
    assert!(size < 4 << 20, "the result is {size} bytes");
    let page = std::fs::metadata(&html).expect("html").len();
    assert!(page < 4 << 20, "the HTML report is {page} bytes");
    let r = crate::common::read_json(&out);
    let ep = &r["server_metrics"]["endpoints"][0];
    assert!(ep["dropped_series"].as_u64().unwrap_or(0) >= 29_000, "{ep}");
    assert!(ep["cut_labels"].as_u64().unwrap_or(0) > 0, "{ep}");
    let md = crate::common::report_md(&out);
    assert!(md.contains("series left out"), "the report says so: {md}");
}
