//! The GitHub side against a fake GitHub REST API on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use flora_gate::github::api::{Api, RetryPolicy};
use flora_gate::github::comment::{self, CommentOutcome};
use serde_json::{json, Value};

use super::fakegh::*;

#[tokio::test]
async fn create_then_update_then_leave_alone() {
    let (url, s) = fake().await;
    let api = api(&url);
    let c1 = comment::upsert(&api, sticky(7, "default"), "report one")
        .await
        .expect("created");
    assert!(matches!(c1, CommentOutcome::Created(_)), "{c1:?}");
    let c2 = comment::upsert(&api, sticky(7, "default"), "report two")
        .await
        .expect("updated");
    assert!(matches!(c2, CommentOutcome::Updated(_)), "{c2:?}");
    assert_eq!(c1.url(), c2.url());
    let before = writes(&s);
    let c3 = comment::upsert(&api, sticky(7, "default"), "report two")
        .await
        .expect("unchanged");
    assert!(matches!(c3, CommentOutcome::Unchanged(_)), "{c3:?}");
    assert_eq!(writes(&s), before, "no write for an unchanged body");
    let f = s.lock().expect("lock");
    assert_eq!(f.comments.len(), 1);
    assert!(
        f.comments[0].2.starts_with("<!-- flora-gate:default -->\n")
            && f.comments[0].2.contains("report two")
    );
}

#[tokio::test]
async fn marker_on_page_two_is_found() {
    let (url, s) = fake().await;
    {
        let mut f = s.lock().expect("lock");
        for i in 0..100 {
            f.comments
                .push((7, i + 1, format!("chatter {i}"), "someone".into()));
        }
        f.comments.push((
            7,
            500,
            "<!-- flora-gate:default -->\nold report\n".into(),
            BOT.into(),
        ));
    }
    let c = comment::upsert(&api(&url), sticky(7, "default"), "new report")
        .await
        .expect("updated");
    assert_eq!(
        c,
        CommentOutcome::Updated("https://github.test/c/500".into())
    );
    let f = s.lock().expect("lock");
    assert!(
        f.log.contains(&"GET comments page 2".to_string()),
        "{:?}",
        f.log
    );
    assert_eq!(f.comments.len(), 101, "no second comment");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let (url, s) = fake().await;
    s.lock().expect("lock").script.extend([
        (429, Some("0"), "rate limited"),
        (502, None, "bad gateway"),
        (403, Some("0"), "You have exceeded a secondary rate limit"),
    ]);
    let c = comment::upsert(&api(&url), sticky(7, "default"), "report")
        .await
        .expect("eventually created");
    assert!(matches!(c, CommentOutcome::Created(_)));
    let f = s.lock().expect("lock");
    assert_eq!(
        f.log
            .iter()
            .filter(|l| l.starts_with("GET comments"))
            .count(),
        4,
        "{:?}",
        f.log
    );
}

#[tokio::test]
async fn permission_errors_name_the_permissions_block() {
    let (url, s) = fake().await;
    s.lock().expect("lock").forbid_writes = true;
    let err = comment::upsert(&api(&url), sticky(7, "default"), "report")
        .await
        .expect_err("forbidden");
    assert!(err.to_string().contains("403"), "{err}");
    let hint = err.hint().expect("hint");
    assert!(
        hint.contains("permissions:") && hint.contains("pull-requests: write"),
        "{hint}"
    );
}

#[tokio::test]
async fn another_comment_id_makes_a_second_comment() {
    let (url, s) = fake().await;
    let api = api(&url);
    comment::upsert(&api, sticky(7, "novel"), "a")
        .await
        .expect("first");
    let c = comment::upsert(&api, sticky(7, "chat"), "b")
        .await
        .expect("second");
    assert!(matches!(c, CommentOutcome::Created(_)));
    assert_eq!(s.lock().expect("lock").comments.len(), 2);
}

const BIN: &str = env!("CARGO_BIN_EXE_flora-gate");

