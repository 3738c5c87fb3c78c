//! Writers' workflows: many books per writer (kept apart, owned by their
//! writer), long context (the prefill cost fitted), and interrupt and
//! resume (a step that stops reading mid-stream disconnects, its partial
//! text feeds the next step, and a server that keeps generating for a
//! client who left is caught).

use std::time::{Duration, Instant};

use crate::common::{
    flora, get_body, http, read_json, refused, report_md, run_cli, spawn_mock, text,
};

/// Requests the mock is generating now, from its `/metrics`.
fn running(url: &str) -> f64 {
    get_body(&format!("{url}/metrics"))
        .lines()
        .find(|l| l.starts_with("vllm:num_requests_running"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("the running gauge")
}

/// One streamed step cut after 10 of 2,000 tokens (10 s of generation).
fn cut_scenario(dir: &std::path::Path) -> String {
    let p = dir.join("cut.toml");
    std::fs::write(
        &p,
        r#"name = "cut"
[[steps]]
name = "chat"
path = "/v1/chat/completions"
body = '{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
capture_text = "partial"
cancel_after_tokens = 10
"#,
    )
    .expect("write");
    p.display().to_string()
}

fn cut_run(mock_args: &[&str]) -> (crate::common::MockProcess, std::process::Output, Instant) {
    let mut args = vec![
        "--output-tokens",
        "2000",
        "--itl-ms",
        "5",
        "--ttft-ms",
        "10",
    ];
    args.extend_from_slice(mock_args);
    let mock = spawn_mock(&args);
    let dir = tempfile::tempdir().expect("tempdir");
    let (o, out) = run_cli(
        dir.path(),
        &cut_scenario(dir.path()),
        &mock.url,
        2,
        &["-c", "2", "--requests", "6", "--warmup", "0s"],
    );
    let ended = Instant::now();
    let r: serde_json::Value = read_json(&out);
    let step = &r["steps"][0];
    assert_eq!(step["cancelled"], 6, "{step}");
    assert_eq!(step["ok"], 6, "cancelled streams are not errors: {step}");
    assert_eq!(
        step["output_tokens"]["chunks"], 60,
        "10 content events each: {step}"
    );
    (mock, o, ended)
}

#[test]
fn a_cancel_after_ten_tokens_stops_the_mocks_generation_within_200ms() {
    let (mock, o, ended) = cut_run(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let mut idle_at = None;
    while ended.elapsed() < Duration::from_secs(2) {
        if running(&mock.url) == 0.0 {
            idle_at = Some(ended.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let idle_at = idle_at.expect("the mock still generating 2 s after the run");
    assert!(idle_at <= Duration::from_millis(200), "{idle_at:?}");
}

#[test]
fn a_server_that_ignores_the_disconnect_keeps_generating_and_is_caught() {
    let (mock, o, ended) = cut_run(&["--ignore-disconnect"]);
    assert!(o.status.success(), "{}", text(&o));
    // Each cut stream has ~10 s of tokens left, generated for nobody.
    std::thread::sleep(Duration::from_millis(300).saturating_sub(ended.elapsed()));
    assert!(
        running(&mock.url) > 0.0,
        "the fault did not keep generating"
    );

    // The bundled scenario, scraping the mock, names it.
    let dir = tempfile::tempdir().expect("tempdir");
    let bundled = |mock: &crate::common::MockProcess| {
        run_cli(
            dir.path(),
            "interrupt-resume",
            &mock.url,
            4,
            &["-d", "4s", "--warmup", "1s"],
        )
    };
    let args = ["--output-tokens", "200", "--itl-ms", "5", "--ttft-ms", "20"];
    for (fault, expected) in [(true, true), (false, false)] {
        let mut a = args.to_vec();
        if fault {
            a.push("--ignore-disconnect");
        }
        let mock = spawn_mock(&a);
        let (o, out) = bundled(&mock);
        assert!(o.status.success(), "{}", text(&o));
        let md = report_md(&out);
        assert_eq!(
            md.contains("server kept generating after the client disconnected"),
            expected,
            "fault {fault}: {md}"
        );
        // The resumed step streamed from the partial text.
        assert!(md.contains("| continue |"), "{md}");
    }
}

#[test]
fn only_a_streamed_step_can_be_cancelled() {
    let t = refused(
        "name = \"b\"\n[[steps]]\nname = \"j\"\npath = \"/x\"\nresponse = \"json\"\ncancel_after_tokens = 3\n",
        &[],
    );
    assert!(
        t.contains("cancel_after_tokens") && t.contains("streamed step"),
        "{t}"
    );
}

#[test]
fn the_prefill_cost_is_fitted_within_five_percent_over_a_1k_to_16k_sweep() {
    // 20 µs a character, with ±2 ms of jitter on every delay; each chapter
    // streams ~800 characters back into the story so far, which grows to
    // its 16,000-character cap.
    let mock = spawn_mock(&[
        "--prefill-us-per-char",
        "20",
        "--ttft-ms",
        "10",
        "--itl-ms",
        "0",
        "--output-tokens",
        "400",
        "--jitter-ms",
        "2",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (o, out) = run_cli(
        dir.path(),
        "long-context",
        &mock.url,
        1,
        &["-c", "1", "--requests", "75"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = read_json(&out);
    for step in ["continue", "summarize"] {
        let s = r["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["name"] == step)
            .expect(step);
        let fit = &s["prefill"];
        let slope = fit["slope"].as_f64().expect("slope"); // ms per character
        let r2 = fit["r2"].as_f64().expect("r2");
        assert!((slope / 0.020 - 1.0).abs() < 0.05, "{step}: {fit}");
        assert!(r2 > 0.98, "{step}: {fit}");
        assert!(fit["min_x"].as_f64().expect("min") < 1_100.0, "{fit}");
        assert!(fit["max_x"].as_f64().expect("max") > 16_000.0, "{fit}");
        // The mock counts two prompt tokens for three characters.
        let per_char = s["prompt_tokens_per_char"].as_f64().expect("calibration");
        assert!((per_char - 2.0 / 3.0).abs() < 0.01, "{per_char}");
    }
    let md = report_md(&out);
    assert!(md.contains("### TTFT against prompt length"), "{md}");
    // 20 ms per 1,000 characters is 30 ms per 1,000 tokens at 2/3 token a
    // char; the printed figure is the fit's, so within the fit's 5%.
    let per_1k_tokens = md
        .lines()
        .find(|l| l.starts_with("| continue |") && l.contains("tokens a char"))
        .and_then(|l| l.split('|').nth(6))
        .and_then(|cell| cell.trim().split(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no per-token figure in {md}"));
    assert!((per_1k_tokens / 30.0 - 1.0).abs() < 0.05, "{md}");
}

#[test]
fn every_book_of_every_writer_is_created_and_walked_in_order_by_its_owner_only() {
    let mock = spawn_mock(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "8"]);
    let dir = tempfile::tempdir().expect("tempdir");
    // 2 writers × 2 iterations × 3 books × 6 steps.
    let (o, out) = run_cli(
        dir.path(),
        "multi-book",
        &mock.url,
        2,
        // In step: the 72 requests are shared, so each writer does its 36.
        &[
            "-c",
            "2",
            "--requests",
            "72",
            "--warmup",
            "0s",
            "--start-together",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = read_json(&out);
    assert_eq!(r["totals"]["requests"], 72, "{}", r["totals"]);
    assert_eq!(r["totals"]["failed"], 0, "{}", r["totals"]);
    let books: Vec<serde_json::Value> =
        serde_json::from_str(&get_body(&format!("{}/_mock/books", mock.url))).expect("JSON");
    assert_eq!(books.len(), 12, "{books:?}");
    let order = [
        "create_book",
        "outline",
        "draft",
        "continue",
        "expand",
        "summarize",
    ];
    for b in &books {
        assert_eq!(b["steps"], serde_json::json!(order), "{b}");
    }
    let owners: std::collections::BTreeSet<_> =
        books.iter().map(|b| b["owner"].to_string()).collect();
    assert_eq!(owners.len(), 2, "each writer owns their books");
    // Another writer's token gets 404 for a book it does not own.
    let resp = http(
        "POST",
        &format!("{}/api/v1/books/bk_1/outline", mock.url),
        &[
            ("Authorization", "Bearer someone-else"),
            ("Content-Type", "application/json"),
        ],
        "{\"stream\": true}",
    );
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

#[test]
fn books_per_user_is_bounded() {
    let t = refused(
        "name = \"b\"\nbooks_per_user = 99\n[[steps]]\nname = \"s\"\npath = \"/x\"\n",
        &[],
    );
    assert!(
        t.contains("books_per_user") && t.contains("between 1 and 32"),
        "{t}"
    );
}

#[test]
fn a_resumed_stream_goes_on_at_the_break_and_a_replaying_server_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = [
        "--output-tokens",
        "50",
        "--itl-ms",
        "2",
        "--ttft-ms",
        "10",
        "--event-ids",
    ];
    for replays in [false, true] {
        let mut args = base.to_vec();
        if replays {
            args.push("--resume-replays");
        }
        let mock = spawn_mock(&args);
        let (o, out) = run_cli(
            dir.path(),
            "interrupt-resume",
            &mock.url,
            2,
            &["-c", "2", "-d", "3s", "--warmup", "0s"],
        );
        assert!(o.status.success(), "{}", text(&o));
        let r: serde_json::Value = read_json(&out);
        let expand = r["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["name"] == "expand")
            .expect("expand");
        let resume = &expand["resume"];
        let resumed = resume["resumed"].as_u64().expect("resumed");
        assert!(resumed >= 4, "{resume}");
        assert_eq!(resume["lost"], 0, "{resume}");
        // The whole answer arrived: 5 events before the break, 45 after
        // (plus the 5 replayed by a server that starts over).
        let chunks = expand["output_tokens"]["chunks"].as_u64().expect("chunks");
        let md = report_md(&out);
        if replays {
            assert_eq!(resume["duplicates"].as_u64(), Some(5 * resumed), "{resume}");
            assert_eq!(chunks, 55 * resumed, "{expand}");
            assert!(
                md.contains("resumed streams do not go on where they broke"),
                "{md}"
            );
        } else {
            assert_eq!(resume["duplicates"], 0, "{resume}");
            assert_eq!(chunks, 50 * resumed, "{expand}");
            assert!(
                resume["ttft_p50_ms"].as_f64().expect("ttft") > 5.0,
                "{resume}"
            );
            assert!(!md.contains("do not go on where they broke"), "{md}");
        }
        assert!(md.contains("### Resumed streams"), "{md}");
    }
}

#[test]
fn a_length_sweep_at_one_user_gives_the_prefill_curve() {
    let mock = spawn_mock(&[
        "--prefill-us-per-char",
        "20",
        "--ttft-ms",
        "10",
        "--itl-ms",
        "1",
        "--output-tokens",
        "8",
        "--jitter-ms",
        "2",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (o, out) = run_cli(
        dir.path(),
        "openai-chat",
        &mock.url,
        1,
        &[
            "-c",
            "1",
            "--requests",
            "40",
            "--warmup",
            "0s",
            "--sweep",
            "prompt_chars=1000,2000,4000,8000,16000",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = read_json(&out);
    let fit = &r["steps"][0]["prefill"];
    let slope = fit["slope"].as_f64().expect("slope");
    assert!((slope / 0.020 - 1.0).abs() < 0.05, "{fit}");
    assert!(fit["r2"].as_f64().expect("r2") > 0.98, "{fit}");
    // The body wraps the prompt in ~230 characters of JSON.
    assert!(fit["min_x"].as_f64().expect("min") < 1_300.0, "{fit}");
    assert!(fit["max_x"].as_f64().expect("max") > 16_000.0, "{fit}");
    assert_eq!(
        r["provenance"]["sweep"], "prompt_chars=1000,2000,4000,8000,16000",
        "{}",
        r["provenance"]
    );
    let md = report_md(&out);
    assert!(
        md.contains("--sweep prompt_chars=1000,2000,4000,8000,16000"),
        "reproduce: {md}"
    );
    // A sweep of one value, or no key, is refused.
    let o = flora(&[
        "run",
        "-s",
        "openai-chat",
        "-t",
        &mock.url,
        "--sweep",
        "prompt_chars=1000",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--sweep"), "{}", text(&o));
}
