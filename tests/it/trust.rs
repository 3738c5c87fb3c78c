//! Trust: no credential in any output, requests only where allowed, no harm
//! to a failing target or to the machine, no hijacked comments, no hangs.
//! Each test plays an attacker, a careless user or a broken network against
//! local servers of its own.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{flora, refused, run, text, Load, BIN};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One request a recording server saw: method, path and headers.
type Seen1 = (String, String, Vec<(String, String)>);

/// What a recording server saw.
#[derive(Default)]
struct Seen {
    requests: Vec<Seen1>,
}

type Log = Arc<Mutex<Seen>>;
type Reply = fn(&str) -> Response;

/// A server on 127.0.0.1 that records every request and answers with `reply`.
async fn recorder(reply: Reply) -> (String, Log) {
    let log: Log = Arc::default();
    let state = (log.clone(), reply);
    let app = Router::new()
        .fallback(
            |State((log, reply)): State<(Log, Reply)>, req: Request| async move {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect();
                let path = req.uri().to_string();
                log.lock().expect("lock").requests.push((
                    req.method().to_string(),
                    path.clone(),
                    headers,
                ));
                reply(&path)
            },
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), log)
}

fn seen(log: &Log) -> usize {
    log.lock().expect("lock").requests.len()
}

fn tokens_file(dir: &std::path::Path) -> String {
    let p = dir.join("t.csv");
    std::fs::write(&p, "user_id,access_token\nu1,tok-aaaa-1\nu2,tok-bbbb-2\n").expect("write");
    p.display().to_string()
}

// ------------------------------------------------------------ 1: URLs

