//! Distributed runs on loopback: a plan, shard processes started by it,
//! and their merge against one process with the same load.

use std::collections::BTreeSet;
use std::path::Path;

use flora_gate::stats::LatencyHist;

use crate::common::{flora, spawn_mock, text, BIN};

fn tokens(dir: &std::path::Path) -> String {
    crate::common::tokens_csv(dir, 12)
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("JSON")
}

/// The lines of a `--requests-out` file.
fn requests(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Run shards `indexes` of `plan` at once, each with `--requests-out`.
fn run_shards(dir: &Path, plan: &str, indexes: &[u32], url: &str, tok: &str) {
    run_shards_at(dir, plan, indexes, &|_| url.to_string(), tok);
}

/// The same, shard `i` against `url(i)`.
fn run_shards_at(dir: &Path, plan: &str, indexes: &[u32], url: &dyn Fn(u32) -> String, tok: &str) {
    let children: Vec<_> = indexes
        .iter()
        .map(|&i| {
            let url = url(i);
            std::process::Command::new(BIN)
                .args(["run", "--plan", plan, "--shard", &format!("{i}/3")])
                .args([
                    "-s",
                    "openai-chat",
                    "-t",
                    &url,
                    "--tokens",
                    tok,
                    "--no-progress",
                    // Every shard scrapes the server's own metrics.
                    "--server-metrics",
                    "/metrics",
                ])
                .arg("-o")
                .arg(dir.join(format!("shard-{i}.json")))
                .arg("--requests-out")
                .arg(dir.join(format!("shard-{i}.jsonl")))
                .output_future()
        })
        .collect();
    for (i, c) in indexes.iter().zip(children) {
        let o = c.wait_with_output().expect("shard ran");
        assert!(o.status.success(), "shard {i}: {}", text(&o));
    }
}

trait Spawn {
    fn output_future(&mut self) -> std::process::Child;
}

impl Spawn for std::process::Command {
    fn output_future(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawned")
    }
}

fn plan(dir: &Path, start_in: &str) -> String {
    let p = dir.join("plan.json");
    let o = flora(&[
        "plan",
        "-s",
        "openai-chat",
        "--shards",
        "3",
        "-c",
        "9",
        "-d",
        "4s",
        "--warmup",
        "1s",
        "--start-in",
        start_in,
        "-o",
        p.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    p.to_str().expect("utf-8").to_string()
}

#[test]
fn three_shards_merge_into_exactly_the_run_one_process_makes() {
    let mock = spawn_mock(&[
        "--ttft-ms",
        "30",
        "--itl-ms",
        "2",
        "--output-tokens",
        "16",
        "--jitter-ms",
        "3",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tok = tokens(d);
    let plan = plan(d, "2s");
    run_shards(d, &plan, &[0, 1, 2], &mock.url, &tok);
    let shard_files: Vec<String> = (0..3)
        .map(|i| {
            d.join(format!("shard-{i}.json"))
                .to_str()
                .expect("utf-8")
                .to_string()
        })
        .collect();
    let merged = d.join("merged.json");
    let mut args = vec!["merge"];
    args.extend(shard_files.iter().map(String::as_str));
    args.extend(["-o", merged.to_str().expect("utf-8")]);
    let o = flora(&args);
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&merged);

    // Counts add up, and the shard table has every shard.
    let shard_requests: u64 = (0..3)
        .map(|i| {
            json(&d.join(format!("shard-{i}.json")))["totals"]["requests"]
                .as_u64()
                .expect("n")
        })
        .sum();
    assert_eq!(m["totals"]["requests"].as_u64(), Some(shard_requests));
    assert_eq!(m["merged"]["shards"].as_array().map(Vec::len), Some(3));

    // The server's metrics survive: the one endpoint all three scraped is
    // kept once, with the first shard's series (never an average of three
    // scrapes), and the diagnosis reads them.
    let server = &m["server_metrics"];
    let endpoints = server["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 1, "{server}");
    assert_eq!(endpoints[0]["shards"], serde_json::json!([0, 1, 2]));
    let first = json(&d.join("shard-0.json"));
    assert_eq!(server["series"], first["server_metrics"]["series"]);
    assert!(!server["series"].as_array().expect("series").is_empty());
    let merged_result = flora_gate::result::RunResult::read(&merged).expect("reads");
    let evidence = flora_gate::gate::diagnosis::of_run(&merged_result).0;
    assert!(evidence.server_scraped && evidence.server_overall.is_some());

    // The merged TTFT histogram is the one built from every shard's requests.
    let mut concatenated = LatencyHist::new();
    let mut users = BTreeSet::new();
    for i in 0..3 {
        for r in requests(&d.join(format!("shard-{i}.jsonl"))) {
            users.insert(r["vu"].as_u64().expect("vu"));
            if r["warmup"] == false {
                let us = (r["ttft_ms"].as_f64().expect("ttft") * 1000.0).round() as u64;
                concatenated.record(std::time::Duration::from_micros(us));
            }
        }
    }
    let b64 = m["steps"][0]["histograms"]["ttft"]
        .as_str()
        .expect("histogram");
    let merged_hist = LatencyHist::decode(b64, 0).expect("decodes");
    assert_eq!(merged_hist.count(), concatenated.count());
    for q in [0.1, 0.5, 0.9, 0.99, 1.0] {
        assert_eq!(
            merged_hist.quantile_ms(q),
            concatenated.quantile_ms(q),
            "q {q}"
        );
    }

    // One process with the same load: the same users, a TTFT p50 within 10%.
    let single = d.join("single.json");
    let single_log = d.join("single.jsonl");
    let o = flora(&[
        "run",
        "-s",
        "openai-chat",
        "-t",
        &mock.url,
        "--tokens",
        &tok,
        "-c",
        "9",
        "-d",
        "4s",
        "--warmup",
        "1s",
        "--no-progress",
        "-o",
        single.to_str().expect("utf-8"),
        "--requests-out",
        single_log.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let single_users: BTreeSet<u64> = requests(&single_log)
        .iter()
        .map(|r| r["vu"].as_u64().expect("vu"))
        .collect();
    assert_eq!(users, single_users);
    let p50 = |v: &serde_json::Value| v["steps"][0]["ttft_ms"]["p50"].as_f64().expect("p50");
    let (a, b) = (p50(&m), p50(&json(&single)));
    assert!((a - b).abs() <= 0.1 * b, "merged {a} ms, single {b} ms");

    // A missing or a repeated shard is refused, naming it; `--allow-partial`
    // merges what exists and the verdict is a warning at most.
    let o = flora(&[
        "merge",
        &shard_files[0],
        &shard_files[1],
        "-o",
        d.join("x.json").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("shard(s) 2 of 3 missing"), "{}", text(&o));
    let o = flora(&[
        "merge",
        &shard_files[0],
        &shard_files[0],
        &shard_files[1],
        "-o",
        d.join("x.json").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("shard 0 of 3 twice"), "{}", text(&o));
    let partial = d.join("partial.json");
    let o = flora(&[
        "merge",
        &shard_files[0],
        &shard_files[1],
        "--allow-partial",
        "-o",
        partial.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&partial)["merged"]["missing"], serde_json::json!([2]));
    let base = d.join("base.json");
    let o = flora(&[
        "baseline",
        "refresh",
        merged.to_str().expect("utf-8"),
        single.to_str().expect("utf-8"),
        "-o",
        base.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let verdict = d.join("verdict.json");
    let o = flora(&[
        "compare",
        "-b",
        base.to_str().expect("utf-8"),
        "-r",
        partial.to_str().expect("utf-8"),
        "--out",
        verdict.to_str().expect("utf-8"),
    ]);
    let v = json(&verdict);
    assert_eq!(v["verdict"], "warn", "{}", text(&o));
    // `gate --result` judges it the same way, with the gate's report.
    let report = d.join("report.md");
    let o = flora(&[
        "gate",
        "--result",
        partial.to_str().expect("utf-8"),
        "-b",
        base.to_str().expect("utf-8"),
        "--verdict-out",
        verdict.to_str().expect("utf-8"),
        "--report-out",
        report.to_str().expect("utf-8"),
        "--comment",
        "never",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&verdict)["verdict"], "warn");
    let html = std::fs::read_to_string(d.join("report.html")).expect("the HTML report");
    assert!(
        html.contains("<h2>Shards</h2>") && html.contains("<p class=\"muted\">merged ·"),
        "the merged result's HTML report"
    );
    let md = std::fs::read_to_string(&report).expect("report");
    assert!(
        md.contains("### Shards") && md.contains("merged from 2 of 3 shards"),
        "{md}"
    );
    let o = flora(&[
        "gate",
        "--result",
        partial.to_str().expect("utf-8"),
        "-b",
        base.to_str().expect("utf-8"),
        "-c",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--concurrency"), "{}", text(&o));
    assert!(
        v["notes"].as_array().expect("notes").iter().any(|n| n
            .as_str()
            .is_some_and(|n| n.contains("merged from 2 of 3 shards"))),
        "{v}"
    );
}

#[test]
fn a_late_shard_joins_at_its_place_and_bad_shard_flags_are_refused() {
    let mock = spawn_mock(&["--ttft-ms", "20", "--itl-ms", "1", "--output-tokens", "8"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tok = tokens(d);
    // The start is already past when the shards begin.
    let plan = plan(d, "0s");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    run_shards(d, &plan, &[0, 1, 2], &mock.url, &tok);
    let s0 = json(&d.join("shard-0.json"));
    let late = s0["shard"]["late_ms"].as_f64().expect("late");
    assert!(late >= 1400.0, "late {late} ms");
    let o = flora(&[
        "merge",
        d.join("shard-0.json").to_str().expect("utf-8"),
        d.join("shard-1.json").to_str().expect("utf-8"),
        d.join("shard-2.json").to_str().expect("utf-8"),
        "-o",
        d.join("merged.json").to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&d.join("merged.json"));
    assert!(m["merged"]["all_running_from_ms"].as_f64().expect("ms") >= 1400.0);
    assert_eq!(m["windows"][0]["partial"], true, "{}", m["windows"][0]);
    assert!(text(&o).contains("are partial"), "{}", text(&o));
    // A shard's result and a merged one are results like any other.
    let v = crate::schema::validator();
    for r in [&s0, &m] {
        let errors: Vec<String> = v.iter_errors(r).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }

    // Flags the plan fixes, and shards that do not exist, are refused.
    for (extra, says) in [
        (vec!["--shard", "3/3"], "--shard"),
        (vec!["--shard", "0/4"], "--shard"),
        (vec!["--shard", "one"], "--shard"),
        (vec!["--shard", "0/3", "-c", "4"], "--concurrency"),
        (vec!["--shard", "0/3", "--seed", "7"], "--seed"),
    ] {
        let mut args = vec![
            "run",
            "--plan",
            &plan,
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "--tokens",
            &tok,
        ];
        args.extend(extra.iter().copied());
        let o = flora(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{extra:?}: {}", text(&o));
    }
    // Another scenario than the plan's.
    let o = flora(&[
        "run", "--plan", &plan, "--shard", "0/3", "-s", "novel", "-t", &mock.url, "--tokens", &tok,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("not the scenario of the plan"),
        "{}",
        text(&o)
    );
    // A shard of another plan is refused, naming its file.
    let other = d.join("other");
    std::fs::create_dir(&other).expect("dir");
    let text_of = std::fs::read_to_string(d.join("shard-1.json")).expect("read");
    let id = s0["shard"]["plan"]["plan_id"]
        .as_str()
        .expect("id")
        .to_string();
    std::fs::write(
        other.join("shard-1.json"),
        text_of.replace(&id, "0123456789abcdef"),
    )
    .expect("written");
    std::fs::copy(d.join("shard-1.records"), other.join("shard-1.records")).expect("copied");
    let o = flora(&[
        "merge",
        d.join("shard-0.json").to_str().expect("utf-8"),
        other.join("shard-1.json").to_str().expect("utf-8"),
        d.join("shard-2.json").to_str().expect("utf-8"),
        "-o",
        d.join("z.json").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("other/shard-1.json") && text(&o).contains("another plan"),
        "{}",
        text(&o)
    );
    // A result that is not a shard.
    let o = flora(&[
        "merge",
        d.join("merged.json").to_str().expect("utf-8"),
        "-o",
        d.join("y.json").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not a shard"), "{}", text(&o));
}

#[test]
fn a_shard_on_a_slower_path_is_flagged() {
    let fast = spawn_mock(&["--ttft-ms", "20", "--itl-ms", "1", "--output-tokens", "8"]);
    let slow = spawn_mock(&["--ttft-ms", "60", "--itl-ms", "1", "--output-tokens", "8"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tok = tokens(d);
    let plan = plan(d, "1s");
    let url = |i: u32| {
        if i == 2 {
            slow.url.clone()
        } else {
            fast.url.clone()
        }
    };
    run_shards_at(d, &plan, &[0, 1, 2], &url, &tok);
    let merged = d.join("merged.json");
    let o = flora(&[
        "merge",
        d.to_str().expect("utf-8"),
        "-o",
        merged.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&merged);
    let rows = m["merged"]["shards"].as_array().expect("rows");
    // Only the shard on the slow path is slower (a busy machine may flag a
    // shard's generator as saturated besides, which is a flag of its own).
    let slower: Vec<bool> = rows
        .iter()
        .map(|r| {
            r["flag"]
                .as_str()
                .is_some_and(|f| f.contains("slower network path"))
        })
        .collect();
    assert_eq!(slower, [false, false, true], "{rows:?}");
    assert!(text(&o).contains("a slower network path"), "{}", text(&o));
    // The report shows the shards, the flagged one with why.
    let o = flora(&["report", "-r", merged.to_str().expect("utf-8")]);
    let md = text(&o);
    assert!(md.contains("### Shards"), "{md}");
    assert!(
        md.contains("| 2 |") && md.contains("a slower network path"),
        "{md}"
    );
}

/// `merge` of the three shards in `dir`, its output to `out`.
fn merge_into(dir: &Path, out: &str) -> std::process::Output {
    let shards: Vec<String> = (0..3)
        .map(|i| dir.join(format!("shard-{i}.json")).display().to_string())
        .collect();
    let mut args = vec!["merge", "-o", out];
    args.extend(shards.iter().map(String::as_str));
    flora(&args)
}

#[test]
fn forged_shard_files_are_refused_before_anything_is_built_from_them() {
    let mock = crate::common::spawn_mock(&["--ttft-ms", "5", "--itl-ms", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tok = tokens(d);
    let p = plan(d, "2s");
    run_shards(d, &p, &[0, 1, 2], &mock.url, &tok);
    let merged = d.join("merged.json").display().to_string();
    assert!(
        merge_into(d, &merged).status.success(),
        "the honest shards merge"
    );
    let shard1 = d.join("shard-1.json");
    let honest = std::fs::read_to_string(&shard1).expect("shard");
    let refused = |what: &str, expect: &str| {
        let o = merge_into(d, &merged);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {t}");
        assert!(t.contains(expect), "{what}: {t}");
    };
    let forge = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&honest).expect("json");
        f(&mut v);
        std::fs::write(&shard1, v.to_string()).expect("write");
    };
    forge(&|v| v["windows"][0]["index"] = 4_294_967_295u64.into());
    refused("a window index of 2^32-1", "windows[0].index");
    forge(&|v| v["shard"]["plan"]["shards"] = 1_000_000_000u64.into());
    refused("a plan of 10^9 shards", "shard.plan.shards");
    forge(&|v| v["shard"]["records"] = "shard-0.records".into());
    refused(
        "one record file for two shards",
        "also the record file of another shard",
    );
    std::fs::copy(d.join("shard-2.records"), d.join("other.records")).expect("copy");
    forge(&|v| v["shard"]["records"] = "other.records".into());
    refused("another shard's users", "runs only users u with u % 3 = 1");
    std::fs::write(&shard1, &honest).expect("write");

    let records = d.join("shard-1.records");
    let good = std::fs::read(&records).expect("records");
    let header = "flora-gate records 3\n".len() + 16;
    let mut bad = good.clone();
    bad[header + 74..header + 76].copy_from_slice(&65535u16.to_le_bytes());
    std::fs::write(&records, &bad).expect("write");
    refused("step 65535", "step 65535");
    let mut bad = good.clone();
    bad[header + 48..header + 56].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
    std::fs::write(&records, &bad).expect("write");
    refused("usage 2^64-2", "not believable");
    std::fs::write(&records, &good).expect("write");
    assert!(
        merge_into(d, &merged).status.success(),
        "restored, they merge again"
    );

    // A plan of 10^9 shards is refused by `run --plan` too.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).expect("plan")).expect("json");
    v["shards"] = 1_000_000_000u64.into();
    let forged = d.join("forged-plan.json");
    std::fs::write(&forged, v.to_string()).expect("write");
    let o = flora(&[
        "run",
        "--plan",
        forged.to_str().expect("utf-8"),
        "--shard",
        "0/1000000000",
        "-s",
        "openai-chat",
        "-t",
        &mock.url,
        "--tokens",
        &tok,
        "-o",
        d.join("x.json").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("shard count from 1 to 1000"),
        "{}",
        text(&o)
    );
}

#[test]
fn no_output_of_a_shard_or_a_merge_overwrites_another_file_it_uses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tok = tokens(d);
    let p = plan(d, "60s");
    let path = |n: &str| d.join(n).display().to_string();
    for (args, expect) in [
        (vec!["-o", &path("s0.records")], "--out (its records)"),
        (
            vec![
                "-o",
                &path("s1.json"),
                "--requests-out",
                &path("s1.records"),
            ],
            "--requests-out",
        ),
    ] {
        let mut all = vec![
            "run",
            "--plan",
            &p,
            "--shard",
            "0/3",
            "-s",
            "openai-chat",
            "-t",
            "http://127.0.0.1:9",
            "--tokens",
            &tok,
        ];
        all.extend(args.iter().map(|s| &**s));
        let o = flora(&all);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(expect), "{}", text(&o));
    }
    for i in 0..3 {
        std::fs::write(d.join(format!("shard-{i}.json")), "{}").expect("write");
        std::fs::write(d.join(format!("shard-{i}.records")), "x").expect("write");
    }
    for out in ["shard-0.records", "shard-2.json"] {
        let o = merge_into(d, &path(out));
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains("one of the files this command reads"),
            "{}",
            text(&o)
        );
        assert_ne!(
            std::fs::read(d.join(out)).expect("kept"),
            b"",
            "the input is untouched"
        );
    }
}
