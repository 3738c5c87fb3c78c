//! The history end to end: nightly results of a mock that slows down at
//! night 12, the change point named with its commits, the HTML trend page
//! in Chromium, the baseline since the change point, and bad input.

use std::path::Path;

use serde_json::Value;

use super::common::{flora, spawn_mock, text, tokens_csv};
use super::html::{a_clean_page, browser, open_in_browser};

/// Night `n`'s commit: its first seven characters differ from night to night.
fn commit(n: usize) -> String {
    format!("n{n:02}c{}", "0".repeat(36))
}

/// One run of the novel workflow against `url`, its result at `out`.
fn night(url: &str, tokens: &str, out: &Path) {
    let o = flora(&[
        "run",
        "-s",
        "novel",
        "-t",
        url,
        "--tokens",
        tokens,
        "-c",
        "4",
        "--requests",
        "40",
        "--warmup",
        "0s",
        "--no-progress",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn twenty_nights_with_a_slowdown_at_night_twelve_name_its_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tokens = tokens_csv(d, 4);
    let shape = ["--ttft-ms", "40", "--itl-ms", "3", "--output-tokens", "24"];
    let steady = spawn_mock(&shape);
    let slower = spawn_mock(&[&shape[..], &["--slowdown", "1.25"]].concat());
    let history = d.join("history");
    let h = history.to_str().expect("utf-8");
    for n in 1..=20 {
        let url = if n >= 12 { &slower.url } else { &steady.url };
        let result = d.join(format!("r{n}.json"));
        night(url, &tokens, &result);
        let o = flora(&[
            "history",
            h,
            "--add",
            result.to_str().expect("utf-8"),
            "--commit",
            &commit(n),
            "-f",
            "text",
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    // Added twice, kept once.
    let again = flora(&[
        "history",
        h,
        "--add",
        d.join("r20.json").to_str().expect("utf-8"),
    ]);
    assert!(
        text(&again).contains("already in the history"),
        "{}",
        text(&again)
    );
    let lines = std::fs::read_to_string(history.join("history.jsonl")).expect("history");
    assert_eq!(lines.lines().count(), 20);

    let html = d.join("trend.html");
    let o = flora(&[
        "history",
        h,
        "-f",
        "json",
        "--markdown-out",
        d.join("history.md").to_str().expect("utf-8"),
        "--html-out",
        html.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t: Value = serde_json::from_slice(&o.stdout).expect("json");
    // A night the machine starved (the generator saturated) is kept in the
    // file and left out of the series, and the notes say so.
    let nights: Vec<String> = t["nights"]
        .as_array()
        .expect("nights")
        .iter()
        .map(|n| n["commit"].as_str().expect("commit").to_string())
        .collect();
    let left_out = 20 - nights.len();
    assert!(left_out <= 4, "{left_out} nights left out: {}", t["notes"]);
    if left_out > 0 {
        assert!(
            t["notes"].to_string().contains("left out"),
            "{}",
            t["notes"]
        );
    }
    // The first slow night among those analysed (night 12, unless it was left out).
    let first_slow = nights
        .iter()
        .position(|c| *c >= commit(12))
        .expect("slow nights");
    let series = t["series"].as_array().expect("series");
    let ttft = series
        .iter()
        .find(|s| s["scope"] == "all" && s["metric"] == "ttft_p90")
        .expect("TTFT p90 over all steps");
    let changes = ttft["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let c = &changes[0];
    let (earliest, latest) = (
        c["earliest"].as_u64().expect("earliest") as usize,
        c["latest"].as_u64().expect("latest") as usize,
    );
    // The first slow night's commit is in the named range.
    assert!(earliest <= first_slow && first_slow <= latest, "{c:#}");
    assert_eq!(c["to_commit"], nights[latest]);
    assert_eq!(c["from_commit"], nights[earliest - 1]);
    assert!(c["regression"] == true, "{c:#}");
    let step = c["step"].as_f64().expect("step");
    assert!((0.12..0.35).contains(&step), "step {step}");
    let md = std::fs::read_to_string(d.join("history.md")).expect("markdown");
    // No marker of its own: `comment --id` adds the sticky one.
    assert!(md.starts_with("## flora-gate history"), "{md}");
    assert!(md.contains(&format!("`{}`", &nights[latest][..7])), "{md}");
    assert!(md.contains("TTFT p90"), "{md}");

    // The baseline since the change point holds the slow nights only, and
    // the newest night passes against it.
    let baseline = d.join("b.json");
    let o = flora(&[
        "baseline",
        "refresh",
        "--since-change-point",
        h,
        "-o",
        baseline.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let b: Value =
        serde_json::from_str(&std::fs::read_to_string(&baseline).expect("baseline")).expect("json");
    let runs = b["runs"].as_array().expect("runs").len();
    assert!((3..=9).contains(&runs), "{runs} runs");
    assert!(text(&o).contains("since"), "{}", text(&o));

    // The PR gate also reads the long-term reference: tonight passes its
    // one-level baseline, and the creep since the first nights is a note and
    // a warning.
    let o = flora(&[
        "gate",
        "--result",
        d.join("r20.json").to_str().expect("utf-8"),
        "-b",
        baseline.to_str().expect("utf-8"),
        "--history",
        h,
        "--verdict-out",
        d.join("v.json").to_str().expect("utf-8"),
        "--report-out",
        d.join("v.md").to_str().expect("utf-8"),
        "--comment",
        "never",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("v.json")).expect("verdict"))
            .expect("json");
    assert_eq!(v["verdict"], "warn", "{v:#}");
    let notes = v["notes"].to_string();
    assert!(
        notes.contains("against the long-term reference (the "),
        "{notes}"
    );
    // The nights were measured on this machine: the creep is read within
    // the band the change point's step is held to.
    let creep: f64 = notes
        .split("TTFT p90 +")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no TTFT p90 creep: {notes}"));
    assert!((12.0..35.0).contains(&creep), "creep {creep}%: {notes}");
    check_in_chromium(
        &html,
        d,
        &format!("{}…{}", &nights[earliest - 1][..7], &nights[latest][..7]),
    );
}

fn check_in_chromium(html: &Path, d: &Path, marker: &str) {
    let Some(chromium) = browser() else {
        assert!(
            std::env::var_os("FLORA_GATE_BROWSER_REQUIRED").is_none(),
            "no chromium on PATH (Debian: `apt-get install chromium`)"
        );
        eprintln!("SKIPPED: no chromium on PATH; `.ci/run` installs it and requires this test");
        return;
    };
    let (dom, log) = open_in_browser(&chromium, html, None);
    assert!(dom.contains("flora-gate history"), "{dom}");
    let charts = a_clean_page(&dom, &log);
    assert!(charts >= 4, "{charts} charts");
    // The step's marker names the commit range on the TTFT chart.
    assert!(dom.contains(marker), "no marker `{marker}` in {dom}");
    let shot = d.join("trend.png");
    open_in_browser(&chromium, html, Some(&shot));
    let size = std::fs::metadata(&shot).expect("a screenshot").len();
    assert!(size > 20_000, "{size} bytes");
    if let Some(keep) = std::env::var_os("FLORA_GATE_KEEP_HISTORY_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("keep the screenshot");
    }
}

#[test]
fn bad_histories_and_flags_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let missing = d.join("nothing");
    let o = flora(&["history", missing.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("does not exist") && text(&o).contains("--add"),
        "{}",
        text(&o)
    );

    let o = flora(&["history", d.to_str().expect("utf-8"), "--alpha", "0.7"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--alpha"), "{}", text(&o));

    // A capacity result is not a run.
    let capacity = concat!(env!("CARGO_MANIFEST_DIR"), "/baselines/capacity-mock.json");
    let o = flora(&["history", d.to_str().expect("utf-8"), "--add", capacity]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!d.join("history.jsonl").exists(), "nothing written");

    // A history of garbage: every line named, then "no record".
    let file = d.join("h.jsonl");
    std::fs::write(&file, "{not json\n{\"kind\":\"flora-gate/verdict\"}\n").expect("write");
    let o = flora(&["history", file.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("holds no record"), "{}", text(&o));

    // One good night among bad lines: shown, and the bad lines said.
    let mock = spawn_mock(&["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "8"]);
    let tokens = tokens_csv(d, 4);
    let r = d.join("r.json");
    night(&mock.url, &tokens, &r);
    let o = flora(&[
        "history",
        file.to_str().expect("utf-8"),
        "--add",
        r.to_str().expect("utf-8"),
        "-f",
        "text",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("line 1 left out: not JSON"), "{out}");
    assert!(out.contains("`flora-gate/verdict` record"), "{out}");
    assert!(out.contains("1 night(s) of this setup"), "{out}");

    // Too few nights for a baseline of one level.
    let o = flora(&[
        "baseline",
        "refresh",
        "--since-change-point",
        file.to_str().expect("utf-8"),
        "-o",
        d.join("b.json").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("only 1 night(s)"), "{}", text(&o));
    assert!(!d.join("b.json").exists());

    // The output may not be the history it reads.
    let o = flora(&[
        "history",
        file.to_str().expect("utf-8"),
        "-o",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
