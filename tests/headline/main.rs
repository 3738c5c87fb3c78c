//! The seed's headline shapes at their own scale, on the mock: the knee of
//! a 10 → 2,000 ramp (with holds and without), a 1,500-user soak, and a
//! generator (and a baseline refresh) starved by other work. (Capacity on
//! 1.5 s requests is decided on a model of the server in
//! `commands::capacity`'s tests, and measured by `benches/capacity.sh slow`.)
//!
//! Cargo runs test crates one after another, so this one never runs beside
//! `tests/it/`, and its tests take one lock, so each has the machine to
//! itself. A run whose self-check blames the machine (a neighbour outside
//! the suite) measured the machine, not the mock: it is run again, at most
//! twice more.

#[path = "../it/common.rs"]
mod common;

use std::process::Output;
use std::sync::Mutex;

use common::{read_json, report_md, run_cli, spawn_mock, text, tokens_csv};

/// One heavy run at a time.
static ALONE: Mutex<()> = Mutex::new(());

/// Runs of one test: a run the machine starved is measured again.
const ATTEMPTS: usize = 3;

/// A run of `scenario` with `extra` flags against a mock made with `mock`,
/// `users` tokens, the server's `/metrics` scraped: the command's output and
/// the result's JSON, run again while the self-check blames the machine.
///
/// `None` when every attempt was starved by other work: then the shape
/// could not be measured on this machine, and what is checked is that the
/// report said so (the machine named, no finding about the server), which
/// is the product's duty on a busy runner.
fn measured(
    mock: &[&str],
    users: usize,
    extra: &[&str],
) -> Option<(Output, serde_json::Value, String)> {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 1..=ATTEMPTS {
        let server = spawn_mock(mock);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["--warmup", "0s", "--server-metrics", "/metrics"];
        args.extend_from_slice(extra);
        let (o, out) = run_cli(dir.path(), "openai-chat", &server.url, users, &args);
        assert!(out.exists(), "no result: {}", text(&o));
        let r = read_json(&out);
        let md = report_md(&out);
        drop(server);
        if r["self_check"]["cause"] != "machine" {
            return Some((o, r, md));
        }
        eprintln!("attempt {attempt}: the machine starved the generator; measuring again");
        if attempt == ATTEMPTS {
            let a = analysis(&md);
            assert!(a.contains("other work on this machine"), "{a}");
            for server_finding in [
                "queue before",
                "the server is saturated",
                "batching",
                "KV-cache",
                "No bottleneck",
            ] {
                assert!(!a.contains(server_finding), "{server_finding}: {a}");
            }
            eprintln!(
                "every attempt was starved by other work on this machine: the shape was not measured here; the report named the machine"
            );
        }
    }
    None
}

/// The report's bottleneck section.
fn analysis(md: &str) -> &str {
    let from = md
        .find("### Bottleneck analysis")
        .unwrap_or_else(|| panic!("no analysis: {md}"));
    let rest = &md[from + 4..];
    &rest[..rest.find("\n### ").unwrap_or(rest.len())]
}

/// The level the analysis calls the knee ("the knee at N users").
fn knee(section: &str) -> f64 {
    let at = section
        .find("the knee at ")
        .unwrap_or_else(|| panic!("no knee named: {section}"));
    let rest = &section[at + "the knee at ".len()..];
    let n: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
        .filter(|c| *c != ',')
        .collect();
    n.parse()
        .unwrap_or_else(|_| panic!("no number after the knee: {section}"))
}

/// A server serving 800 streams at once: beyond 800 users, requests wait.
const SERVES_800: [&str; 8] = [
    "--max-concurrency",
    "800",
    "--ttft-ms",
    "80",
    "--itl-ms",
    "10",
    "--output-tokens",
    "16",
];