fn event(dir: &std::path::Path, fork: bool) -> String {
    let head = if fork { "someone/r" } else { "o/r" };
    let p = dir.join("event.json");
    std::fs::write(
        &p,
        json!({"pull_request": {"number": 7, "head": {"repo": {"full_name": head}}, "base": {"repo": {"full_name": "o/r"}}}}).to_string(),
    )
    .expect("write");
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_pull_requests_get_no_comment_attempt() {
    let (url, s) = fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("report.md");
    std::fs::write(&body, "report").expect("write");
    let ev = event(dir.path(), true);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["comment", "--body", &body.display().to_string()])
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_EVENT_NAME", "pull_request")
            .env("GITHUB_EVENT_PATH", ev)
            .env("GITHUB_REPOSITORY", "o/r")
            .env("GITHUB_API_URL", url)
            .env("GITHUB_TOKEN", "t")
            .output()
            .expect("runs")
    })
    .await
    .expect("joined");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("::notice"),
        "a notice says why"
    );
    assert!(
        s.lock().expect("lock").log.is_empty(),
        "no request for a fork PR"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_in_actions_writes_summary_outputs_and_comment_and_keeps_its_verdict() {
    let (url, s) = fake().await;
    let mock = flora_gate::mock::start(
        flora_gate::mock::MockConfig {
            ttft: Duration::from_millis(40),
            itl: Duration::from_millis(3),
            output_tokens: 24,
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let tokens = d.join("t.csv");
    std::fs::write(
        &tokens,
        "user_id,access_token\nu1,very-secret-token-1\nu2,very-secret-token-2\n",
    )
    .expect("write");
    let ev = event(&d, false);
    let baseline = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/baseline.json");
    let target = mock.url();
    let run_gate = |script_failures: bool| {
        let (d, ev, url, target, tokens) = (
            d.clone(),
            ev.clone(),
            url.clone(),
            target.clone(),
            tokens.clone(),
        );
        if script_failures {
            s.lock()
                .expect("lock")
                .script
                .extend([(500, None, "down"); 8]);
        }
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(BIN)
                    .args([
                        "gate",
                        "-s",
                        "novel",
                        "-t",
                        &target,
                        "--tokens",
                        &tokens.display().to_string(),
                        "-c",
                        "2",
                        "--requests",
                        "30",
                        "--warmup",
                        "0s",
                    ])
                    .args([
                        "-o",
                        &d.join("result.json").display().to_string(),
                        "-b",
                        baseline,
                    ])
                    .args([
                        "--verdict-out",
                        &d.join("verdict.json").display().to_string(),
                        "--report-out",
                        &d.join("report.md").display().to_string(),
                    ])
                    .env("GITHUB_ACTIONS", "true")
                    .env("GITHUB_EVENT_NAME", "pull_request")
                    .env("GITHUB_EVENT_PATH", ev)
                    .env("GITHUB_REPOSITORY", "o/r")
                    .env("GITHUB_API_URL", url)
                    .env("GITHUB_TOKEN", "gh-token-xyz")
                    .env("GITHUB_STEP_SUMMARY", d.join("summary.md"))
                    .env("GITHUB_OUTPUT", d.join("output.txt"))
                    .env("GITHUB_SERVER_URL", "https://github.test")
                    .env("GITHUB_RUN_ID", "4242")
                    .env("FLORA_GATE_REPORT_ARTIFACT", "flora-gate-report")
                    .output()
                    .expect("runs")
            })
            .await
            .expect("joined")
        }
    };
    let out = run_gate(false).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let verdict: Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("verdict.json")).expect("verdict written"),
    )
    .expect("json");
    let expected = if verdict["verdict"] == "fail" { 1 } else { 0 };
    assert_eq!(out.status.code(), Some(expected), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("::add-mask::very-secret-token-1")
            && stdout.contains("::add-mask::gh-token-xyz")
    );
    assert!(stdout.contains("::group::") && stdout.contains("::endgroup::"));
    let summary = std::fs::read_to_string(d.join("summary.md")).expect("summary");
    assert!(summary.contains("flora-gate: **"), "{summary}");
    // The HTML report is written beside the Markdown and linked from the
    // summary (and so from the comment) at the run's artifacts.
    let html = std::fs::read_to_string(d.join("report.html")).expect("the HTML report");
    assert!(html.starts_with("<!DOCTYPE html>") && !html.contains("very-secret-token"));
    assert!(
        summary.contains(
            "`report.html` in the `flora-gate-report` artifact of [this run](https://github.test/o/r/actions/runs/4242)"
        ),
        "{summary}"
    );
    let outputs = std::fs::read_to_string(d.join("output.txt")).expect("outputs");
    for key in [
        "verdict<<",
        "result<<",
        "report<<",
        "html<<",
        "verdict-file<<",
        "comment-url<<",
    ] {
        assert!(outputs.contains(key), "{key} missing in {outputs}");
    }
    assert!(outputs.contains("https://github.test/c/"), "{outputs}");
    {
        let f = s.lock().expect("lock");
        assert_eq!(f.comments.len(), 1);
        assert!(f.comments[0].2.contains("<!-- flora-gate:default -->"));
        assert!(
            !f.comments[0].2.contains("very-secret-token"),
            "no token in the comment"
        );
    }
    for file in ["result.json", "report.md", "summary.md"] {
        let text = std::fs::read_to_string(d.join(file)).expect("file");
        assert!(!text.contains("very-secret-token"), "token in {file}");
    }

    // The API is down: the gate still writes everything and keeps its
    // verdict (this run's own: a second short run may judge differently).
    let out = run_gate(true).await;
    let verdict: Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("verdict.json")).expect("verdict written"),
    )
    .expect("json");
    let expected = if verdict["verdict"] == "fail" { 1 } else { 0 };
    assert_eq!(
        out.status.code(),
        Some(expected),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("::warning title=flora-gate comment::"));
    mock.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capacity_gate_in_actions_comments_how_capacity_moved() {
    let (url, s) = fake().await;
    let mock = flora_gate::mock::start(
        flora_gate::mock::MockConfig {
            ttft: Duration::from_millis(20),
            itl: Duration::from_millis(2),
            output_tokens: 8,
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let tokens = d.join("t.csv");
    std::fs::write(
        &tokens,
        "user_id,access_token\nu1,very-secret-token-1\nu2,very-secret-token-2\n",
    )
    .expect("write");
    // The baseline held the most it tried (4 users); a quick search of 2
    // and 4 users holds them again.
    let baseline = d.join("capacity.json");
    std::fs::write(
        &baseline,
        json!({
            "schema_version": 2, "kind": "flora-gate/capacity",
            "scenario": {"name": "openai-chat", "origin": "bundled:openai-chat", "sha256": "0".repeat(64)},
            "target": "http://127.0.0.1:1",
            "objectives": [{"metric": "ttft_p90", "limit": 1000.0}],
            "search": {"by": "users", "start": 2.0, "max": 4.0, "tolerance": 0.1,
                       "probe_s": 1.0, "warmup_s": 0.0, "max_extensions": 1},
            "capacity": {"c_star": 4.0, "first_fail": null, "bracket_inconclusive": false, "binding": null},
            "probes": [], "elapsed_s": 2.0, "requests": 100
        })
        .to_string(),
    )
    .expect("write");
    let ev = event(&d, false);
    let target = mock.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["gate", "-s", "openai-chat", "-t", &target, "--tokens"])
            .arg(&tokens)
            .arg("-b")
            .arg(&baseline)
            .arg("-o")
            .arg(d.join("cap.json"))
            .arg("--verdict-out")
            .arg(d.join("verdict.json"))
            .arg("--report-out")
            .arg(d.join("report.md"))
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_EVENT_NAME", "pull_request")
            .env("GITHUB_EVENT_PATH", ev)
            .env("GITHUB_REPOSITORY", "o/r")
            .env("GITHUB_API_URL", url)
            .env("GITHUB_TOKEN", "gh-token-xyz")
            .env("GITHUB_STEP_SUMMARY", d.join("summary.md"))
            .env("GITHUB_OUTPUT", d.join("output.txt"))
            .output()
            .expect("runs")
    })
    .await
    .expect("joined");
    let d = dir.path();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("::add-mask::very-secret-token-1"),
        "{stdout}"
    );
    assert!(stdout.contains("::group::") && stdout.contains("::endgroup::"));
    let headline = "capacity ≥ 4 → ≥ 4 users at TTFT p90 ≤ 1000 ms";
    let summary = std::fs::read_to_string(d.join("summary.md")).expect("summary");
    assert!(summary.contains(headline), "{summary}");
    let outputs = std::fs::read_to_string(d.join("output.txt")).expect("outputs");
    assert!(
        outputs.contains("verdict<<") && outputs.contains("pass"),
        "{outputs}"
    );
    {
        let f = s.lock().expect("lock");
        assert_eq!(f.comments.len(), 1);
        assert!(f.comments[0].2.contains("<!-- flora-gate:default -->"));
        assert!(f.comments[0].2.contains(headline), "{}", f.comments[0].2);
    }
    assert!(std::fs::read_to_string(d.join("report.html"))
        .expect("the HTML report")
        .contains("<h2>Probes</h2>"));
    for file in [
        "cap.json",
        "report.md",
        "summary.md",
        "verdict.json",
        "report.html",
    ] {
        let text = std::fs::read_to_string(d.join(file)).expect("file");
        assert!(!text.contains("very-secret-token"), "token in {file}");
    }
    mock.stop().await;
}

