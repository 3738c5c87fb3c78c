//! Results that never lie: what real servers and broken inputs do to the
//! numbers, the files and the exit code.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{flora, refused, run, run_plan, spawn_mock, start_mock, text, Load, BIN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use flora_gate::gate::{self, Status};
use flora_gate::mock::MockConfig;
use flora_gate::result::baseline::Baseline;
use flora_gate::result::RunResult;

fn quick() -> MockConfig {
    MockConfig {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(1),
        output_tokens: 12,
        ..MockConfig::default()
    }
}

fn requests(n: u64, c: u32) -> Load {
    Load {
        concurrency: c,
        duration: None,
        requests: Some(n),
        warmup: Duration::ZERO,
    }
}

/// A server on 127.0.0.1 answering every request with `reply`.
async fn serve(reply: fn(&HeaderMap) -> Response) -> String {
    let app = Router::new().fallback(move |headers: HeaderMap| async move { reply(&headers) });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn fixture(name: &str) -> serde_json::Value {
    let p = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

fn save(dir: &Path, name: &str, v: &serde_json::Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).expect("write");
    p.display().to_string()
}

// ------------------------------------------------------------ 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_end_without_done_are_fine_and_cut_ones_are_not() {
    let mock = start_mock(MockConfig {
        no_done: true,
        ..quick()
    })
    .await;
    let (r, _) = run(
        crate::common::chat_scenario(""),
        &mock.url(),
        requests(10, 2),
    )
    .await;
    mock.stop().await;
    assert_eq!(r.steps[0].ok, 10, "{:?}", r.steps[0].errors);
    assert_eq!(r.steps[0].output_tokens.total, 120);

    // Cut mid-stream (a reset) stays broken, with or without [DONE] required.
    let mock = start_mock(MockConfig {
        no_done: true,
        faults: "disconnect=1".parse().expect("faults"),
        ..quick()
    })
    .await;
    let (r, _) = run(
        crate::common::chat_scenario("[safety]\ncircuit_breaker = false\n"),
        &mock.url(),
        requests(6, 2),
    )
    .await;
    mock.stop().await;
    assert_eq!(r.steps[0].errors.get("stream_broken"), Some(&6));

    // `require_done = true` still demands the marker.
    let mock = start_mock(MockConfig {
        no_done: true,
        ..quick()
    })
    .await;
    let sc = crate::common::scenario(
        r#"
name = "strict"
[auth]
kind = "bearer"
[safety]
circuit_breaker = false
[[steps]]
name = "chat"
path = "/v1/chat/completions"
body = '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
[steps.stream]
require_done = true
"#,
    );
    let (r, _) = run(sc, &mock.url(), requests(4, 2)).await;
    mock.stop().await;
    assert_eq!(r.steps[0].errors.get("stream_broken"), Some(&4));
}

// ------------------------------------------------------------ 2

fn pinned(headers: &HeaderMap) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (
        StatusCode::BAD_REQUEST,
        format!("{{\"error\":\"Server is pinned to 'tiny-llama'\",\"you_sent\":\"{auth}\"}}"),
    )
        .into_response()
}

#[test]
fn a_run_where_nothing_succeeded_says_why_and_exits_2() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let url = rt.block_on(serve(pinned));
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("t.csv");
    std::fs::write(&tokens, "tok-verysecret-1\n").expect("write");
    let out = dir.path().join("r.json");
    let o = flora(&[
        "run",
        "-s",
        "openai-chat",
        "-t",
        &url,
        "--tokens",
        tokens.to_str().expect("utf8"),
        "-c",
        "1",
        "--requests",
        "3",
        "-o",
        out.to_str().expect("utf8"),
    ]);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(2), "{all}");
    assert!(all.contains("every request failed"), "{all}");
    assert!(all.contains("Server is pinned to 'tiny-llama'"), "{all}");
    assert!(
        !all.contains("tok-verysecret-1"),
        "the echoed token is redacted: {all}"
    );
    let r = RunResult::read(&out).expect("the result is written first");
    let e = &r.error_examples[0];
    assert_eq!((e.class.as_str(), e.status), ("http_400", Some(400)));
    assert!(e
        .body
        .as_deref()
        .is_some_and(|b| b.contains("tiny-llama") && !b.contains("verysecret")));
    let o = flora(&["report", "--current", out.to_str().expect("utf8")]);
    assert!(text(&o).contains("Server is pinned"), "{}", text(&o));
}

// ------------------------------------------------------------ 3

