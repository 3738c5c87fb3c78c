//! Faults and protections: each run completes, classifies and counts the
//! failure, and reports it.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{chat_scenario, run, start_mock, Load};
use flora_gate::engine::{self, Plan, RunStatus};
use flora_gate::mock::MockConfig;
use flora_gate::scenario::Scenario;
use tokio_util::sync::CancellationToken;

fn quick(faults: &str) -> MockConfig {
    MockConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(1),
        output_tokens: 10,
        faults: faults.parse().expect("valid faults"),
        hang: Duration::from_secs(5),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_is_an_idle_timeout() {
    let mock = start_mock(quick("stall=0.5")).await;
    let (r, _) = run(
        chat_scenario("[timeouts]\nidle = \"300ms\"\n"),
        &mock.url(),
        requests(20, 4),
    )
    .await;
    mock.stop().await;
    let n = r.steps[0].errors.get("timeout_idle").copied().unwrap_or(0);
    assert!(n >= 3, "{:?}", r.steps[0].errors);
    assert_eq!(r.steps[0].requests, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_answer_is_a_protocol_error() {
    let mock = start_mock(quick("badjson=0.5")).await;
    let sc = Scenario::load("novel", &[]).expect("bundled");
    let (r, _) = run(sc, &mock.url(), requests(30, 2)).await;
    mock.stop().await;
    let create = &r.steps[0];
    assert!(
        create.errors.get("protocol").copied().unwrap_or(0) >= 2,
        "{:?}",
        create.errors
    );
    assert!(r.totals.failed > 0 && r.totals.ok > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_response_is_capped() {
    let mock = start_mock(quick("endless=1")).await;
    let sc = chat_scenario("[safety]\nmax_response_bytes = 20000\n[timeouts]\ntotal = \"20s\"\n");
    let (r, _) = run(sc, &mock.url(), requests(2, 2)).await;
    mock.stop().await;
    assert_eq!(
        r.steps[0].errors.get("protocol"),
        Some(&2),
        "{:?}",
        r.steps[0].errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_counted_and_can_be_honoured() {
    let mut cfg = quick("429=1");
    cfg.retry_after_s = 1;
    let mock = start_mock(cfg.clone()).await;
    let load = || Load {
        concurrency: 2,
        duration: Some(Duration::from_millis(2500)),
        requests: None,
        warmup: Duration::ZERO,
    };
    // Both protections switched off, to see what they prevent.
    let (eager, _) = run(
        chat_scenario(
            "[safety]\nhonor_retry_after = false\nbackoff = \"0s\"\ncircuit_breaker = false\n",
        ),
        &mock.url(),
        load(),
    )
    .await;
    // The defaults honour Retry-After.
    let (polite, _) = run(
        chat_scenario("[safety]\ncircuit_breaker = false\n"),
        &mock.url(),
        load(),
    )
    .await;
    mock.stop().await;
    let e = eager.steps[0]
        .errors
        .get("rate_limited")
        .copied()
        .unwrap_or(0);
    let p = polite.steps[0]
        .errors
        .get("rate_limited")
        .copied()
        .unwrap_or(0);
    assert!(
        (2..=8).contains(&p),
        "honouring Retry-After: {p} requests in 2.5 s with 2 users"
    );
    assert!(e > p * 2, "without it the users do not wait: {e} vs {p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_goes_away_mid_run_is_counted_as_connect_errors() {
    let mock = start_mock(quick("")).await;
    let url = mock.url();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        mock.stop().await;
    });
    let (r, _) = run(
        chat_scenario("[timeouts]\nconnect = \"500ms\"\n"),
        &url,
        Load {
            concurrency: 2,
            duration: Some(Duration::from_secs(2)),
            requests: None,
            warmup: Duration::ZERO,
        },
    )
    .await;
    stopper.await.expect("stopped");
    let chat = &r.steps[0];
    assert!(chat.ok > 0, "requests before the stop succeeded");
    let refused = chat.errors.get("connect").copied().unwrap_or(0)
        + chat.errors.get("transport").copied().unwrap_or(0)
        + chat.errors.get("stream_broken").copied().unwrap_or(0);
    assert!(refused > 0, "{:?}", chat.errors);
    // A dead target must not turn into a hot loop: back-off keeps the count small.
    assert!(chat.failed < 200, "{} failures in ~1.3 s", chat.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_host_is_a_clear_error() {
    let err = engine::preflight(
        &crate::common::target("http://flora-gate-test.invalid:8080"),
        Duration::from_secs(5),
    )
    .await
    .expect_err("no such host");
    assert!(err.to_string().contains("flora-gate-test.invalid"), "{err}");
    assert!(err.hint().expect("hint").contains("--target"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_stops_the_run_and_fails_the_gate() {
    let mock = start_mock(quick("500=0.9")).await;
    let sc = chat_scenario(
        "[safety]\nabort_error_rate = 0.5\nabort_window = \"2s\"\nabort_min_requests = 10\n",
    );
    let mut load = sc.load.clone();
    load.concurrency = 4;
    load.duration = Some(Duration::from_secs(20));
    load.warmup = Duration::ZERO;
    let plan = Plan {
        drain: Duration::from_secs(5),
        ..Plan::new(
            Arc::new(sc),
            mock.target(),
            Arc::new(flora_gate::tokens::generated(4)),
            load,
        )
    };
    let started = std::time::Instant::now();
    let out = engine::run(
        plan.clone(),
        CancellationToken::new(),
        CancellationToken::new(),
    )
    .await
    .expect("runs");
    mock.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10), "stopped early");
    let RunStatus::Aborted(reason) = &out.status else {
        panic!("not aborted: {:?}", out.status)
    };
    assert!(reason.contains("circuit breaker"), "{reason}");
    let r = flora_gate::result::build(&plan, &out).expect("records read back");
    assert_eq!(r.status.as_str(), "aborted");
    let base = flora_gate::result::baseline::Baseline::read(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/baseline.json"
    )))
    .expect("fixture");
    let v = flora_gate::gate::compare_baseline(&base, &r, &r.gate, vec![]);
    assert_eq!(v.verdict, flora_gate::gate::Status::Fail);
    assert!(
        v.headline.contains("aborted") && v.headline.contains("circuit breaker"),
        "{}",
        v.headline
    );
}

/// The engine checks a plan's destinations where a run begins, whatever
/// built the plan: outside `allow_hosts` is refused before any connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_outside_allow_hosts_are_refused() {
    let sc = chat_scenario("[safety]\nallow_hosts = [\"127.0.0.1\", \"LocalHost\"]\n");
    let run = |target: &str| {
        let plan = crate::common::plan_for(sc.clone(), target, requests(1, 1));
        engine::run(plan, CancellationToken::new(), CancellationToken::new())
    };
    // Allowed: refused only because nothing listens there.
    for allowed in ["http://127.0.0.1:9", "http://LOCALHOST:9"] {
        let err = run(allowed).await.expect_err("nothing listens");
        assert!(!err.to_string().contains("allow_hosts"), "{allowed}: {err}");
    }
    let err = run("https://prod.example.com").await.expect_err("refused");
    assert!(
        err.to_string().contains("prod.example.com") && err.to_string().contains("allow_hosts"),
        "{err}"
    );
}

/// `flora-gate run` for 60 s against `url`, writing its result to `out`.
#[cfg(unix)]
fn start_long_run(url: &str, dir: &std::path::Path, out: &std::path::Path) -> std::process::Child {
    let command = std::process::Command::new(env!("CARGO_BIN_EXE_flora-gate"));
    start_long_run_with(command, url, dir, out)
}

/// As [`start_long_run`], the binary started by `command`.
#[cfg(unix)]
fn start_long_run_with(
    mut command: std::process::Command,
    url: &str,
    dir: &std::path::Path,
    out: &std::path::Path,
) -> std::process::Child {
    use std::process::Stdio;
    let tokens = dir.join("t.csv");
    std::fs::write(&tokens, "tok\n").expect("write");
    command
        .args([
            "run",
            "-s",
            "openai-chat",
            "-t",
            url,
            "--tokens",
            &tokens.display().to_string(),
        ])
        .args([
            "-c",
            "2",
            "-d",
            "60s",
            "--warmup",
            "0s",
            "-o",
            &out.display().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run")
}

/// After `wait`, SIGINT to `child`; its output, and how long it took to
/// exit after the signal.
#[cfg(unix)]
fn interrupt_after(wait: Duration, child: std::process::Child) -> (std::process::Output, Duration) {
    std::thread::sleep(wait);
    let sent = std::time::Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let output = child.wait_with_output().expect("exits");
    (output, sent.elapsed())
}

#[cfg(unix)]
#[test]
fn sigint_keeps_a_partial_result_and_exits_non_zero() {
    let mock =
        crate::common::spawn_mock(&["--ttft-ms", "20", "--itl-ms", "5", "--output-tokens", "20"]);
    let url = mock.url.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("r.json");
    let child = start_long_run(&url, dir.path(), &out);
    let (output, took) = interrupt_after(Duration::from_millis(1500), child);
    drop(mock);
    assert!(took < Duration::from_secs(15), "stopped promptly");
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let r = flora_gate::result::RunResult::read(&out).expect("partial result written");
    assert_eq!(r.status.as_str(), "partial");
    assert!(r.totals.requests > 0);
    assert!(String::from_utf8_lossy(&output.stderr).contains("did not finish"));
}

/// Pinned to one core, the run goes on the single-threaded scheduler:
/// requests complete, the host shows one core, and a signal still stops the
/// run with its partial result written.
#[cfg(target_os = "linux")]
#[test]
fn on_one_core_the_run_and_its_stop_still_work() {
    use std::process::Command;
    let mock =
        crate::common::spawn_mock(&["--ttft-ms", "20", "--itl-ms", "5", "--output-tokens", "20"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("r.json");
    let mut pinned = Command::new("taskset");
    pinned.args(["-c", "0", env!("CARGO_BIN_EXE_flora-gate")]);
    let child = start_long_run_with(pinned, &mock.url, dir.path(), &out);
    let (output, _) = interrupt_after(Duration::from_millis(2000), child);
    drop(mock);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let r = flora_gate::result::RunResult::read(&out).expect("partial result written");
    assert_eq!(r.status.as_str(), "partial");
    assert_eq!(r.provenance.host.cores, 1, "{stderr}");
    assert!(r.totals.requests >= 4, "{:?}", r.totals);
    assert_eq!(r.totals.failed, 0, "{:?}", r.totals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_503_are_counted_between_successes() {
    let mut cfg = quick("");
    cfg.burst = Some("503:300ms/1s".parse().expect("valid burst"));
    let mock = start_mock(cfg).await;
    let (r, _) = run(
        chat_scenario(""),
        &mock.url(),
        Load {
            concurrency: 2,
            duration: Some(Duration::from_millis(2500)),
            requests: None,
            warmup: Duration::ZERO,
        },
    )
    .await;
    mock.stop().await;
    let chat = &r.steps[0];
    assert!(
        chat.errors.get("http_503").copied().unwrap_or(0) > 0,
        "{:?}",
        chat.errors
    );
    // Between bursts the users are served (errors return at once, so they
    // outnumber successes by count; what matters is that service resumes).
    assert!(chat.ok > 50, "{} ok, {} failed", chat.ok, chat.failed);
    assert!("503:2s/1s".parse::<flora_gate::mock::Burst>().is_err());
}

#[cfg(unix)]
#[test]
fn a_second_sigint_stops_at_once_and_still_writes() {
    use std::process::Command;
    // Long streams: 50 tokens 200 ms apart, so in-flight requests would take ~10 s.
    let mock = crate::common::spawn_mock(&[
        "--ttft-ms",
        "20",
        "--itl-ms",
        "200",
        "--output-tokens",
        "50",
    ]);
    let url = mock.url.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("r.json");
    let child = start_long_run(&url, dir.path(), &out);
    std::thread::sleep(Duration::from_millis(1200));
    let pid = child.id().to_string();
    let started = std::time::Instant::now();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    let output = child.wait_with_output().expect("exits");
    drop(mock);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the second signal does not wait for streams"
    );
    assert_eq!(output.status.code(), Some(2));
    let r = flora_gate::result::RunResult::read(&out).expect("result written");
    assert_eq!(r.status.as_str(), "partial");
    assert!(
        r.status_reason
            .as_deref()
            .unwrap_or("")
            .contains("second signal"),
        "{:?}",
        r.status_reason
    );
}