#[tokio::test]
async fn baseline_is_proposed_as_a_pull_request() {
    let (url, s) = fake().await;
    let p = flora_gate::github::propose::Proposal {
        repo: "o/r",
        base: "main",
        branch: "flora-gate/baseline-refresh",
        path: "baselines/novel.json",
        content: b"{}",
        title: "Refresh the flora-gate baseline",
        body: "numbers",
    };
    let pr = flora_gate::github::propose::propose(&api(&url), &p)
        .await
        .expect("proposed");
    assert_eq!(pr, "https://github.test/pull/42");
    let again = flora_gate::github::propose::propose(&api(&url), &p)
        .await
        .expect("reused");
    assert_eq!(again, pr);
    let f = s.lock().expect("lock");
    assert_eq!(
        f.log.iter().filter(|l| l.starts_with("POST pull")).count(),
        1,
        "{:?}",
        f.log
    );
    assert_eq!(
        f.files[0],
        ("baselines/novel.json".to_string(), "e30=".to_string())
    );
}

#[tokio::test]
async fn comments_by_anyone_else_are_never_edited() {
    let (url, s) = fake().await;
    let mark = "<!-- flora-gate:default -->";
    {
        let mut f = s.lock().expect("lock");
        // Another participant plants the marker, at the start and quoted.
        f.comments.push((
            7,
            1,
            format!("{mark}\nfake all-green report"),
            "mallory".into(),
        ));
        f.comments
            .push((7, 2, format!("> {mark}\n> quoted from the bot"), BOT.into()));
    }
    let c = comment::upsert(&api(&url), sticky(7, "default"), "real report")
        .await
        .expect("created");
    assert!(matches!(c, CommentOutcome::Created(_)), "{c:?}");
    let f = s.lock().expect("lock");
    assert_eq!(f.comments.len(), 3);
    assert_eq!(f.comments[0].2, format!("{mark}\nfake all-green report"));
    assert!(f.comments[1].2.starts_with("> "));
    assert!(f.comments[2].2.contains("real report") && f.comments[2].3 == BOT);
}