#[test]
fn a_ramp_to_2000_users_with_holds_finds_the_queue_and_its_knee() {
    let Some((o, _, md)) = measured(
        &SERVES_800,
        2000,
        &[
            "--var",
            "max_tokens=16",
            "--stages",
            "0s:10,3s:10,5s:500,3s:500,5s:1000,3s:1000,5s:2000,3s:2000",
        ],
    ) else {
        return;
    };
    let a = analysis(&md);
    assert!(a.contains("requests queue before they are served"), "{a}");
    let k = knee(a);
    assert!((600.0..=1000.0).contains(&k), "knee at {k}: {a}");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_ramp_to_2000_users_without_holds_finds_the_queue_and_its_knee() {
    // Tokens 30 ms apart (half the request rate of the held ramp's): the
    // same 800 slots, so the same knee, with a generator and a mock that
    // share two cores less likely to starve each other.
    let Some((_, _, md)) = measured(
        &[
            "--max-concurrency",
            "800",
            "--ttft-ms",
            "80",
            "--itl-ms",
            "30",
            "--output-tokens",
            "16",
        ],
        2000,
        &[
            "--var",
            "max_tokens=16",
            "--stages",
            "0s:10,8s:500,8s:1000,10s:2000",
            "--window",
            "1s",
        ],
    ) else {
        return;
    };
    let a = analysis(&md);
    assert!(a.contains("requests queue before they are served"), "{a}");
    let k = knee(a);
    assert!((600.0..=1000.0).contains(&k), "knee at {k}: {a}");
    assert!(!a.contains("No bottleneck"), "{a}");
}

#[test]
fn a_1500_user_soak_on_a_server_with_room_has_no_finding() {
    // ~1 s requests: 1,500 users ask ~1,500 requests a second, which the
    // mock serves without a queue.
    let Some((o, r, md)) = measured(
        &[
            "--ttft-ms",
            "150",
            "--itl-ms",
            "50",
            "--output-tokens",
            "16",
        ],
        1500,
        &["--var", "max_tokens=16", "--stages", "5s:1500,15s:1500"],
    ) else {
        return;
    };
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(r["self_check"]["saturated"], false, "{}", r["self_check"]);
    let a = analysis(&md);
    assert!(a.contains("No bottleneck"), "{a}");
    for wrong in ["admission", "queue before", "saturated", "batching"] {
        assert!(!a.contains(wrong), "{wrong}: {a}");
    }
}

/// Two busy loops on core 1 while it lives: a generator pinned there (one
/// worker thread, at the lowest priority) is starved by other work.
struct Starved(Vec<std::process::Child>);

/// The core the generator shares with the busy loops.
const STARVED_CORE: &str = "1";

impl Starved {
    fn start() -> Self {
        Starved(
            (0..2)
                .map(|_| {
                    std::process::Command::new("taskset")
                        .args(["-c", STARVED_CORE, "sh", "-c", "while :; do :; done"])
                        .spawn()
                        .expect("taskset runs a busy loop")
                })
                .collect(),
        )
    }

    /// `flora-gate ARGS` pinned beside the busy loops.
    fn flora(&self, args: &[&str]) -> Output {
        std::process::Command::new("taskset")
            .args(["-c", STARVED_CORE, "nice", "-n", "19", common::BIN])
            .args(args)
            .env("TOKIO_WORKER_THREADS", "1")
            .env_remove("GITHUB_ACTIONS")
            .output()
            .expect("runs")
    }
}

impl Drop for Starved {
    fn drop(&mut self) {
        for h in &mut self.0 {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

#[test]
fn a_generator_starved_by_other_work_names_the_machine() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let server = spawn_mock(&["--ttft-ms", "30", "--itl-ms", "3", "--output-tokens", "16"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_csv(dir.path(), 32);
    let out = dir.path().join("r.json");
    let starved = Starved::start();
    let o = starved.flora(&[
        "run",
        "-s",
        "openai-chat",
        "-t",
        &server.url,
        "--tokens",
        &tokens,
        "--no-progress",
        "--warmup",
        "0s",
        "--var",
        "max_tokens=16",
        "--stages",
        "0s:4,5s:4,0s:16,5s:16,0s:32,5s:32",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    drop(starved);
    let run = text(&o);
    assert!(out.exists(), "{run}");
    let r = read_json(&out);
    assert_eq!(r["self_check"]["cause"], "machine", "{}", r["self_check"]);
    let md = report_md(&out);
    let a = analysis(&md);
    assert!(a.contains("other work on this machine"), "{a}");
    for wrong in ["the generator, not the server", "the client"] {
        assert!(!a.contains(wrong), "{wrong}: {a}");
        assert!(!run.contains(wrong), "{wrong}: {run}");
    }
}

#[test]
fn a_baseline_refresh_the_machine_starves_measures_again_and_names_the_machine() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let server = spawn_mock(&["--ttft-ms", "30", "--itl-ms", "3", "--output-tokens", "16"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_csv(dir.path(), 32);
    let out = dir.path().join("baseline.json");
    let starved = Starved::start();
    let o = starved.flora(&[
        "baseline",
        "refresh",
        "-s",
        "openai-chat",
        "-t",
        &server.url,
        "--tokens",
        &tokens,
        "--var",
        "max_tokens=16",
        "-n",
        "1",
        "-c",
        "32",
        "-d",
        "5s",
        "--warmup",
        "0s",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    drop(starved);
    let t = text(&o);
    // Each starved run was measured again, twice at most, then refused
    // with the machine named: nothing written, nothing blamed on the target.
    assert!(t.contains("running it again (1 of 2)"), "{t}");
    assert!(t.contains("running it again (2 of 2)"), "{t}");
    assert!(
        t.contains("other work on this machine starved the generator"),
        "{t}"
    );
    assert!(!t.contains("fix the target"), "{t}");
    assert_ne!(o.status.code(), Some(0), "{t}");
    assert!(!out.exists(), "{t}");
}

/// `--time-scale 0.05` makes the bundled 10.5-minute `ramp` (10 → 2,000
/// users, seven ramps and holds) a 31.5 s run with its stages in
/// proportion, recorded in the result and its reproduce command.
#[test]
fn the_bundled_ramp_at_a_twentieth_of_its_time() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    // Slow answers (about a second each): 2,000 users ask ~2,000 requests
    // a second at the top, which this machine's generator can keep.
    let server = spawn_mock(&["--ttft-ms", "600", "--itl-ms", "50", "--output-tokens", "8"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (o, out) = run_cli(
        dir.path(),
        "ramp",
        &server.url,
        2000,
        &["--time-scale", "0.05", "--drain", "5s"],
    );
    assert!(out.exists(), "no result: {}", text(&o));
    let r = read_json(&out);
    assert_eq!(r["provenance"]["time_scale"], 0.05);
    let stages = r["load"]["stages"].as_array().expect("stages");
    let lengths: Vec<f64> = stages
        .iter()
        .map(|s| s["end_s"].as_f64().expect("end") - s["start_s"].as_f64().expect("start"))
        .collect();
    // The bundled ramp: 30 s ramps and 60 s holds, seven of each.
    assert_eq!(lengths.len(), 14, "{lengths:?}");
    for (i, l) in lengths.iter().enumerate() {
        let want = if i % 2 == 0 { 1.5 } else { 3.0 };
        assert!((l - want).abs() < 1e-6, "stage {i}: {l} s, not {want} s");
    }
    let planned: f64 = lengths.iter().sum();
    assert!((planned - 31.5).abs() < 1e-6, "{planned}");
    // The run took its stages' time, plus the last requests' drain.
    let elapsed = r["provenance"]["elapsed_s"].as_f64().expect("elapsed");
    assert!((31.5..40.0).contains(&elapsed), "elapsed {elapsed} s");
    assert_eq!(r["stages"].as_array().expect("stage results").len(), 14);
    let md = report_md(&out);
    assert!(md.contains("--time-scale 0.05"), "{md}");
}

/// A 10-minute trace of 40 writers (several books each, their steps in
/// order, gaps of seconds) replayed at `--speed 10`: a one-minute run that
/// sends every request at its time (lateness p99 under 5 ms on the mock),
/// the trace's per-step mix exactly, and each writer's requests in order.
#[test]
fn a_ten_minute_trace_replayed_at_ten_times_its_speed() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let steps = ["outline", "draft", "continue", "expand", "summarize"];
    let mut lines = Vec::new();
    for w in 0..40u64 {
        // A fixed pseudo-random walk per writer (no generator needed).
        let mut x = w * 7919 + 13;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let mut t = next(20_000);
        let mut k = 0usize;
        while t < 600_000 {
            let step = steps[k % steps.len()];
            let book = format!("b{}", 1 + (k / steps.len()) % 2);
            lines.push((t, format!(
                "{{\"t_ms\": {t}, \"session\": \"writer-{w}\", \"book\": \"{book}\", \"step\": \"{step}\", \"prompt_tokens\": {}, \"output_tokens\": {}, \"prefix\": \"bible-{w}-{book}\", \"prefix_tokens\": 100}}",
                150 + next(300),
                8 + next(8)
            ), w, step));
            t += 8_000 + next(20_000);
            k += 1;
        }
    }
    lines.sort_by_key(|l| l.0);
    let mut mix = std::collections::BTreeMap::new();
    let mut order: std::collections::BTreeMap<u64, Vec<&str>> = std::collections::BTreeMap::new();
    for (_, _, w, step) in &lines {
        *mix.entry(step.to_string()).or_insert(0u64) += 1;
        order.entry(*w).or_default().push(step);
    }
    for attempt in 1..=ATTEMPTS {
        let server = spawn_mock(&["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "16"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let trace = dir.path().join("trace.jsonl");
        let body: String = lines.iter().map(|l| format!("{}\n", l.1)).collect();
        std::fs::write(&trace, body).expect("trace written");
        let requests = dir.path().join("q.jsonl");
        let (o, out) = run_cli(
            dir.path(),
            "replay-example",
            &server.url,
            40,
            &[
                "--replay",
                trace.to_str().expect("utf-8"),
                "--speed",
                "10",
                "--chars-per-token",
                "1.5",
                "--requests-out",
                requests.to_str().expect("utf-8"),
            ],
        );
        assert!(out.exists(), "no result: {}", text(&o));
        let r = read_json(&out);
        let rp = &r["traffic"]["replay"];
        assert_eq!(rp["requests"], lines.len(), "{rp}");
        let elapsed = r["provenance"]["elapsed_s"].as_f64().expect("elapsed");
        assert!(
            (59.0..66.0).contains(&elapsed),
            "a 10-minute trace at 10×: {elapsed} s"
        );
        // The mix exactly: every request of the trace, of its step.
        for s in r["steps"].as_array().expect("steps") {
            let name = s["name"].as_str().expect("name");
            assert_eq!(s["requests"].as_u64(), mix.get(name).copied(), "{name}");
            assert_eq!(s["failed"], 0, "{name}: {}", s["errors"]);
        }
        // Each writer's requests in the trace's order (sessions numbered as
        // they first appear; a request's iteration counts its session's).
        let log: Vec<serde_json::Value> = std::fs::read_to_string(&requests)
            .expect("log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("line"))
            .collect();
        let mut seen: Vec<u64> = Vec::new();
        for (_, _, w, _) in &lines {
            if !seen.contains(w) {
                seen.push(*w);
            }
        }
        for (vu, w) in seen.iter().enumerate() {
            let mut mine: Vec<&serde_json::Value> = log.iter().filter(|l| l["vu"] == vu).collect();
            mine.sort_by_key(|l| l["iteration"].as_u64());
            let sent: Vec<&str> = mine
                .iter()
                .map(|l| l["step"].as_str().expect("step"))
                .collect();
            assert_eq!(sent, order[w], "writer-{w}");
            let starts: Vec<f64> = mine
                .iter()
                .map(|l| l["start_ms"].as_f64().expect("start"))
                .collect();
            assert!(
                starts.windows(2).all(|p| p[0] <= p[1]),
                "writer-{w} out of order"
            );
        }
        let p99 = r["arrivals"]["lateness_p99_ms"].as_f64().expect("lateness");
        if p99 < 5.0 {
            assert_eq!(r["arrivals"]["started"], lines.len());
            let md = report_md(&out);
            assert!(md.contains("--replay trace.jsonl --speed 10"), "{md}");
            return;
        }
        assert_eq!(
            r["self_check"]["cause"], "machine",
            "lateness p99 {p99} ms on a generator the self-check did not blame: {}",
            r["self_check"]
        );
        eprintln!("attempt {attempt}: lateness p99 {p99} ms on a starved machine; measuring again");
    }
    eprintln!("every attempt was starved by other work on this machine: the lateness was not measured here");
}