#[test]
fn the_printed_bound_is_the_one_the_verdict_used() {
    let current = RunResult::parse(
        &fixture("current.json").to_string(),
        Path::new("current.json"),
    )
    .expect("current");
    let mut disagreements = Vec::new();
    for step in 0..40 {
        let factor = 1.06 + 0.004 * f64::from(step);
        for spread in [0.004, 0.01, 0.02] {
            let mut b = fixture("baseline.json");
            let runs = b["runs"].as_array_mut().expect("runs");
            for (i, run) in runs.iter_mut().enumerate() {
                let all = &mut run["metrics"]["all"];
                let wiggle = 1.0 + spread * (i as f64 - 1.0);
                for m in ["ttft_p50", "ttft_p90", "tpot_p50"] {
                    let cur = flora_gate::result::values::extract(&current)["all"][m];
                    all[m] = (cur / factor * wiggle).into();
                }
            }
            let b = Baseline::parse(&b.to_string(), Path::new("b.json")).expect("baseline");
            let v = gate::compare_baseline(&b, &current, &current.gate, vec![]);
            for c in v
                .checks
                .iter()
                .filter(|c| c.scope == "all" && c.kind == gate::CheckKind::Relative)
            {
                let (Some(cur), Some(bound)) = (c.current, c.bound) else {
                    continue;
                };
                let hw = flora_gate::policy::metrics::metric_def(&c.metric)
                    .is_none_or(|d| d.higher_is_worse);
                let outside = if hw { cur > bound } else { cur < bound };
                let says_outside = c.note.contains("outside run-to-run noise");
                let says_within = c.note.contains("within run-to-run noise");
                if outside != c.significant
                    || (says_outside && !outside)
                    || (says_within && outside)
                {
                    disagreements.push(format!(
                        "{} x{factor:.3} ±{spread}: current {cur:.3} bound {bound:.3} significant {} note `{}`",
                        c.metric, c.significant, c.note
                    ));
                }
            }
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

// ------------------------------------------------------------ 6

#[test]
fn vars_are_recorded_reproduced_and_part_of_the_identity() {
    let mock = spawn_mock(&["--ttft-ms", "5", "--itl-ms", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(p("t.csv"), "tok\n").expect("write");
    for (name, max) in [("a.json", "128"), ("b.json", "8")] {
        let o = flora(&[
            "run",
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "--tokens",
            &p("t.csv"),
            "-c",
            "1",
            "--requests",
            "6",
            "--warmup",
            "0s",
            "--var",
            &format!("max_tokens={max}"),
            "--var",
            "model=my model",
            "-o",
            &p(name),
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let r = RunResult::read(Path::new(&p("b.json"))).expect("result");
    assert_eq!(r.provenance.vars["max_tokens"], serde_json::json!(8));
    let o = flora(&["report", "--current", &p("b.json"), "--format", "text"]);
    assert!(
        text(&o).contains("--var max_tokens=8") && text(&o).contains("--var 'model=my model'"),
        "{}",
        text(&o)
    );
    let o = flora(&["baseline", "refresh", "-o", &p("base.json"), &p("a.json")]);
    assert!(o.status.success(), "{}", text(&o));
    let o = flora(&["compare", "-b", &p("base.json"), "-r", &p("b.json")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("max_tokens = 8 (baseline 128)"),
        "{}",
        text(&o)
    );
}

// ------------------------------------------------------------ 7

#[test]
fn an_infinite_metric_never_passes_against_an_empty_baseline() {
    let current = {
        let mut v = fixture("current.json");
        // Every streamed request failed: ∞ in every latency percentile.
        for s in v["steps"].as_array_mut().expect("steps") {
            let n = s["requests"].clone();
            for d in ["ttft_ms", "tpot_ms", "e2e_ms"] {
                s[d]["failures"] = n.clone();
                s[d]["count"] = n.clone();
            }
        }
        v
    };
    let r = RunResult::parse(&current.to_string(), Path::new("c.json")).expect("result");
    let mut b = fixture("baseline.json");
    for run in b["runs"].as_array_mut().expect("runs") {
        for m in ["ttft_p50", "ttft_p90", "tpot_p50"] {
            run["metrics"]["all"][m] = serde_json::Value::Null;
        }
    }
    let b = Baseline::parse(&b.to_string(), Path::new("b.json")).expect("baseline");
    let v = gate::compare_baseline(&b, &r, &r.gate, vec![]);
    let ttft = v
        .checks
        .iter()
        .find(|c| c.scope == "all" && c.metric == "ttft_p50")
        .expect("check");
    if ttft.current_infinite {
        assert_eq!(ttft.status, Status::Fail, "{ttft:?}");
    } else {
        assert_ne!(ttft.status, Status::Pass, "{ttft:?}");
    }
    assert_ne!(v.verdict, Status::Pass);
}

// ------------------------------------------------------------ 8

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_byte_and_first_event_are_recorded() {
    let mock = start_mock(MockConfig {
        ttft: Duration::from_millis(60),
        ..quick()
    })
    .await;
    let (r, out) = run(
        crate::common::chat_scenario(""),
        &mock.url(),
        requests(6, 1),
    )
    .await;
    mock.stop().await;
    let s = &r.steps[0];
    let (ttfb, first, ttft) = (
        s.ttfb_ms.p50.expect("ttfb"),
        s.first_event_ms.p50.expect("first event"),
        s.ttft_ms.p50.expect("ttft"),
    );
    // The mock sends headers and the role chunk at once, content after 60 ms.
    assert!(
        ttfb <= first + 0.5 && first + 30.0 < ttft,
        "{ttfb} {first} {ttft}"
    );
    assert!(!s.histograms.ttfb.is_empty() && !s.histograms.first_event.is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("requests.jsonl");
    flora_gate::result::requests::write(
        &p,
        &flora_gate::scenario::Scenario::load("openai-chat", &[]).expect("sc"),
        &out.recorder.records,
    )
    .expect("written");
    let line = std::fs::read_to_string(&p).expect("log");
    assert!(
        line.contains("\"ttfb_ms\":") && line.contains("\"first_event_ms\":"),
        "{line}"
    );
}

// ------------------------------------------------------------ 9

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_still_open_at_the_end_are_counted() {
    let mock = start_mock(MockConfig {
        faults: "stall=1".parse().expect("faults"),
        hang: Duration::from_secs(30),
        ..quick()
    })
    .await;
    let sc = crate::common::chat_scenario(
        "[timeouts]\nidle = \"60s\"\n[safety]\ncircuit_breaker = false\n",
    );
    let mut plan = crate::common::plan_for(
        sc,
        &mock.url(),
        Load {
            concurrency: 2,
            duration: Some(Duration::from_secs(1)),
            requests: None,
            warmup: Duration::ZERO,
        },
    );
    plan.drain = Duration::from_secs(1);
    let (r, _) = run_plan(plan).await;
    mock.stop().await;
    assert_eq!(
        r.steps[0].errors.get("abandoned"),
        Some(&2),
        "{:?}",
        r.steps[0].errors
    );
    assert_eq!(r.totals.requests, 2);
    assert_eq!(
        (r.workflow.iterations, r.workflow.ok),
        (2, 0),
        "a workflow whose request was abandoned failed"
    );
    assert_eq!(
        r.state(),
        flora_gate::result::RunState::Complete,
        "the schedule ran to its end: the server's hung requests are its errors, not a partial run"
    );
}

// ------------------------------------------------------------ 10

#[test]
fn a_run_that_measured_nothing_is_not_a_pass() {
    let mock = spawn_mock(&["--ttft-ms", "5", "--itl-ms", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(p("t.csv"), "tok\n").expect("write");
    let o = flora(&[
        "run",
        "-s",
        "openai-chat",
        "-t",
        &mock.url,
        "--tokens",
        &p("t.csv"),
        "-c",
        "1",
        "--requests",
        "12",
        "--warmup",
        "1h",
        "-o",
        &p("r.json"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nothing was measured"), "{}", text(&o));
    // And a gated metric the run did not measure fails the gate.
    let o = flora(&[
        "compare",
        "-b",
        &format!(
            "{}/tests/fixtures/baseline.json",
            env!("CARGO_MANIFEST_DIR")
        ),
        "-r",
        &p("r.json"),
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not measured"), "{}", text(&o));
}

// ------------------------------------------------------------ 11, 16, 20

#[test]
fn corrupt_files_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let current = format!("{}/tests/fixtures/current.json", env!("CARGO_MANIFEST_DIR"));
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "baseline.json",
            Box::new(|b| b["runs"][0]["metrics"]["all"]["ttft_p50"] = (-5.0).into()),
            "runs[0].metrics.all.ttft_p50",
            "baseline",
        ),
        (
            "baseline.json",
            Box::new(|b| b["runs"][1]["metrics"]["all"]["error_rate"] = 3.0.into()),
            "error_rate",
            "baseline",
        ),
        (
            "baseline.json",
            Box::new(|b| b["provenance"]["scenario"]["sha256"] = "é".into()),
            "sha256",
            "baseline",
        ),
        (
            "current.json",
            Box::new(|r| r["totals"]["output_tokens_per_s"] = (-1.0).into()),
            "totals.output_tokens_per_s",
            "current",
        ),
        (
            "current.json",
            Box::new(|r| r["status"] = "great".into()),
            "status",
            "current",
        ),
        (
            "current.json",
            Box::new(|r| r["provenance"]["scenario"]["sha256"] = "abc".into()),
            "sha256",
            "current",
        ),
    ];
    for (file, edit, field, which) in cases {
        let mut v = fixture(file);
        edit(&mut v);
        let bad = save(dir.path(), file, &v);
        let base = format!(
            "{}/tests/fixtures/baseline.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let (b, c) = if which == "baseline" {
            (bad.clone(), current.clone())
        } else {
            (base, bad.clone())
        };
        let o = flora(&["compare", "-b", &b, "-r", &c]);
        assert_eq!(o.status.code(), Some(2), "{field}: {}", text(&o));
        assert!(
            text(&o).contains(field) && text(&o).contains(file),
            "{field}: {}",
            text(&o)
        );
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    }
}

// ------------------------------------------------------------ 12, 21

#[test]
fn refresh_refuses_bad_runs_and_appends_to_a_rolling_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The fixture's 8% errors would make it unfit under the default 1% bound.
    let mut good = fixture("current.json");
    good["gate"]["max_error_rate"] = 0.5.into();
    let mut bad = good.clone();
    let good = save(dir.path(), "good.json", &good);
    bad["status"] = "aborted".into();
    bad["status_reason"] = "circuit breaker".into();
    let bad = save(dir.path(), "bad.json", &bad);
    let out = dir.path().join("b.json").display().to_string();
    let o = flora(&["baseline", "refresh", "-o", &out, &good, &bad]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("bad.json") && text(&o).contains("aborted"),
        "{}",
        text(&o)
    );
    assert!(!Path::new(&out).exists());
    let o = flora(&["baseline", "refresh", "-o", &out, &good, &good]);
    assert!(o.status.success(), "{}", text(&o));
    for _ in 0..3 {
        let o = flora(&[
            "baseline", "refresh", "-o", &out, "--append", "--keep", "3", &good,
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let b = Baseline::read(Path::new(&out)).expect("baseline");
    assert_eq!(b.runs.len(), 3, "the newest 3 kept");
}

#[test]
fn a_baseline_too_noisy_for_the_margin_says_so() {
    let current = RunResult::parse(&fixture("current.json").to_string(), Path::new("c.json"))
        .expect("current");
    let mut b = fixture("baseline.json");
    for (i, run) in b["runs"]
        .as_array_mut()
        .expect("runs")
        .iter_mut()
        .enumerate()
    {
        let x = run["metrics"]["all"]["ttft_p50"].as_f64().expect("value");
        run["metrics"]["all"]["ttft_p50"] = (x * [0.8, 1.0, 1.25][i]).into();
    }
    let b = Baseline::parse(&b.to_string(), Path::new("b.json")).expect("baseline");
    let v = gate::compare_baseline(&b, &current, &current.gate, vec![]);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("wider than the margin") && n.contains("duet")),
        "{:?}",
        v.notes
    );
}

#[test]
fn gate_confirm_runs_again_before_failing() {
    let slow = spawn_mock(&["--slowdown", "1.6", "--jitter-ms", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(p("t.csv"), "tok-a\ntok-b\n").expect("write");
    let o = flora(&[
        "gate",
        "-s",
        "novel",
        "-t",
        &slow.url,
        "--tokens",
        &p("t.csv"),
        "-c",
        "2",
        "--requests",
        "36",
        "--warmup",
        "0s",
        "-b",
        &format!(
            "{}/tests/fixtures/baseline.json",
            env!("CARGO_MANIFEST_DIR")
        ),
        "-o",
        &p("r.json"),
        "--verdict-out",
        &p("v.json"),
        "--report-out",
        &p("r.md"),
        "--comment",
        "never",
        "--confirm",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(Path::new(&p("r.unconfirmed.json")).exists());
    let v = std::fs::read_to_string(p("v.json")).expect("verdict");
    assert!(v.contains("confirmed: the first run failed too"), "{v}");
}

// ------------------------------------------------------------ 15, 17, 19

#[test]
fn huge_durations_and_unwritable_outputs_are_refused_up_front() {
    let mock = spawn_mock(&["--ttft-ms", "5"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(p("t.csv"), "tok\n").expect("write");
    let sc = dir.path().join("s.toml");
    std::fs::write(&sc, "name = \"x\"\n[timeouts]\ntotal = \"100000000d\"\n[[steps]]\nname = \"a\"\npath = \"/v1/chat/completions\"\n").expect("write");
    let o = flora(&[
        "run",
        "-s",
        sc.to_str().expect("utf8"),
        "-t",
        &mock.url,
        "--tokens",
        &p("t.csv"),
        "-d",
        "2s",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("timeouts") || text(&o).contains("7 days"),
        "{}",
        text(&o)
    );
    let base = [
        "run",
        "-s",
        "openai-chat",
        "-t",
        &mock.url,
        "--tokens",
        &p("t.csv"),
        "-d",
        "2s",
    ];
    let o = flora(&[&base[..], &["--drain", "99999999999s", "-o", &p("r.json")]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--drain"), "{}", text(&o));
    let started = std::time::Instant::now();
    let o = flora(&[&base[..], &["-o", &p("missing/dir/r.json")]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--out"), "{}", text(&o));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused before the run"
    );
    let o = flora(
        &[
            &base[..],
            &["-o", &p("same.json"), "--requests-out", &p("same.json")],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("also given"), "{}", text(&o));
    // A target with stray spaces is used as validated.
    let padded = format!(" {} ", mock.url);
    let o = flora(&[
        "run",
        "-s",
        "openai-chat",
        "-t",
        &padded,
        "--tokens",
        &p("t.csv"),
        "--requests",
        "4",
        "-o",
        &p("ok.json"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

// ------------------------------------------------------------ 18

fn absurd_usage(_: &HeaderMap) -> Response {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n\
                data: {\"choices\":[],\"usage\":{\"completion_tokens\":18446744073709551615}}\n\n\
                data: [DONE]\n\n";
    ([("content-type", "text/event-stream")], body).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_usage_counts_are_protocol_errors() {
    let url = serve(absurd_usage).await;
    let (r, _) = run(
        crate::common::chat_scenario("[safety]\ncircuit_breaker = false\nbackoff = \"0s\"\n"),
        &url,
        requests(4, 1),
    )
    .await;
    assert_eq!(
        r.steps[0].errors.get("protocol"),
        Some(&4),
        "{:?}",
        r.steps[0].errors
    );
    assert!(r.totals.output_tokens_per_s < 1e6);
}

// ------------------------------------------------------------ 20

#[test]
fn smaller_inputs_get_the_right_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = refused("name = \"x\"\n[auth]\nkind = \"none\"\n[data]\nfile = \"nope.json\"\n[[steps]]\nname = \"a\"\npath = \"/x\"\n", &[]);
    assert!(
        t.contains("nope.json") && !t.contains("invalid scenario"),
        "{t}"
    );
    let t = refused("name = \"x\"\n[auth]\nkind = \"none\"\n[gate]\nmetrics = []\n[[steps]]\nname = \"a\"\npath = \"/x\"\n", &[]);
    assert!(t.contains("metrics"), "{t}");
    for bad in [
        "http:///path",
        "http://127.0.0.1:9/?x=1",
        "http://127.0.0.1:9/#f",
    ] {
        let o = flora(&[
            "run",
            "-s",
            "openai-chat",
            "-t",
            bad,
            "--tokens",
            "/dev/null",
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(text(&o).contains("--target"), "{bad}: {}", text(&o));
    }
    let body = dir.path().join("b.md");
    std::fs::write(&body, "x").expect("write");
    let o = Command::new(BIN)
        .args([
            "comment",
            "--body",
            body.to_str().expect("utf8"),
            "--repo",
            "o/r",
        ])
        .env("GITHUB_TOKEN", "t")
        .env("GITHUB_EVENT_PATH", dir.path().join("missing-event.json"))
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("missing-event.json"), "{}", text(&o));
}

#[test]
fn the_gate_reads_its_baseline_before_any_load() {
    let mock = crate::common::spawn_mock(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = crate::common::tokens_csv(dir.path(), 2);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"kind\": \"flora-gate-baseline\"").expect("write");
    for baseline in [dir.path().join("missing.json"), bad] {
        let o = crate::common::flora(&[
            "gate",
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "--tokens",
            &tok,
            "-c",
            "2",
            "-d",
            "30s",
            "-b",
            baseline.to_str().expect("utf-8"),
            "--comment",
            "never",
            "--no-progress",
            "-o",
            dir.path().join("r.json").to_str().expect("utf-8"),
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", crate::common::text(&o));
        assert!(
            crate::common::text(&o)
                .contains(baseline.file_name().and_then(|n| n.to_str()).expect("name")),
            "the error names the file: {}",
            crate::common::text(&o)
        );
    }
    let stats = crate::common::get_body(&format!("{}/_mock/stats", mock.url));
    let v: serde_json::Value = serde_json::from_str(&stats).expect("json");
    assert_eq!(
        v["requests"].as_u64(),
        Some(0),
        "no load before the baseline was read"
    );
}
