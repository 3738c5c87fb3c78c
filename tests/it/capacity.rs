//! `flora-gate capacity` against a mock whose knee can be computed.

use crate::common::{flora, spawn_mock, text};

/// `flora-gate capacity` of the bundled chat scenario against `url`, with `args`.
fn capacity(url: &str, tokens: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec![
        "capacity",
        "-s",
        "openai-chat",
        "-t",
        url,
        "--tokens",
        tokens,
    ];
    all.extend_from_slice(args);
    flora(&all)
}

fn tokens(dir: &std::path::Path) -> String {
    let p = dir.join("tokens.csv");
    let mut csv = String::from("user_id,access_token\n");
    for i in 0..100 {
        csv.push_str(&format!("u{i},cap-token-{i:04}\n"));
    }
    std::fs::write(&p, csv).expect("tokens written");
    p.to_str().expect("utf-8").to_string()
}

#[test]
fn the_search_finds_the_knee_of_a_queueing_mock() {
    // 16 served at once, 50 ms to the first token, 31 gaps of 5 ms: a
    // request is served in 205 ms, and beyond 16 users every 16 more wait
    // one service time. TTFT p90 ≤ 300 ms holds while 50 + (N−16)/16·205 ≤ 300:
    // up to 35 users.
    let mock = spawn_mock(&[
        "--max-concurrency",
        "16",
        "--ttft-ms",
        "50",
        "--itl-ms",
        "5",
        "--output-tokens",
        "32",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("cap.json");
    let o = capacity(
        &mock.url,
        &tokens(dir.path()),
        &[
            "--slo",
            "ttft_p90=300",
            "--var",
            "max_tokens=32",
            "--probe",
            "3s",
            "-o",
            out.to_str().expect("utf-8"),
            "--report-out",
            dir.path().join("cap.md").to_str().expect("utf-8"),
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("JSON");
    let c = r["capacity"]["c_star"].as_u64().expect("a capacity");
    let hi = r["capacity"]["first_fail"]
        .as_u64()
        .expect("a failing level");
    assert!((32..=36).contains(&c) && hi <= c + 4, "[{c}, {hi}]: {t}");
    assert_eq!(r["capacity"]["binding"], "ttft_p90");
    let probes = r["probes"].as_array().expect("probes");
    assert!(probes.len() <= 8, "{} probes: {t}", probes.len());
    assert!(t.contains("capacity: "), "{t}");
    let md = std::fs::read_to_string(dir.path().join("cap.md")).expect("report");
    assert!(
        md.contains(&format!(
            "## flora-gate capacity: capacity {c} users at ttft_p90 ≤ 300"
        )),
        "{md}"
    );
    assert!(md.contains(&format!("\"C* {c}\"")), "{md}");
    assert!(
        md.contains("xychart-beta") && md.contains("line [300.0, "),
        "{md}"
    );
}

#[test]
fn an_slo_that_fails_at_one_user_says_so_and_bad_input_is_refused() {
    let mock = spawn_mock(&["--ttft-ms", "100", "--output-tokens", "4"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = tokens(dir.path());
    let out = dir.path().join("cap.json");
    let o = capacity(
        &mock.url,
        &tok,
        &[
            "--slo",
            "ttft_p50=10",
            "--start",
            "2",
            "--probe",
            "1s",
            "--warmup",
            "0s",
            "-o",
            out.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("not even one user holds ttft_p50 ≤ 10"),
        "{}",
        text(&o)
    );
    for (args, flag) in [
        (vec!["--slo", "goodput=3"], "--slo"),
        (vec!["--slo", "ttft_p90=fast"], "--slo"),
        (
            vec![
                "--slo",
                "ttft_p90=300",
                "--start",
                "50",
                "--max-users",
                "20",
            ],
            "--start",
        ),
        (
            vec!["--slo", "ttft_p90=300", "--tolerance", "0"],
            "--tolerance",
        ),
        (vec![], "--slo"),
    ] {
        let o = capacity(&mock.url, &tok, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(flag), "{args:?}: {}", text(&o));
    }
}

#[test]
fn a_batching_knee_on_tpot_is_found_too() {
    // Every other stream adds 0.5 ms to each gap: TPOT p50 ≈ 5 + 0.5·(N − 1)
    // with N users streaming, so TPOT p50 ≤ 20 ms holds up to about 31 users.
    let mock = spawn_mock(&[
        "--ttft-ms",
        "20",
        "--itl-ms",
        "5",
        "--output-tokens",
        "32",
        "--itl-per-stream-ms",
        "0.5",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("cap.json");
    let o = capacity(
        &mock.url,
        &tokens(dir.path()),
        &[
            "--slo",
            "tpot_p50=20",
            "--var",
            "max_tokens=32",
            "--probe",
            "3s",
            "-o",
            out.to_str().expect("utf-8"),
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("JSON");
    let c = r["capacity"]["c_star"].as_u64().expect("a capacity");
    assert!((27..=34).contains(&c), "C* {c}: {t}");
    assert_eq!(r["capacity"]["binding"], "tpot_p50");
}

#[test]
fn a_probe_at_its_threshold_is_extended_then_called_inconclusive() {
    // TTFT uniform in 60–140 ms: its p90 is 132 ms, the objective's limit,
    // so no amount of this evidence can decide it.
    let mock = spawn_mock(&[
        "--ttft-ms",
        "100",
        "--jitter-ms",
        "40",
        "--itl-ms",
        "1",
        "--output-tokens",
        "2",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("cap.json");
    let o = capacity(
        &mock.url,
        &tokens(dir.path()),
        &[
            "--slo",
            "ttft_p90=132",
            "--start",
            "2",
            "--max-users",
            "2",
            "--probe",
            "1s",
            "--warmup",
            "0s",
            "-o",
            out.to_str().expect("utf-8"),
        ],
    );
    let t = text(&o);
    assert!(t.contains("2 users inconclusive → extended to 2s"), "{t}");
    assert!(t.contains("2 users inconclusive → extended to 4s"), "{t}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("JSON");
    assert_eq!(r["probes"][0]["extensions"], 2, "{t}");
    assert_eq!(r["probes"][0]["decision"], "inconclusive", "{t}");
    assert_eq!(r["capacity"]["bracket_inconclusive"], true);
    assert_eq!(o.status.code(), Some(1), "no level passed: {t}");
    assert!(t.contains("no level was shown to hold"), "{t}");
}

#[test]
fn compare_judges_a_capacity_against_a_baseline_capacity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, c: u32, f: u32| {
        let p = dir.path().join(name);
        let json = serde_json::json!({
            "schema_version": 1, "kind": "flora-gate/capacity",
            "scenario": {"name": "s", "origin": "bundled:s", "sha256": "0".repeat(64)},
            "target": "http://127.0.0.1:1",
            "objectives": [{"metric": "ttft_p90", "limit": 800.0}],
            "capacity": {"c_star": c, "first_fail": f, "bracket_inconclusive": false, "binding": "ttft_p90"},
            "probes": [], "elapsed_s": 60.0, "requests": 1000
        });
        std::fs::write(&p, json.to_string()).expect("written");
        p.to_str().expect("utf-8").to_string()
    };
    let (base, worse, same) = (
        file("b.json", 48, 52),
        file("w.json", 40, 44),
        file("s.json", 46, 50),
    );
    let o = flora(&["compare", "-b", &base, "-r", &worse]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("FAIL — capacity 48 → 40 users at ttft_p90 ≤ 800"),
        "{}",
        text(&o)
    );
    let o = flora(&["compare", "-b", &base, "-r", &same]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = flora(&["compare", "-r", &same]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--baseline"), "{}", text(&o));
}
