//! Streams as servers other than the OpenAI shape send them: Anthropic's
//! named events (content, `message_stop`, `event: error`), an OpenAI error
//! object mid-stream, and an end marker written with other spacing.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{read_json, run, run_cli, spawn_mock, text, Load};
use axum::response::IntoResponse;
use axum::Router;

/// `run -s SCENARIO` for 2 s with 2 users against a mock made with `mock`:
/// the result's first step, with the run's error examples under
/// `error_examples`.
fn step_of(scenario: &str, mock: &[&str]) -> serde_json::Value {
    let server = spawn_mock(mock);
    let dir = tempfile::tempdir().expect("tempdir");
    let (o, out) = run_cli(
        dir.path(),
        scenario,
        &server.url,
        2,
        &[
            "-c",
            "2",
            "-d",
            "2s",
            "--warmup",
            "0s",
            "--var",
            "max_tokens=4",
        ],
    );
    assert!(out.exists(), "{}", text(&o));
    let r = read_json(&out);
    let mut step = r["steps"][0].clone();
    step["error_examples"] = r["error_examples"].clone();
    step
}

/// A mock whose every answer fails after two of its four tokens, with the
/// server's error inside the stream.
const FAILING_MID_STREAM: [&str; 8] = [
    "--ttft-ms",
    "20",
    "--itl-ms",
    "2",
    "--output-tokens",
    "4",
    "--error-rate",
    "error=1",
];

#[test]
fn the_bundled_anthropic_scenario_reads_the_mocks_named_events() {
    let s = step_of(
        "anthropic-messages",
        &["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "4"],
    );
    let ok = s["ok"].as_u64().expect("ok");
    assert!(ok > 10, "{s}");
    assert_eq!(s["requests"], ok, "every message read: {s}");
    let tokens = &s["output_tokens"];
    assert_eq!(tokens["usage_reported"], ok, "`message_delta` usage: {s}");
    assert_eq!(tokens["usage_minus_chunks"], 0, "{s}");
    assert!(s["ttft_ms"]["p50"].as_f64().expect("ttft") >= 20.0, "{s}");
}

#[test]
fn an_error_event_after_two_deltas_is_a_stream_error_with_its_message() {
    // Four tokens: the mock fails at the second, after two deltas.
    let s = step_of("anthropic-messages", &FAILING_MID_STREAM);
    assert_eq!(s["ok"], 0, "{s}");
    assert_eq!(s["errors"]["stream_error"], s["requests"], "{s}");
    let example = s["error_examples"][0].clone();
    assert_eq!(example["class"], "stream_error", "{s}");
    assert_eq!(example["body"], "Overloaded", "{s}");
}

#[test]
fn an_openai_error_object_mid_stream_is_a_stream_error_with_its_message() {
    let s = step_of("openai-chat", &FAILING_MID_STREAM);
    assert_eq!(s["ok"], 0, "{s}");
    assert_eq!(s["errors"]["stream_error"], s["requests"], "{s}");
    assert!(
        s["error_examples"][0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("The server had an error")),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_end_marker_matches_however_it_is_spaced() {
    // The server ends with `{"type": "message_stop"}` (a space after the
    // colon, an extra field); the scenario wrote it without.
    let app = Router::new().fallback(|| async {
        let chunk =
            |t: &str| format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{t}\"}}}}]}}\n\n");
        let body = format!(
            "{}{}data: {{\"type\": \"message_stop\", \"index\": 0}}\n\n",
            chunk("一"),
            chunk("二")
        );
        ([("content-type", "text/event-stream")], body).into_response()
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let sc = crate::common::scenario(
        r#"
name = "spaced-done"
[auth]
kind = "bearer"
[safety]
circuit_breaker = false
[[steps]]
name = "chat"
path = "/v1/chat/completions"
body = '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
[steps.stream]
done = '{"type":"message_stop"}'
require_done = true
"#,
    );
    let (r, _) = run(
        sc,
        &url,
        Load {
            concurrency: 2,
            duration: None,
            requests: Some(10),
            warmup: Duration::ZERO,
        },
    )
    .await;
    assert_eq!(r.steps[0].ok, 10, "{:?}", r.steps[0].errors);
}
