//! The built binary end to end: mock as a child process, `run`, files, exit codes.

use std::path::Path;
use std::process::Command;

use crate::common::{MockProcess, BIN};

fn spawn_mock(extra: &[&str]) -> MockProcess {
    let mut args = vec!["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "12"];
    args.extend_from_slice(extra);
    crate::common::spawn_mock(&args)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn run_writes_result_and_request_log_and_never_leaks_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_a = "sk-live-7f3a9c0e1d2b";
    let secret_b = "sk-live-0b1c2d3e4f5a";
    let tokens = write(
        dir.path(),
        "access_tokens.csv",
        &format!("user_id,access_token\nalice,{secret_a}\nbob,{secret_b}\n"),
    );
    let mock = spawn_mock(&["--tokens", &tokens]);
    let result = dir.path().join("result.json").display().to_string();
    let jsonl = dir.path().join("requests.jsonl").display().to_string();
    let (code, stdout, stderr) = run(&[
        "run",
        "--scenario",
        "novel",
        "--target",
        &mock.url,
        "--tokens",
        &tokens,
        "--concurrency",
        "2",
        "--requests",
        "24",
        "--warmup",
        "0s",
        "--out",
        &result,
        "--requests-out",
        &jsonl,
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("summarize"), "{stdout}");
    assert!(
        stdout.contains("totals: 24 requests, 0.00% errors"),
        "{stdout}"
    );

    let result_text = std::fs::read_to_string(&result).expect("result written");
    let jsonl_text = std::fs::read_to_string(&jsonl).expect("jsonl written");
    let lines: Vec<serde_json::Value> = jsonl_text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 24);
    let stream = lines
        .iter()
        .find(|l| l["step"] == "outline")
        .expect("an outline request");
    for key in [
        "step",
        "vu",
        "start_ms",
        "ttft_ms",
        "e2e_ms",
        "output_tokens",
        "status",
        "error",
    ] {
        assert!(stream.get(key).is_some(), "missing {key} in {stream}");
    }
    assert_eq!(stream["status"], 200);
    assert_eq!(stream["output_tokens"], 12);
    assert!(stream["ttft_ms"].as_f64().expect("ttft") >= 20.0);
    assert!(stream["error"].is_null());

    for (what, text) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("result", &result_text),
        ("jsonl", &jsonl_text),
    ] {
        assert!(
            !text.contains(secret_a) && !text.contains(secret_b),
            "a token leaked into {what}"
        );
    }
}

#[test]
fn wrong_tokens_are_counted_as_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(dir.path(), "good.csv", "access_token\nright-token\n");
    let bad = write(dir.path(), "bad.csv", "wrong-token\n");
    let mock = spawn_mock(&["--tokens", &good]);
    let result = dir.path().join("r.json").display().to_string();
    let (code, stdout, stderr) = run(&[
        "run",
        "-s",
        "openai-chat",
        "-t",
        &mock.url,
        "--tokens",
        &bad,
        "-c",
        "1",
        "--requests",
        "3",
        "--warmup",
        "0s",
        "-o",
        &result,
    ]);
    // Nothing succeeded: the result is written, the end says why, exit 2.
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.contains("http_401×3"), "{stdout}");
    assert!(stderr.contains("every request failed"), "{stderr}");
    assert!(
        stderr.contains("mostly `http_401`") && stderr.contains("HTTP 401:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong-token"),
        "the token is redacted: {stderr}"
    );
    let r = flora_gate::result::RunResult::read(std::path::Path::new(&result)).expect("written");
    assert_eq!(r.error_examples.len(), 3);
}

#[test]
fn dead_target_exits_2_with_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = write(dir.path(), "t.csv", "tok\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let (code, _, stderr) = run(&[
        "run",
        "-s",
        "openai-chat",
        "-t",
        &format!("http://127.0.0.1:{port}"),
        "--tokens",
        &tokens,
        "-d",
        "2s",
        "-o",
        &dir.path().join("r.json").display().to_string(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("error: cannot connect"), "{stderr}");
    assert!(
        stderr.contains("hint:") && stderr.contains("--target"),
        "{stderr}"
    );
}

