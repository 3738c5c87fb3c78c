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
    crate::common::tokens_csv(dir, 100)
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
    let c = r["capacity"]["c_star"].as_f64().expect("a capacity") as u64;
    let hi = r["capacity"]["first_fail"]
        .as_f64()
        .expect("a failing level") as u64;
    assert!((32..=36).contains(&c) && hi <= c + 4, "[{c}, {hi}]: {t}");
    assert_eq!(r["capacity"]["binding"], "ttft_p90");
    let probes = r["probes"].as_array().expect("probes");
    assert!(probes.len() <= 8, "{} probes: {t}", probes.len());
    assert!(t.contains("capacity: "), "{t}");
    let md = std::fs::read_to_string(dir.path().join("cap.md")).expect("report");
    assert!(
        md.contains(&format!(
            "## flora-gate capacity: capacity {c} users at TTFT p90 ≤ 300 ms"
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
        text(&o).contains("not even 1 user holds TTFT p50 ≤ 10 ms"),
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
    let c = r["capacity"]["c_star"].as_f64().expect("a capacity");
    assert!((27.0..=34.0).contains(&c), "C* {c}: {t}");
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
    // Each extension at least doubles, sized for the requests the p90's
    // bound needs at the rate this level ran.
    assert_eq!(
        t.matches("2 users inconclusive → extended to").count(),
        2,
        "{t}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("JSON");
    assert_eq!(r["probes"][0]["extensions"], 2, "{t}");
    assert_eq!(r["probes"][0]["decision"], "inconclusive", "{t}");
    assert_eq!(r["capacity"]["bracket_inconclusive"], true);
    assert_eq!(o.status.code(), Some(1), "no level passed: {t}");
    assert!(t.contains("no level was shown to hold"), "{t}");
}

/// A capacity file as `flora-gate capacity` writes it, with the bracket given.
fn capacity_file(dir: &std::path::Path, name: &str, c: f64, f: f64) -> String {
    let p = dir.join(name);
    let json = serde_json::json!({
        "schema_version": 2, "kind": "flora-gate/capacity",
        "scenario": {"name": "s", "origin": "bundled:s", "sha256": "0".repeat(64)},
        "target": "http://127.0.0.1:1",
        "objectives": [{"metric": "ttft_p90", "limit": 300.0}],
        "search": {"by": "users", "start": 8.0, "max": 64.0, "tolerance": 0.1,
                   "probe_s": 2.0, "warmup_s": 0.5, "max_extensions": 1},
        "capacity": {"c_star": c, "first_fail": f, "bracket_inconclusive": false, "binding": "ttft_p90"},
        "probes": [], "elapsed_s": 60.0, "requests": 1000
    });
    std::fs::write(&p, json.to_string()).expect("written");
    p.to_str().expect("utf-8").to_string()
}

#[test]
fn compare_judges_a_capacity_against_a_baseline_capacity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (base, worse, same) = (
        capacity_file(dir.path(), "b.json", 48.0, 52.0),
        capacity_file(dir.path(), "w.json", 40.0, 44.0),
        capacity_file(dir.path(), "s.json", 46.0, 50.0),
    );
    let o = flora(&["compare", "-b", &base, "-r", &worse]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("FAIL — capacity 48 → 40 users at TTFT p90 ≤ 300 ms"),
        "{}",
        text(&o)
    );
    let o = flora(&["compare", "-b", &base, "-r", &same]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = flora(&["compare", "-r", &same]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--baseline"), "{}", text(&o));
    // `report` renders a capacity, judged when a baseline is given.
    let o = flora(&["report", "-r", &worse, "-b", &base]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("## ❌ flora-gate: FAIL — capacity 48 → 40 users at TTFT p90 ≤ 300 ms"),
        "{}",
        text(&o)
    );
    let o = flora(&["report", "-r", &worse, "-f", "text"]);
    assert!(
        text(&o).contains("capacity: 40 users hold TTFT p90 ≤ 300 ms; 44 users do not"),
        "{}",
        text(&o)
    );
    // A capacity file of the first schema is refused with what to do.
    let old = dir.path().join("old.json");
    std::fs::write(
        &old,
        std::fs::read_to_string(&base)
            .expect("read")
            .replace("\"schema_version\":2", "\"schema_version\":1"),
    )
    .expect("written");
    let o = flora(&["compare", "-b", old.to_str().expect("utf-8"), "-r", &same]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("old.json"), "{}", text(&o));
}

/// The queueing mock of the knee test: 16 at once, a 205 ms service.
fn queueing_mock() -> crate::common::MockProcess {
    spawn_mock(&[
        "--max-concurrency",
        "16",
        "--ttft-ms",
        "50",
        "--itl-ms",
        "5",
        "--output-tokens",
        "32",
    ])
}

#[test]
fn the_gate_repeats_a_baseline_capacity_search_and_says_how_capacity_moved() {
    let mock = queueing_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = tokens(dir.path());
    // The baseline held 64 users (it was measured on a bigger deployment):
    // this one holds about 35, a fall far beyond the margin.
    let base = capacity_file(dir.path(), "base.json", 64.0, 72.0);
    let path = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    let o = flora(&[
        "gate",
        "-s",
        "openai-chat",
        "-t",
        &mock.url,
        "--tokens",
        &tok,
        "--var",
        "max_tokens=32",
        "-b",
        &base,
        "-o",
        &path("cap.json"),
        "--verdict-out",
        &path("verdict.json"),
        "--report-out",
        &path("report.md"),
        "--comment",
        "never",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("verdict.json")).expect("verdict"))
            .expect("JSON");
    assert_eq!(v["verdict"], "fail", "{t}");
    let headline = v["headline"].as_str().expect("headline");
    assert!(
        headline.starts_with("capacity 64 → 3")
            && headline.ends_with(" users at TTFT p90 ≤ 300 ms"),
        "{headline}"
    );
    let md = std::fs::read_to_string(path("report.md")).expect("report");
    assert!(
        md.starts_with(&format!("## ❌ flora-gate: FAIL — {headline}")),
        "{md}"
    );
    // The baseline's own search ran: its levels and probe length.
    let cap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("cap.json")).expect("capacity"))
            .expect("JSON");
    assert_eq!(cap["search"]["max"], 64.0);
    assert_eq!(cap["probes"][0]["level"], 8.0);
    // Flags of a single run, or other objectives, do not apply to a capacity gate.
    for (extra, says) in [
        (["-c", "4"], "--concurrency"),
        (["--slo", "ttft_p90=500"], "TTFT p90 ≤ 300 ms"),
    ] {
        let mut args = vec![
            "gate",
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "--tokens",
            &tok,
            "-b",
            &base,
        ];
        args.extend(extra);
        let o = flora(&args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(says), "{}", text(&o));
    }
}

#[test]
fn a_capacity_baseline_is_refreshed_from_a_file_or_by_repeating_its_search() {
    let mock = queueing_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = tokens(dir.path());
    let found = capacity_file(dir.path(), "found.json", 32.0, 36.0);
    let base = dir.path().join("base.json");
    let b = base.to_str().expect("utf-8");
    let o = flora(&["baseline", "refresh", &found, "-o", b]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("capacity 32 users"), "{}", text(&o));
    // Nightly: the search in the baseline, repeated against the target.
    let o = flora(&[
        "baseline",
        "refresh",
        "-s",
        "openai-chat",
        "-t",
        &mock.url,
        "--tokens",
        &tok,
        "--var",
        "max_tokens=32",
        "-o",
        b,
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&base).expect("baseline")).expect("JSON");
    let c = r["capacity"]["c_star"].as_f64().expect("a capacity");
    assert!((28.0..=40.0).contains(&c), "C* {c}: {t}");
    assert_eq!(r["search"]["max"], 64.0, "the baseline's settings: {t}");
    // A search that found nothing is no baseline; the old one stays.
    let none = dir.path().join("none.json");
    let text_of = std::fs::read_to_string(&found)
        .expect("read")
        .replace("\"c_star\":32.0", "\"c_star\":null");
    std::fs::write(&none, text_of).expect("written");
    let before = std::fs::read_to_string(&base).expect("baseline");
    let o = flora(&[
        "baseline",
        "refresh",
        none.to_str().expect("utf-8"),
        "-o",
        b,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no level held"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&base).expect("baseline"), before);
    let o = flora(&["baseline", "refresh", &found, "-o", b, "--append"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--append"), "{}", text(&o));
}

#[test]
fn a_rate_search_finds_the_throughput_knee_and_stops_runaway_probes_early() {
    // 16 at once and 205 ms a request: about 78 requests a second at most.
    // TTFT p90 ≤ 300 ms holds below that rate; above it the queue grows
    // without bound, which the probes see and stop.
    let mock = queueing_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("cap.json");
    let o = capacity(
        &mock.url,
        &tokens(dir.path()),
        &[
            "--by",
            "rate",
            "--start",
            "30",
            "--max-rate",
            "200",
            "--tolerance",
            "0.15",
            "--slo",
            "ttft_p90=300",
            "--var",
            "max_tokens=32",
            "--probe",
            "6s",
            "-o",
            out.to_str().expect("utf-8"),
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("JSON");
    let c = r["capacity"]["c_star"].as_f64().expect("a capacity");
    assert!((45.0..=80.0).contains(&c), "C* {c}/s: {t}");
    assert!(t.contains("workflows/s"), "{t}");
    let probes = r["probes"].as_array().expect("probes");
    // 120/s, half again the most the mock serves, runs away.
    let runaway = probes
        .iter()
        .find(|p| p["level"] == 120.0)
        .expect("the probe at 120/s");
    assert_eq!(runaway["decision"], "fail", "{t}");
    assert!(
        runaway["note"]
            .as_str()
            .is_some_and(|n| n.contains("the queue ran away")),
        "{runaway}"
    );
    assert!(
        runaway["measured_s"].as_f64().expect("measured") < 5.5,
        "stopped before its 6 s: {runaway}"
    );
}

/// The README's capacity example, flag for flag (its output files in a
/// temporary directory): with the error-rate objective at 1%, probes are
/// sized for its bound, so the search finds C* instead of stepping down.
#[test]
fn the_readmes_capacity_example_finds_the_knee() {
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
    let (out, md) = (
        dir.path().join("capacity.json"),
        dir.path().join("capacity.md"),
    );
    let o = capacity(
        &mock.url,
        &tokens(dir.path()),
        &[
            "--var",
            "max_tokens=32",
            "--slo",
            "ttft_p90=300",
            "--slo",
            "error_rate=0.01",
            "--max-users",
            "64",
            "--out",
            out.to_str().expect("utf-8"),
            "--report-out",
            md.to_str().expect("utf-8"),
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("JSON");
    // Analytic: TTFT = 50 + (N − 16)/16 · 205 ms ≤ 300 ms up to 35 users.
    let c = r["capacity"]["c_star"].as_f64().expect("a capacity");
    assert!((35.0 * 0.85..=35.0 * 1.15).contains(&c), "C* {c}: {t}");
    assert!(md.exists());
}