#[tokio::test]
async fn github_errors_never_show_the_token() {
    let (url, s) = fake().await;
    s.lock()
        .expect("lock")
        .script
        .extend([(422, None, "Bad credentials for token test-token in header"); 1]);
    let err = comment::upsert(&api(&url), sticky(7, "default"), "report")
        .await
        .expect_err("refused");
    let text = format!("{err} {}", err.hint().unwrap_or_default());
    assert!(text.contains("422"), "{text}");
    assert!(!text.contains("test-token"), "{text}");
}

/// A server that accepts connections and never answers.
async fn silent() -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}/api/v3")
}

#[tokio::test]
async fn a_silent_github_times_out() {
    let url = silent().await;
    let api = Api::new(
        &url,
        "t",
        RetryPolicy {
            attempts: 2,
            base: Duration::from_millis(10),
            max_wait: Duration::from_secs(1),
            call_timeout: Duration::from_millis(300),
        },
    )
    .expect("client");
    let started = std::time::Instant::now();
    let err = comment::upsert(&api, sticky(7, "default"), "report")
        .await
        .expect_err("no answer");
    assert!(err.to_string().contains("no answer"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_a_silent_comment_ends_the_gate_with_its_verdict() {
    let url = silent().await;
    let mock = flora_gate::mock::start(
        flora_gate::mock::MockConfig {
            ttft: Duration::from_millis(20),
            itl: Duration::from_millis(2),
            output_tokens: 12,
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let tokens = d.join("t.csv");
    std::fs::write(&tokens, "user_id,access_token\nu1,tok-1\n").expect("write");
    let ev = event(&d, false);
    let baseline = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/baseline.json");
    let child = std::process::Command::new(BIN)
        .args(["gate", "-s", "novel", "-t", &mock.url()])
        .args(["--tokens", &tokens.display().to_string(), "-c", "1"])
        .args([
            "--requests",
            "12",
            "--warmup",
            "0s",
            "-b",
            baseline,
            "--force",
        ])
        .args(["-o", &d.join("result.json").display().to_string()])
        .args([
            "--verdict-out",
            &d.join("verdict.json").display().to_string(),
        ])
        .args(["--report-out", &d.join("report.md").display().to_string()])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", ev)
        .env("GITHUB_REPOSITORY", "o/r")
        .env("GITHUB_API_URL", url)
        .env("GITHUB_TOKEN", "gh-token")
        .env("GITHUB_OUTPUT", d.join("output.txt"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let pid = child.id().to_string();
    // Wait until the files are written: the gate is then in its comment phase.
    let verdict = d.join("verdict.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !verdict.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("joined")
        .expect("exits");
    mock.stop().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&verdict).expect("verdict")).expect("json");
    let expected = if v["verdict"] == "fail" { 1 } else { 0 };
    assert_eq!(out.status.code(), Some(expected), "{stderr}");
    let outputs = std::fs::read_to_string(d.join("output.txt")).expect("outputs written");
    assert!(outputs.contains("verdict<<"), "{outputs}");
    assert!(stderr.contains("signal"), "{stderr}");
}

/// The `run:` script of the step named `step` in a workflow file.
fn step_script(workflow: &str, step: &str) -> String {
    let text = std::fs::read_to_string(format!(
        "{}/.github/workflows/{workflow}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("workflow");
    let from = text
        .find(&format!("- name: {step}"))
        .expect("the step is in the workflow");
    let rest = &text[from..];
    let run = rest.find("run: |").expect("a run block") + "run: |".len();
    let mut lines = rest[run..].lines().skip(1);
    let first = lines.next().expect("a script");
    let indent = first.len() - first.trim_start().len();
    let mut script = format!("{}\n", &first[indent..]);
    for l in lines {
        if !l.trim().is_empty() && l.len() - l.trim_start().len() < indent {
            break;
        }
        script.push_str(l.get(indent..).unwrap_or(""));
        script.push('\n');
    }
    script
}

const RUN_SHA: &str = "1111111111111111111111111111111111111111";

/// perf-comment.yml's "Post the comment" step, run as the workflow runs
/// it: in a directory holding the fork's artifact, with the
/// `workflow_run` event of the fork's PR #7 (a fork's PRs are not listed
/// in the event) and `flora-gate` on the PATH.
async fn post_as_the_workflow(
    url: String,
    artifact_pr: &str,
    report: &str,
    head_sha: &str,
) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("comment")).expect("mkdir");
    std::fs::write(dir.path().join("comment/pr-number"), artifact_pr).expect("write");
    std::fs::write(dir.path().join("comment/report.md"), report).expect("write");
    let ev = dir.path().join("event.json");
    std::fs::write(
        &ev,
        json!({"action": "completed", "workflow_run": {
            "id": 99, "event": "pull_request", "head_sha": head_sha, "head_branch": "feature",
            "head_repository": {"full_name": "forker/r", "owner": {"login": "forker"}},
            "pull_requests": []
        }})
        .to_string(),
    )
    .expect("write");
    let script = step_script("perf-comment.yml", "Post the comment");
    let bin_dir = std::path::Path::new(BIN)
        .parent()
        .expect("dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("bash")
            .args(["-e", "-c", &script])
            .current_dir(dir.path())
            .env("PATH", path)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_EVENT_NAME", "workflow_run")
            .env("GITHUB_EVENT_PATH", ev)
            .env("GITHUB_REPOSITORY", "o/r")
            .env("GITHUB_API_URL", url)
            .env("GITHUB_TOKEN", "t")
            .env_remove("GITHUB_OUTPUT")
            .output()
            .expect("runs");
        drop(dir);
        out
    })
    .await
    .expect("joined")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fork_workflow_comments_only_on_the_runs_own_pull_request_and_as_text() {
    let (url, s) = fake().await;
    {
        let mut f = s.lock().expect("lock");
        f.comments.push((
            42,
            500,
            format!(
                "{}\n## ❌ flora-gate: **FAIL**",
                comment::marker("self-test")
            ),
            BOT.into(),
        ));
        f.pulls = vec![
            json!({"number": 7, "head": {"sha": RUN_SHA, "label": "forker:feature"}}),
            json!({"number": 42, "head": {"sha": "2222222222222222222222222222222222222222", "label": "o:main"}}),
        ];
    }
    let forged = format!(
        "## ✅ flora-gate: **PASS** [details](https://evil.example/) ![px](http://evil.example/px.png) @octocat #1337\n````\n{}\n",
        crate::markdown::HOSTILE
    );
    let out = post_as_the_workflow(url.clone(), "42", &forged, RUN_SHA).await;
    assert!(out.status.success(), "{}", crate::common::text(&out));
    let comments = s.lock().expect("lock").comments.clone();
    let on_42: Vec<_> = comments.iter().filter(|c| c.0 == 42).collect();
    assert_eq!(on_42.len(), 1, "{comments:?}");
    assert!(
        on_42[0].2.contains("**FAIL**"),
        "PR #42's comment is untouched: {comments:?}"
    );
    let on_7: Vec<_> = comments.iter().filter(|c| c.0 == 7).collect();
    assert_eq!(
        on_7.len(),
        1,
        "the run's own PR gets the comment: {comments:?}"
    );
    let body = &on_7[0].2;
    assert!(body.starts_with(&comment::marker("self-test")), "{body}");
    assert!(
        body.contains("✅ flora-gate: **PASS**"),
        "the report is shown: {body}"
    );
    let live = crate::markdown::live_foreign_markup(body);
    assert!(
        live.is_empty(),
        "live markup from the artifact: {live:?}\n{body}"
    );
    let strong = pulldown_cmark::Parser::new(body)
        .filter(|e| matches!(e, pulldown_cmark::Event::Start(pulldown_cmark::Tag::Strong)))
        .count();
    assert_eq!(strong, 1, "only flora-gate's own note is bold: {body}");

    // A run whose commit is no open PR's head comments nowhere.
    let before = writes(&s);
    let out = post_as_the_workflow(
        url,
        "7",
        &forged,
        "3333333333333333333333333333333333333333",
    )
    .await;
    assert!(out.status.success(), "{}", crate::common::text(&out));
    assert_eq!(writes(&s), before, "no comment for a run of no open PR");
    assert!(
        crate::common::text(&out).contains("no comment"),
        "{}",
        crate::common::text(&out)
    );
}