#[test]
fn passwords_in_urls_are_refused_and_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(dir.path());
    let out = dir.path().join("r.json");
    for extra in [
        vec!["-t", "http://admin:hunter2secret@127.0.0.1:9"],
        vec![
            "-t",
            "http://127.0.0.1:9",
            "--baseline-target",
            "http://admin:hunter2secret@127.0.0.1:9",
        ],
    ] {
        let mut args = vec!["run", "-s", "openai-chat", "--tokens", &tokens, "-d", "2s"];
        args.extend(["-o", out.to_str().expect("utf8")]);
        args.extend(extra);
        let o = flora(&args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let all = text(&o);
        assert!(!all.contains("hunter2secret"), "{all}");
        assert!(all.contains("[auth]"), "the hint names [auth]: {all}");
        assert!(!out.exists(), "nothing written");
    }
    // The scenario's base_url too.
    let sc = dir.path().join("s.toml");
    std::fs::write(
        &sc,
        "name = \"x\"\nbase_url = \"http://u:hunter2secret@127.0.0.1:9\"\n[[steps]]\nname = \"a\"\npath = \"/x\"\nresponse = \"json\"\n",
    )
    .expect("write");
    let o = flora(&[
        "run",
        "-s",
        sc.to_str().expect("utf8"),
        "--tokens",
        &tokens,
        "-d",
        "2s",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!text(&o).contains("hunter2secret"), "{}", text(&o));
    // GITHUB_API_URL.
    let body = dir.path().join("b.md");
    std::fs::write(&body, "report").expect("write");
    let o = Command::new(BIN)
        .args([
            "comment",
            "--body",
            body.to_str().expect("utf8"),
            "--pr",
            "1",
            "--repo",
            "o/r",
        ])
        .env(
            "GITHUB_API_URL",
            "https://x-access-token:hunter2secret@127.0.0.1:9/api/v3",
        )
        .env("GITHUB_TOKEN", "t")
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(!text(&o).contains("hunter2secret"), "{}", text(&o));
    assert!(text(&o).contains("GITHUB_API_URL"), "{}", text(&o));
}

#[test]
fn a_result_file_with_a_password_is_reported_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/current.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("json");
    v["provenance"]["target"] = "http://admin:hunter2secret@10.0.0.1:8080".into();
    let p = dir.path().join("r.json");
    std::fs::write(&p, v.to_string()).expect("write");
    for format in ["markdown", "text", "json"] {
        let o = flora(&[
            "report",
            "--current",
            p.to_str().expect("utf8"),
            "--format",
            format,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            !text(&o).contains("hunter2secret"),
            "{format}: {}",
            text(&o)
        );
    }
    // Nor does a baseline made from it (which `baseline propose` commits).
    let b = dir.path().join("b.json");
    let o = flora(&[
        "baseline",
        "refresh",
        p.to_str().expect("utf8"),
        "-o",
        b.to_str().expect("utf8"),
        "--accept-bad-runs",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let base = std::fs::read_to_string(&b).expect("baseline");
    assert!(!base.contains("hunter2secret"), "{base}");
}

#[test]
fn a_var_holding_an_access_token_is_used_but_never_recorded() {
    let mock =
        crate::common::spawn_mock(&["--ttft-ms", "2", "--itl-ms", "1", "--output-tokens", "2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (o, out) = crate::common::run_cli(
        dir.path(),
        "openai-chat",
        &mock.url,
        2,
        &[
            "-c",
            "2",
            "--requests",
            "4",
            "--var",
            "model=test-token-0001",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = std::fs::read_to_string(&out).expect("result");
    assert!(!r.contains("test-token-0001"), "{r}");
    assert!(r.contains("<redacted>"), "{r}");
    let md = crate::common::report_md(&out);
    assert!(!md.contains("test-token-0001"), "{md}");
}

#[test]
fn a_comment_id_is_short_and_plain() {
    for id in ["x".repeat(200), "a b".into(), "-->".into(), String::new()] {
        let o = flora(&[
            "comment",
            "--body",
            "/dev/null",
            &format!("--id={id}"),
            "--pr",
            "1",
        ]);
        assert_eq!(o.status.code(), Some(2), "{id}: {}", text(&o));
        assert!(text(&o).contains("comment id"), "{}", text(&o));
    }
}

// ------------------------------------------------------------ 2: output paths

#[cfg(unix)]
#[test]
fn output_paths_never_replace_devices_or_links() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("out.md");
    std::os::unix::fs::symlink("/dev/null", &link).expect("symlink");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/current.json");
    let o = flora(&[
        "report",
        "--current",
        fixture,
        "-o",
        link.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::symlink_metadata(&link)
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert!(std::fs::metadata("/dev/null")
        .expect("stat")
        .file_type()
        .is_char_device());
}

// ------------------------------------------------------------ 3, 4: where requests go

fn redirect_elsewhere(_: &str) -> Response {
    let to = OTHER.lock().expect("lock").clone();
    (
        StatusCode::TEMPORARY_REDIRECT,
        [("location", format!("{to}/steal"))],
    )
        .into_response()
}

static OTHER: Mutex<String> = Mutex::new(String::new());

fn ok(_: &str) -> Response {
    StatusCode::OK.into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_follow_a_redirect_to_another_origin() {
    let (other, other_log) = recorder(ok).await;
    *OTHER.lock().expect("lock") = other;
    let (target, target_log) = recorder(redirect_elsewhere).await;
    let sc = crate::common::scenario(
        r#"
name = "api-key"
[auth]
kind = "bearer"
header = "X-Api-Key"
scheme = "Key"
[safety]
circuit_breaker = false
backoff = "0s"
[[steps]]
name = "get"
method = "GET"
path = "/v1/thing"
response = "json"
"#,
    );
    let (r, _) = run(
        sc,
        &target,
        Load {
            concurrency: 2,
            duration: None,
            requests: Some(6),
            warmup: Duration::ZERO,
        },
    )
    .await;
    assert_eq!(seen(&target_log), 6);
    assert!(
        target_log.lock().expect("lock").requests[0]
            .2
            .iter()
            .any(|(k, _)| k == "x-api-key"),
        "the target gets the key"
    );
    assert_eq!(seen(&other_log), 0, "nothing reaches the other origin");
    assert_eq!(
        r.steps[0].errors.get("redirect"),
        Some(&6),
        "{:?}",
        r.steps[0].errors
    );
}

#[test]
fn a_duet_reference_outside_allow_hosts_is_refused_before_any_request() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let (url, log) = rt.block_on(recorder(ok));
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = dir.path().join("s.toml");
    std::fs::write(
        &sc,
        "name = \"x\"\n[auth]\nkind = \"none\"\n[safety]\nallow_hosts = [\"127.0.0.1\"]\n[[steps]]\nname = \"a\"\npath = \"/x\"\nresponse = \"json\"\n",
    )
    .expect("write");
    let reference = url.replace("127.0.0.1", "localhost");
    let o = flora(&[
        "run",
        "-s",
        sc.to_str().expect("utf8"),
        "-t",
        &url,
        "--baseline-target",
        &reference,
        "-d",
        "12s",
        "-o",
        dir.path().join("r.json").to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("allow_hosts"), "{}", text(&o));
    assert_eq!(seen(&log), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extracted_ids_cannot_traverse_paths() {
    fn evil_id(path: &str) -> Response {
        if path == "/books" {
            axum::Json(serde_json::json!({"id": "../../admin?drop=1"})).into_response()
        } else {
            axum::Json(serde_json::json!({})).into_response()
        }
    }
    let (target, log) = recorder(evil_id).await;
    let sc = crate::common::scenario(
        r#"
name = "t"
[auth]
kind = "none"
[[steps]]
name = "create"
path = "/books"
response = "json"
extract = { book_id = "/id" }
[[steps]]
name = "read"
method = "GET"
path = "/books/{{ book_id }}/outline"
response = "json"
"#,
    );
    run(
        sc,
        &target,
        Load {
            concurrency: 1,
            duration: None,
            requests: Some(2),
            warmup: Duration::ZERO,
        },
    )
    .await;
    let paths: Vec<String> = log
        .lock()
        .expect("lock")
        .requests
        .iter()
        .map(|r| r.1.clone())
        .collect();
    assert_eq!(
        paths,
        ["/books", "/books/..%2F..%2Fadmin%3Fdrop%3D1/outline"],
        "the id stays one segment"
    );
}

// ------------------------------------------------------------ 7: a failing target

fn always_503(_: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_gets_backed_off_not_hammered() {
    let (target, log) = recorder(always_503).await;
    // The breaker off, to see what the back-off alone does over 4 s.
    let sc = crate::common::chat_scenario("[safety]\ncircuit_breaker = false\n");
    let (r, _) = run(
        sc,
        &target,
        Load {
            concurrency: 2,
            duration: Some(Duration::from_secs(4)),
            requests: None,
            warmup: Duration::ZERO,
        },
    )
    .await;
    let n = seen(&log);
    // 100 ms doubling per failure (half of it random): at most ~7 per user
    // in 4 s. Without back-off two users send thousands per second.
    assert!((4..=20).contains(&n), "{n} requests in 4 s");
    assert_eq!(r.steps[0].errors.get("http_503").copied(), Some(n as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_is_on_by_default() {
    let (target, _log) = recorder(always_503).await;
    let started = Instant::now();
    let (r, out) = run(
        crate::common::chat_scenario(""),
        &target,
        Load {
            concurrency: 4,
            duration: Some(Duration::from_secs(30)),
            requests: None,
            warmup: Duration::ZERO,
        },
    )
    .await;
    assert!(
        matches!(out.status, flora_gate::engine::RunStatus::Aborted(_)),
        "{:?}",
        out.status
    );
    assert_eq!(r.status.as_str(), "aborted");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[cfg(target_os = "linux")]
#[test]
fn memory_stays_flat_against_a_failing_target() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let (target, _log) = rt.block_on(recorder(always_503));
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = dir.path().join("s.toml");
    std::fs::write(
        &sc,
        "name = \"x\"\n[auth]\nkind = \"none\"\n[safety]\ncircuit_breaker = false\n[[steps]]\nname = \"a\"\npath = \"/x\"\nresponse = \"json\"\n",
    )
    .expect("write");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "-s",
            sc.to_str().expect("utf8"),
            "-t",
            &target,
            "-c",
            "2",
            "-d",
            "7s",
        ])
        .args(["-o", dir.path().join("r.json").to_str().expect("utf8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runs");
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_secs(2));
    let early = rss(child.id());
    std::thread::sleep(Duration::from_secs(4));
    let late = rss(child.id());
    let status = child.wait().expect("exits");
    assert!(status.code().is_some());
    assert!(early > 0 && late > 0);
    // Without back-off this grew by ~7 MB/s (every failed sample kept).
    assert!(
        late.saturating_sub(early) < 3 * 1024,
        "RSS grew from {early} kB to {late} kB in 4 s"
    );
}

// ------------------------------------------------------------ 8: caps

#[test]
fn scenario_values_cannot_pass_the_caps() {
    for (load, key) in [
        ("requests = 1000000000000", "load.requests"),
        ("blocks = 100000000", "load.blocks"),
        ("blocks = 4294967295", "load.blocks"),
        ("concurrency = 1000000", "load.concurrency"),
        ("duration = \"2d\"", "load.duration"),
    ] {
        let t = refused(
            &format!("name = \"x\"\n[auth]\nkind = \"none\"\n[load]\n{load}\n[[steps]]\nname = \"a\"\npath = \"/x\"\nresponse = \"json\"\n"),
            &[],
        );
        assert!(t.contains(key), "{load}: {t}");
    }
}

// ------------------------------------------------------------ 9: workflow commands

#[test]
fn text_from_files_cannot_become_workflow_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A step name from a result file, printed by `report`.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/current.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("json");
    v["provenance"]["scenario"]["name"] =
        "x\n::add-mask::pwned\n::warning title=x::injected".into();
    v["steps"][0]["name"] = "::add-mask::pwned".into();
    let p = dir.path().join("r.json");
    std::fs::write(&p, v.to_string()).expect("write");
    // A key in a scenario, quoted in an error on stderr.
    let sc = dir.path().join("s.toml");
    std::fs::write(&sc, "name = \"x\"\n\"a\\n::add-mask::pwned\" = 1\n").expect("write");
    let runs = [
        Command::new(BIN)
            .args([
                "report",
                "--current",
                p.to_str().expect("utf8"),
                "--format",
                "text",
            ])
            .env("GITHUB_ACTIONS", "true")
            .output()
            .expect("runs"),
        Command::new(BIN)
            .args([
                "run",
                "-s",
                sc.to_str().expect("utf8"),
                "-t",
                "http://127.0.0.1:9",
            ])
            .env("GITHUB_ACTIONS", "true")
            .output()
            .expect("runs"),
    ];
    for o in runs {
        for stream in [&o.stdout, &o.stderr] {
            let s = String::from_utf8_lossy(stream);
            let mut stopped: Option<String> = None;
            for line in s.lines() {
                if let Some(t) = &stopped {
                    if line == format!("::{t}::") {
                        stopped = None;
                    }
                    continue;
                }
                if let Some(t) = line.strip_prefix("::stop-commands::") {
                    stopped = Some(t.to_string());
                    continue;
                }
                assert!(
                    !line.trim_start().starts_with("::add-mask::pwned")
                        && !line.trim_start().starts_with("::warning title=x"),
                    "a command escaped: {s}"
                );
            }
        }
    }
    // Scenario and step names may not carry control characters at all.
    std::fs::write(
        &sc,
        "name = \"x\\n::warning::y\"\n[[steps]]\nname = \"a\"\npath = \"/x\"\n",
    )
    .expect("write");
    let o = flora(&[
        "run",
        "-s",
        sc.to_str().expect("utf8"),
        "-t",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("control characters"), "{}", text(&o));
}

// ------------------------------------------------------------ 10: smaller leaks and crashes

#[test]
fn a_var_without_equals_is_not_echoed() {
    let o = flora(&[
        "run",
        "-s",
        "openai-chat",
        "-t",
        "http://127.0.0.1:9",
        "--var",
        "sk-live-hunter2secret",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!text(&o).contains("hunter2secret"), "{}", text(&o));
    assert!(text(&o).contains("--var"));
}

#[test]
fn user_templates_cannot_loop_for_ever() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("report.txt.j2"),
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
    )
    .expect("write");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/current.json");
    let started = Instant::now();
    let o = flora(&[
        "report",
        "--current",
        fixture,
        "--format",
        "text",
        "--templates",
        dir.path().to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/current.json");
    let mut child = Command::new(BIN)
        .args(["report", "--current", fixture, "--format", "markdown"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    // Close the read end at once, like `| head -0`.
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("exits");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}

#[cfg(unix)]
#[test]
fn sighup_keeps_the_partial_result() {
    let mock =
        crate::common::spawn_mock(&["--ttft-ms", "20", "--itl-ms", "5", "--output-tokens", "20"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("r.json");
    let tokens = tokens_file(dir.path());
    let child = Command::new(BIN)
        .args([
            "run",
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "--tokens",
            &tokens,
        ])
        .args(["-c", "2", "-d", "60s", "--warmup", "0s"])
        .args(["-o", out.to_str().expect("utf8")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let o = child.wait_with_output().expect("exits");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let r = flora_gate::result::RunResult::read(&out).expect("partial result written");
    assert_eq!(r.status.as_str(), "partial");
}

/// Every request carries a W3C `traceparent` (its own trace id), and the
/// result's slowest requests name the trace ids they were sent under, so a
/// slow request is found in the server's own traces.
#[test]
fn every_request_carries_a_traceparent_and_the_slowest_are_found_by_it() {
    fn json(_: &str) -> Response {
        axum::Json(serde_json::json!({"ok": true})).into_response()
    }
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let (url, log) = rt.block_on(recorder(json));
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = dir.path().join("s.toml");
    std::fs::write(
        &sc,
        "name = \"x\"\n[auth]\nkind = \"none\"\n[[steps]]\nname = \"a\"\npath = \"/x\"\nresponse = \"json\"\n",
    )
    .expect("write");
    let out = dir.path().join("r.json");
    let o = flora(&[
        "run",
        "-s",
        sc.to_str().expect("utf8"),
        "-t",
        &url,
        "--requests",
        "20",
        "-c",
        "2",
        "--no-progress",
        "-o",
        out.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let sent: Vec<(String, String)> = log
        .lock()
        .expect("lock")
        .requests
        .iter()
        .map(|(_, _, h)| {
            let get = |k: &str| {
                h.iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (get("traceparent"), get("x-request-id"))
        })
        .collect();
    assert_eq!(sent.len(), 20);
    let mut ids = std::collections::BTreeSet::new();
    for (tp, _) in &sent {
        let parts: Vec<&str> = tp.split('-').collect();
        assert!(
            parts.len() == 4
                && parts[0] == "00"
                && parts[1].len() == 32
                && parts[2].len() == 16
                && parts[3] == "01"
                && parts[1].chars().all(|c| c.is_ascii_hexdigit()),
            "{tp}"
        );
        assert!(
            ids.insert(parts[1].to_string()),
            "trace id {} twice",
            parts[1]
        );
    }
    let r = crate::common::read_json(&out);
    let slowest = r["slowest"].as_array().expect("slowest");
    assert_eq!(slowest.len(), 5);
    for s in slowest {
        let trace = s["trace_id"].as_str().expect("trace id");
        let request = s["request_id"].as_str().expect("request id");
        assert!(
            sent.iter()
                .any(|(tp, rid)| tp.contains(trace) && rid == request),
            "{trace} / {request} was not sent"
        );
    }
    let e2e: Vec<f64> = slowest
        .iter()
        .map(|s| s["e2e_ms"].as_f64().expect("e2e"))
        .collect();
    assert!(e2e.windows(2).all(|w| w[0] >= w[1]), "{e2e:?}");
}