#[test]
fn bad_inputs_name_the_file_and_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = write(dir.path(), "t.csv", "user_id,access_token\nu1,\n");
    let (code, _, stderr) = run(&[
        "run",
        "-s",
        "novel",
        "-t",
        "http://127.0.0.1:9",
        "--tokens",
        &tokens,
        "-d",
        "2s",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("t.csv") && stderr.contains("line 2"),
        "{stderr}"
    );

    let sc = write(
        dir.path(),
        "bad.toml",
        "name = \"x\"\n[load]\nconcurrency = -1\n[[steps]]\nname = \"a\"\npath = \"/\"\n",
    );
    let (code, _, stderr) = run(&["run", "-s", &sc, "-t", "http://127.0.0.1:9", "-d", "2s"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("line 3"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["run", "-s", "no-such-scenario", "-d", "2s"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no-such-scenario") && stderr.contains("openai-chat"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["run", "-s", "novel", "--tokens", &tokens, "-d", "soon"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--duration"), "{stderr}");

    let good_tokens = write(dir.path(), "good.csv", "tok\n");
    let (code, _, stderr) = run(&[
        "run",
        "-s",
        "novel",
        "--tokens",
        &good_tokens,
        "--requests",
        "200000000",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--requests") && stderr.contains("100000000"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["mock", "--error-rate", "500=2"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--error-rate"), "{stderr}");
}

#[test]
fn demo_runs_with_nothing_set_up() {
    let (code, stdout, stderr) = run(&["demo", "--duration", "3s"]);
    assert_eq!(code, 0, "{stderr}");
    for step in [
        "create_book",
        "outline",
        "draft",
        "continue",
        "expand",
        "summarize",
        "workflow",
    ] {
        assert!(stdout.contains(step), "{step} missing:\n{stdout}");
    }
    assert!(stdout.contains("flora-gate: **"), "{stdout}");
}

fn run_novel(mock: &MockProcess, tokens: &str, out: &str, concurrency: &str) {
    let (code, _, stderr) = run(&[
        "run",
        "-s",
        "novel",
        "-t",
        &mock.url,
        "--tokens",
        tokens,
        "-c",
        concurrency,
        "--requests",
        "36",
        "--warmup",
        "0s",
        "-o",
        out,
    ]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn baseline_compare_and_report_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).display().to_string();
    let tokens = write(dir.path(), "t.csv", "tok-a\ntok-b\n");
    let fast = spawn_mock(&["--jitter-ms", "1"]);
    for i in 0..3 {
        run_novel(&fast, &tokens, &p(&format!("b{i}.json")), "2");
    }
    run_novel(&fast, &tokens, &p("same.json"), "2");
    run_novel(&fast, &tokens, &p("other-concurrency.json"), "3");
    drop(fast);
    let slow = spawn_mock(&["--jitter-ms", "1", "--slowdown", "1.5"]);
    run_novel(&slow, &tokens, &p("slow.json"), "2");
    drop(slow);

    let (code, _, stderr) = run(&[
        "baseline",
        "refresh",
        "-o",
        &p("baseline.json"),
        &p("b0.json"),
        &p("b1.json"),
        &p("b2.json"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("baseline of 3 run(s)"), "{stderr}");

    // The same setup passes. A wall-clock A/A run on a busy machine can
    // land outside the interval by chance: as `gate --confirm` does, a
    // failing run is measured again (twice at most) before it counts.
    let compare_same = || {
        run(&[
            "compare",
            "-b",
            &p("baseline.json"),
            "-r",
            &p("same.json"),
            "-o",
            &p("v.json"),
        ])
    };
    let (mut code, mut stdout, mut stderr) = compare_same();
    for _ in 0..2 {
        if code == 0 {
            break;
        }
        let fast = spawn_mock(&["--jitter-ms", "1"]);
        run_novel(&fast, &tokens, &p("same.json"), "2");
        drop(fast);
        (code, stdout, stderr) = compare_same();
    }
    assert_eq!(code, 0, "same setup must not fail:\n{stdout}\n{stderr}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("v.json")).expect("verdict"))
            .expect("json");
    assert_eq!(v["kind"], "flora-gate/verdict");

    let (code, stdout, _) = run(&["compare", "-b", &p("baseline.json"), "-r", &p("slow.json")]);
    assert_eq!(code, 1, "a 50% slowdown fails:\n{stdout}");
    assert!(
        stdout.contains("flora-gate: FAIL") && stdout.contains("TTFT p50"),
        "{stdout}"
    );

    // A looser margin on the command line turns the TTFT failure off.
    let (code, stdout, _) = run(&[
        "compare",
        "-b",
        &p("baseline.json"),
        "-r",
        &p("slow.json"),
        "--metric",
        "ttft_p50",
        "--margin",
        "0.9",
    ]);
    assert_eq!(code, 0, "{stdout}");

    let (code, _, stderr) = run(&[
        "compare",
        "-b",
        &p("baseline.json"),
        "-r",
        &p("other-concurrency.json"),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("concurrency 3 differs") && stderr.contains("--force"),
        "{stderr}"
    );
    let (code, stdout, _) = run(&[
        "compare",
        "-b",
        &p("baseline.json"),
        "-r",
        &p("other-concurrency.json"),
        "--force",
    ]);
    assert_ne!(code, 2, "{stdout}");
    assert!(
        stdout.contains("--force"),
        "the note says it was forced: {stdout}"
    );

    let (code, md, _) = run(&[
        "report",
        "-r",
        &p("slow.json"),
        "--verdict",
        &p("v.json"),
        "--format",
        "markdown",
    ]);
    assert_eq!(code, 0);
    assert!(md.starts_with("## ✅ flora-gate: **PASS**"), "{md}");
    let (code, md, _) = run(&["report", "-r", &p("slow.json"), "-b", &p("baseline.json")]);
    assert_eq!(code, 0, "report renders, whatever the verdict");
    assert!(
        md.starts_with("## ❌ flora-gate: **FAIL**") && md.contains("```mermaid"),
        "{md}"
    );
    let (code, json, _) = run(&["report", "-r", &p("same.json"), "--format", "json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&json).expect("json report");
    assert!(j["verdict"].is_null());
    let (code, _, _) = run(&[
        "report",
        "-r",
        &p("same.json"),
        "--format",
        "text",
        "-o",
        &p("r.txt"),
    ]);
    assert_eq!(code, 0);
    assert!(std::fs::read_to_string(p("r.txt"))
        .expect("written")
        .contains("per step"));

    // Bad files are named.
    std::fs::write(
        p("broken.json"),
        "{\"kind\": \"flora-gate/baseline\", \"schema_version\": 0}",
    )
    .expect("write");
    let (code, _, stderr) = run(&["compare", "-b", &p("broken.json"), "-r", &p("same.json")]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("broken.json") && stderr.contains("hint: refresh it"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["compare", "-r", &p("same.json")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--baseline"), "{stderr}");
}

#[test]
fn demo_fails_on_a_planted_slowdown() {
    let (code, stdout, stderr) = run(&["demo", "--duration", "4s", "--slowdown", "1.3"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("## ❌ flora-gate: **FAIL**"), "{stdout}");
}

#[test]
fn committed_baseline_matches_the_bundled_scenario() {
    let b = flora_gate::result::baseline::Baseline::parse(
        flora_gate::commands::BASELINE,
        Path::new("baselines/novel-mock.json"),
    )
    .expect("committed baseline parses");
    let sc = flora_gate::scenario::Scenario::load("novel", &[]).expect("bundled");
    assert_eq!(
        b.provenance.scenario.sha256, sc.sha256,
        "scenarios/novel.toml changed: refresh with `flora-gate baseline refresh --mock --runs 5 --out baselines/novel-mock.json`"
    );
    assert_eq!(b.provenance.concurrency, flora_gate::commands::CONCURRENCY);
    assert!(b.runs.len() >= 5);
}
