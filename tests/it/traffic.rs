//! Traffic from real usage, end to end on the mock: lengths drawn from
//! each asked distribution (a KS test on what was sent), shared prefixes
//! against the mock's prefix cache, a writer's books as parallel streams,
//! a run's request log converted and replayed, and bad traces refused.

use std::collections::BTreeMap;
use std::path::Path;

use flora_gate::scenario::lengths::{ks_critical_01, ks_statistic, Dist};

use crate::common::{flora, read_json, report_md, run_cli, spawn_mock, text};

/// A result validates against the schema (its traffic, lengths and prefixes included).
fn valid(r: &serde_json::Value) {
    let v = crate::schema::validator();
    let errors: Vec<String> = v
        .iter_errors(r)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// The value of the first sample of the mock's `/metrics` whose line
/// starts with `name`.
fn mock_metric(url: &str, name: &str) -> f64 {
    let body = crate::common::http("GET", &format!("{url}/metrics"), &[], "");
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {body}"))
}

/// The request log's lines.
fn log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("request log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn scenario(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("scenario written");
    p.to_str().expect("utf-8").to_string()
}

const CHAT: &str = r#"path = "/v1/chat/completions"
body = '{"model": "m", "messages": [{"role": "user", "content": {{ prompt | tojson }}}], "max_tokens": {{ max_tokens }}, "stream": true, "stream_options": {"include_usage": true}}'
"#;

#[test]
fn realised_lengths_pass_a_ks_test_against_each_asked_distribution() {
    let server = spawn_mock(&["--ttft-ms", "1", "--itl-ms", "0", "--output-tokens", "2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("lengths.txt"),
        (0..200)
            .map(|i| format!("{}\n", 20 + (i * 53) % 400))
            .collect::<String>(),
    )
    .expect("lengths written");
    let sc = format!(
        r#"name = "lengths"
[[steps]]
name = "a"
prompt_length = "uniform(100, 400)"
prompt_unit = "chars"
output_length = "normal(300, 60)"
{CHAT}
[[steps]]
name = "b"
prompt_length = "lognormal(250, 0.5)"
prompt_unit = "chars"
output_length = "empirical(lengths.txt)"
{CHAT}"#
    );
    let path = scenario(dir.path(), "lengths.toml", &sc);
    let requests = dir.path().join("q.jsonl");
    let (o, out) = run_cli(
        dir.path(),
        &path,
        &server.url,
        1,
        &[
            "-c",
            "8",
            "--requests",
            "1200",
            "--warmup",
            "0s",
            "--requests-out",
            requests.to_str().expect("utf-8"),
        ],
    );
    assert!(out.exists(), "{}", text(&o));
    let asked = BTreeMap::from([
        (("a", "prompt_chars"), "uniform(100, 400)"),
        (("a", "max_tokens"), "normal(300, 60)"),
        (("b", "prompt_chars"), "lognormal(250, 0.5)"),
        (("b", "max_tokens"), "empirical(lengths.txt)"),
    ]);
    let lines = log(&requests);
    for ((step, field), spec) in asked {
        let d = Dist::parse(spec, Some(dir.path())).expect("asked distribution");
        let xs: Vec<f64> = lines
            .iter()
            .filter(|l| l["step"] == step)
            .map(|l| l[field].as_f64().expect("a drawn length"))
            .collect();
        assert!(xs.len() >= 400, "{step}: {} requests", xs.len());
        let ks = ks_statistic(&xs, &d);
        assert!(
            ks < ks_critical_01(xs.len()),
            "{step} {field} against {spec}: D = {ks:.4} over {}",
            xs.len()
        );
        // And not against another: the test can tell them apart.
        let other = Dist::parse("uniform(1, 50)", None).expect("other");
        assert!(ks_statistic(&xs, &other) > ks_critical_01(xs.len()));
    }
    // The result and the report carry the realised distributions.
    let r = read_json(&out);
    valid(&r);
    let a = &r["steps"][0]["lengths"];
    assert_eq!(a["asked_prompt"], "uniform(100, 400) characters");
    let p50 = a["prompt_chars"]["p50"].as_f64().expect("p50");
    assert!((200.0..300.0).contains(&p50), "{a}");
    assert!(
        a["prompt_tokens"]["p50"].as_f64().is_some(),
        "the server's own count: {a}"
    );
    let md = report_md(&out);
    assert!(
        md.contains("### Traffic") && md.contains("normal(300, 60) tokens"),
        "{md}"
    );
}

#[test]
fn prompt_lengths_in_tokens_are_calibrated_before_the_run_and_recorded() {
    let server = spawn_mock(&["--ttft-ms", "1", "--itl-ms", "0", "--output-tokens", "2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = format!("name = \"tokens\"\n[[steps]]\nname = \"a\"\nprompt_length = 400\noutput_length = 8\n{CHAT}");
    let path = scenario(dir.path(), "tokens.toml", &sc);
    let requests = dir.path().join("q.jsonl");
    let (o, out) = run_cli(
        dir.path(),
        &path,
        &server.url,
        1,
        &[
            "-c",
            "2",
            "--requests",
            "20",
            "--warmup",
            "0s",
            "--requests-out",
            requests.to_str().expect("utf-8"),
        ],
    );
    let t = text(&o);
    assert!(t.contains("calibrated `a`: 1.50 characters a token"), "{t}");
    let r = read_json(&out);
    let cal = &r["steps"][0]["lengths"]["calibration"];
    assert_eq!(
        cal["chars_per_token"].as_f64().map(|c| (c * 100.0).round()),
        Some(150.0),
        "{cal}"
    );
    assert_eq!(cal["requests"], 4);
    // 400 tokens asked: the server counted 400 for the prompt, plus the
    // template's own.
    for l in log(&requests) {
        let sent = l["prompt_tokens"].as_f64().expect("usage");
        let own = cal["overhead_tokens"].as_f64().expect("overhead");
        assert!((sent - own - 400.0).abs() <= 2.0, "{l}");
    }
    assert!(report_md(&out).contains("--chars-per-token 1.5"));
    // A server without usage cannot calibrate: the error says what to do.
    let quiet = spawn_mock(&[
        "--ttft-ms",
        "1",
        "--itl-ms",
        "0",
        "--output-tokens",
        "2",
        "--no-usage",
    ]);
    let (o, _) = run_cli(
        dir.path(),
        &path,
        &quiet.url,
        1,
        &["-c", "1", "--requests", "4", "--warmup", "0s"],
    );
    let t = text(&o);
    assert_ne!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("cannot calibrate step `a`") && t.contains("--chars-per-token"),
        "{t}"
    );
    let (o, out) = run_cli(
        dir.path(),
        &path,
        &quiet.url,
        1,
        &[
            "-c",
            "1",
            "--requests",
            "4",
            "--warmup",
            "0s",
            "--chars-per-token",
            "1.2",
        ],
    );
    assert!(out.exists(), "{}", text(&o));
    assert_eq!(
        read_json(&out)["steps"][0]["lengths"]["calibration"]["requests"],
        0
    );
}

#[test]
fn repeated_prefixes_are_cheaper_on_a_prefix_cache_and_its_hit_rate_is_the_mocks() {
    let server = spawn_mock(&[
        "--ttft-ms",
        "5",
        "--itl-ms",
        "0",
        "--output-tokens",
        "2",
        "--prefix-cache",
        "--prefill-us-per-char",
        "100",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = format!(
        "name = \"prefixes\"\n[[steps]]\nname = \"a\"\nprompt_length = 100\nprompt_unit = \"chars\"\noutput_length = 2\nprefix = {{ count = 3, length = 3000, scope = \"shared\" }}\n{CHAT}"
    );
    let path = scenario(dir.path(), "prefixes.toml", &sc);
    let metrics = format!("{}/metrics", server.url);
    let (o, out) = run_cli(
        dir.path(),
        &path,
        &server.url,
        1,
        &[
            "-c",
            "2",
            "--requests",
            "60",
            "--warmup",
            "0s",
            "--server-metrics",
            &metrics,
            "--server-metrics-interval",
            "200ms",
        ],
    );
    assert!(out.exists(), "{}", text(&o));
    let r = read_json(&out);
    valid(&r);
    let p = &r["steps"][0]["prefix"];
    assert_eq!(p["first"], 3, "three prefixes, each first once: {p}");
    assert_eq!(p["repeated"], 57, "{p}");
    let first = p["ttft_first_p50_ms"].as_f64().expect("first");
    let repeated = p["ttft_repeated_p50_ms"].as_f64().expect("repeated");
    // 3,000 characters at 100 µs: 300 ms of prefill the cache saves.
    assert!(first > 250.0, "{p}");
    assert!(repeated < first / 3.0, "{p}");
    // The hit rate the report gives is the mock's own, from its counters.
    let counter = |name: &str| mock_metric(&server.url, name);
    let mock_rate =
        counter("vllm:prefix_cache_hits_total") / counter("vllm:prefix_cache_queries_total");
    let md = report_md(&out);
    let said = md
        .split("prefix cache served ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no hit rate: {md}"));
    assert!(mock_rate > 0.8, "{mock_rate}");
    assert!(
        (said / 100.0 - mock_rate).abs() < 0.05,
        "report {said}%, mock {mock_rate}"
    );
}

#[test]
fn a_writer_with_three_parallel_books_holds_three_streams_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let multi = std::fs::read_to_string("scenarios/multi-book.toml").expect("multi-book");
    let streams = |parallel: bool| -> (u64, serde_json::Value) {
        let server = spawn_mock(&[
            "--ttft-ms",
            "150",
            "--itl-ms",
            "10",
            "--output-tokens",
            "10",
        ]);
        let text_ = if parallel {
            multi.replace(
                "books_per_user = 3",
                "books_per_user = 3\nbooks_parallel = true",
            )
        } else {
            multi.clone()
        };
        let path = scenario(
            dir.path(),
            if parallel { "par.toml" } else { "seq.toml" },
            &text_,
        );
        let (o, out) = run_cli(
            dir.path(),
            &path,
            &server.url,
            1,
            &["-c", "1", "--duration", "3s", "--warmup", "0s"],
        );
        assert!(out.exists(), "{}", text(&o));
        let max = mock_metric(&server.url, "mock_streams_per_token_max ") as u64;
        (max, read_json(&out))
    };
    let (max, r) = streams(true);
    valid(&r);
    assert_eq!(
        max, 3,
        "the mock saw one writer's token stream three books at once"
    );
    assert_eq!(r["traffic"]["books_parallel"], 3);
    assert_eq!(r["traffic"]["streams_per_writer_max"], 3);
    assert_eq!(r["status"], "complete", "{}", r["status_reason"]);
    // Every request of the books succeeded: ids and stories never crossed.
    assert_eq!(r["totals"]["failed"], 0, "{}", r["errors"]);
    let (max, r) = streams(false);
    assert_eq!(max, 1, "one after another");
    assert!(r["traffic"].is_null());
}

#[test]
fn a_runs_request_log_converted_and_replayed_gives_the_same_arrivals() {
    let server = spawn_mock(&["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "8"]);
    let dir = tempfile::tempdir().expect("tempdir");
    // Open-loop arrivals of one request each: every arrival its own session.
    let sc = format!(
        "name = \"one\"\n[[steps]]\nname = \"chat\"\nprompt_length = \"uniform(100, 300)\"\nprompt_unit = \"chars\"\noutput_length = 8\nprefix = {{ count = 2, length = 500, scope = \"shared\" }}\n{CHAT}"
    );
    let path = scenario(dir.path(), "one.toml", &sc);
    let q1 = dir.path().join("q1.jsonl");
    let (o, out) = run_cli(
        dir.path(),
        &path,
        &server.url,
        4,
        &[
            "--model",
            "open",
            "--stages",
            "0s:15,6s:15",
            "--warmup",
            "0s",
            "--requests-out",
            q1.to_str().expect("utf-8"),
        ],
    );
    assert!(out.exists(), "{}", text(&o));
    let trace = dir.path().join("t.jsonl");
    let c = flora(&[
        "trace",
        "convert",
        q1.to_str().expect("utf-8"),
        "-o",
        trace.to_str().expect("utf-8"),
    ]);
    assert!(c.status.success(), "{}", text(&c));
    let check = flora(&[
        "trace",
        "check",
        trace.to_str().expect("utf-8"),
        "-s",
        &path,
    ]);
    assert!(text(&check).contains("requests from"), "{}", text(&check));
    // The prefixes' groups survive the conversion.
    let groups: std::collections::BTreeSet<String> = log(&trace)
        .iter()
        .filter_map(|l| l["prefix"].as_str().map(str::to_string))
        .collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    let q2 = dir.path().join("q2.jsonl");
    let (o, out2) = run_cli(
        dir.path(),
        &path,
        &server.url,
        4,
        &[
            "--replay",
            trace.to_str().expect("utf-8"),
            "--requests-out",
            q2.to_str().expect("utf-8"),
        ],
    );
    assert!(out2.exists(), "{}", text(&o));
    let starts = |p: &Path| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = log(p)
            .iter()
            .map(|l| {
                (
                    l["step"].as_str().expect("step").to_string(),
                    l["start_ms"].as_f64().expect("start"),
                )
            })
            .collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1));
        v
    };
    let (a, b) = (starts(&q1), starts(&q2));
    assert_eq!(a.len(), b.len());
    let mut diffs: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| ((y.1 - b[0].1) - (x.1 - a[0].1)).abs())
        .collect();
    diffs.sort_by(f64::total_cmp);
    let median = diffs[diffs.len() / 2];
    assert!(median < 5.0, "arrivals moved by {median} ms (median)");
    assert!(a.len() >= 60, "{} requests", a.len());
    let count = |v: &[(String, f64)]| {
        let mut m = BTreeMap::new();
        for (s, _) in v {
            *m.entry(s.clone()).or_insert(0) += 1;
        }
        m
    };
    assert_eq!(count(&a), count(&b), "the same requests of each step");
    let r = read_json(&out2);
    valid(&r);
    assert_eq!(r["traffic"]["replay"]["requests"], a.len());
    assert!(report_md(&out2).contains("--replay t.jsonl"));
    // The HTML report's traffic section, as a reader's browser shows it.
    let Some(chromium) = crate::html::browser() else {
        assert!(
            std::env::var_os("FLORA_GATE_BROWSER_REQUIRED").is_none(),
            "no chromium on PATH"
        );
        return;
    };
    let page = dir.path().join("replay.html");
    let o = flora(&[
        "report",
        "-r",
        out2.to_str().expect("utf-8"),
        "--format",
        "html",
        "-o",
        page.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let (dom, log) = crate::html::open_in_browser(&chromium, &page, None);
    crate::html::a_clean_page(&dom, &log);
    let traffic = &dom[dom.find("id=\"traffic\"").expect("the traffic section")..];
    for shown in [
        "the trace's lengths",
        "first use: TTFT",
        "replayed",
        "trace mix: chat",
    ] {
        assert!(traffic.contains(shown), "{shown}: {traffic}");
    }
}

#[test]
fn bad_traces_are_refused_with_their_line_before_any_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = dir.path().join("t.jsonl");
    for (trace, says) in [
        ("{\"t_ms\": 10, \"session\": \"w\", \"step\": \"outline\"}\n{\"t_ms\": 5, \"session\": \"w\", \"step\": \"draft\"}\n", "line 2"),
        ("{\"t_ms\": 10, \"session\": \"w\", \"step\": \"poem\"}\n", "`poem` is not a step"),
        ("{\"t_ms\": 10, \"session\": \"w\", \"step\": \"draft\", \"output_tokens\": -1}\n", "output_tokens"),
        ("{\"t_ms\": 10, \"step\": \"draft\"}\n", "missing field `session`"),
    ] {
        std::fs::write(&t, trace).expect("trace written");
        let o = flora(&["run", "-s", "replay-example", "-t", "http://127.0.0.1:9", "--replay", t.to_str().expect("utf-8"), "--chars-per-token", "1"]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}");
        assert!(out.contains(says) && out.contains("t.jsonl"), "{out}");
    }
    // A trace whose lengths the scenario's step would ignore.
    std::fs::write(
        &t,
        "{\"t_ms\": 1, \"session\": \"w\", \"step\": \"chat\", \"prompt_tokens\": 30}\n",
    )
    .expect("trace");
    let o = flora(&[
        "run",
        "-s",
        "openai-chat",
        "-t",
        "http://127.0.0.1:9",
        "--replay",
        t.to_str().expect("utf-8"),
    ]);
    assert!(text(&o).contains("would be ignored"), "{}", text(&o));
    // A speed or a step that cannot be.
    for (flag, v) in [
        ("--speed", "0"),
        ("--replay-step", "poem"),
        ("--replay-window", "5s..1s"),
    ] {
        let o = flora(&[
            "run",
            "-s",
            "replay-example",
            "-t",
            "http://127.0.0.1:9",
            "--replay",
            t.to_str().expect("utf-8"),
            flag,
            v,
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(flag), "{}", text(&o));
    }
    // Flags a replay does not take.
    let o = flora(&[
        "run",
        "-s",
        "replay-example",
        "-t",
        "http://127.0.0.1:9",
        "--replay",
        t.to_str().expect("utf-8"),
        "-c",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
