//! The HTML report: what a browser makes of it (no console error, charts
//! drawn), a snapshot with numbers filtered, hostile strings escaped, and
//! the size of an eight-hour soak's report.

use std::path::{Path, PathBuf};
use std::process::Command;

use flora_gate::gate;
use flora_gate::render::html::{self, charts::Against};
use flora_gate::render::report::{self, Templates};
use flora_gate::result::baseline::Baseline;
use flora_gate::result::RunResult;

use crate::common::{flora, text};

fn fixtures() -> (Baseline, RunResult) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    (
        Baseline::read(&dir.join("baseline.json")).expect("fixture baseline"),
        RunResult::read(&dir.join("current.json")).expect("fixture result"),
    )
}

fn page(r: &RunResult, v: Option<&gate::Verdict>, b: Option<&Baseline>) -> String {
    let t = Templates::load(None).expect("embedded templates");
    let ctx = report::context(r, v, None);
    let against = Against {
        baseline: b,
        reference: None,
    };
    report::html(&t, &html::run_page(r, &ctx, &against, false)).expect("renders")
}

/// A window of the time series, as the result file has it.
fn window(i: usize, len_ms: f64, ttft: f64) -> serde_json::Value {
    serde_json::json!({
        "index": i, "start_ms": i as f64 * len_ms, "end_ms": (i + 1) as f64 * len_ms,
        "warmup": false, "requests": 120, "failed": i % 97 / 96, "errors": if i % 97 == 96 { serde_json::json!({"status_503": 1}) } else { serde_json::json!({}) },
        "requests_per_s": 12.0, "output_tokens_per_s": 1500.0 + (i % 13) as f64,
        "ttft_p50_ms": ttft, "ttft_p90_ms": ttft * 1.3, "ttft_p99_ms": ttft * 1.8,
        "tpot_p50_ms": 8.0, "tpot_p90_ms": 9.0, "e2e_p50_ms": 900.0, "e2e_p90_ms": 1100.0,
        "load": {"intended": 64.0, "users": 64.0, "in_flight": 60.0, "lag_max_ms": 1.0, "cpu_cores": 0.2, "rss_mib": 80.0},
        "histograms": {"ttft": "", "tpot": "", "e2e": "", "failures": 0}
    })
}

/// The fixture stretched into an eight-hour soak at 10 s windows (2,880),
/// with a TTFT spike in one window and six server series.
fn soak() -> RunResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("current.json")).expect("read"))
            .expect("json");
    let n = 8 * 360;
    let len_ms = 10_000.0;
    let windows: Vec<_> = (0..n)
        .map(|i| {
            window(
                i,
                len_ms,
                if i == 1234 {
                    2400.0
                } else {
                    80.0 + (i % 7) as f64
                },
            )
        })
        .collect();
    v["window"]["start_ms"] = 0.0.into();
    v["window"]["end_ms"] = (n as f64 * len_ms).into();
    v["windows"] = windows.into();
    let figures: Vec<_> = (0..n)
        .map(|i| serde_json::json!({"mean": 3.0 + (i % 11) as f64, "max": 14.0}))
        .collect();
    let names = [
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:gpu_cache_usage_perc",
        "process_resident_memory_bytes",
        "hikaricp_connections_pending",
        "node_memory_MemAvailable_bytes",
    ];
    let series: Vec<serde_json::Value> = names
        .iter()
        .map(|s| {
            serde_json::json!({
                "series": format!("{s}{{model_name=\"m\"}}"), "kind": "gauge",
                "overall": {"mean": 4.0, "max": 14.0}, "windows": figures.clone()
            })
        })
        .collect();
    v["server_metrics"] = serde_json::json!({
        "endpoints": [{"url": "http://127.0.0.1:8000/metrics", "scrapes": 28800, "failures": 0}],
        "series": series
    });
    serde_json::from_value(v).expect("a result")
}

#[test]
fn an_eight_hour_soak_makes_a_report_under_one_megabyte_that_keeps_its_spike() {
    let r = soak();
    let html = page(&r, None, None);
    eprintln!(
        "HTML report of an 8-hour soak at 10 s windows ({} windows, 6 server series): {} bytes",
        r.windows.len(),
        html.len()
    );
    assert!(html.len() < 1 << 20, "{} bytes", html.len());
    // The spike (2,400 ms against ~80) is drawn: the latency chart's scale
    // reaches it (its top tick is 2,500 or more).
    let latency = html
        .split("<svg")
        .find(|s| s.contains("Latency over time"))
        .expect("the latency chart");
    assert!(
        latency.contains(">2500<") || latency.contains(">3000<"),
        "no tick near the spike"
    );
    assert!(html.contains("vllm:num_requests_waiting"), "server panels");
}

#[test]
fn hostile_strings_from_servers_and_files_are_escaped() {
    let (b, mut r) = fixtures();
    let attack = "</script><script>alert(1)</script> <img src=x onerror=alert(2)>";
    r.steps[1].name = "draft<img src=x onerror=alert(3)>".into();
    r.error_examples.push(flora_gate::result::ErrorExampleOut {
        step: r.steps[1].name.clone(),
        class: "status_500".into(),
        status: Some(500),
        body: Some(attack.into()),
        request_id: "r-1".into(),
    });
    r.steps[1].errors.insert("status_500".into(), 1);
    r.provenance.scenario.name = "</title><script>alert(4)</script>".into();
    let v = gate::compare_baseline(&b, &r, &r.gate, vec![]);
    let html = page(&r, Some(&v), Some(&b));
    for raw in ["<script", "<img", "onerror=alert(2)>", "</title><script"] {
        assert!(!html.contains(raw), "`{raw}` came out raw");
    }
    assert!(
        html.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "the body is shown, escaped"
    );
    assert!(
        html.contains("&lt;/title&gt;&lt;script&gt;alert(4)"),
        "the name is shown, escaped"
    );
}

#[test]
fn html_report_snapshot_with_numbers_filtered() {
    let (b, r) = fixtures();
    let v = gate::compare_baseline(&b, &r, &r.gate, vec![]);
    let html = page(&r, Some(&v), Some(&b));
    // The style block is checked by its hash in the policy, not here.
    let body = html
        .split("</style>")
        .nth(1)
        .expect("a style block")
        .to_string();
    insta::with_settings!({filters => vec![
        // Charts are checked in `render::html::svg` and in the browser.
        (r#"(?s)<svg class="chart"[^>]*aria-label="([^"]*)".*?</svg>"#, "[chart: $1]"),
        (r"[+-]?\d+(\.\d+)?", "[n]"),
    ]}, {
        insta::assert_snapshot!("html_fail", body);
    });
}

pub(crate) fn browser() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|b| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(b))
                .find(|p| p.is_file())
        })
}

/// Chromium on `file`, with the network off (its own network namespace
/// when one can be made, and no name resolution in any case): the DOM it
/// built and what it logged.
pub(crate) fn open_in_browser(
    chromium: &Path,
    file: &Path,
    screenshot: Option<&Path>,
) -> (String, String) {
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut cmd = if isolated {
        let mut c = Command::new("unshare");
        c.arg("-n").arg(chromium);
        c
    } else {
        Command::new(chromium)
    };
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1200,3200",
    ]);
    match screenshot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let url = format!("file://{}", file.display());
    let o = cmd.arg(url).output().expect("chromium runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A page Chromium opened without a console message, naming no resource,
/// every chart with a drawn series: how many charts.
pub(crate) fn a_clean_page(dom: &str, log: &str) -> usize {
    // The page's own messages; Chromium's about its own UI resources
    // (`source: chrome://…`, a "slow network" note on a busy machine) are not.
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(":CONSOLE") && !l.contains("source: chrome://"))
        .collect();
    assert!(console.is_empty(), "console: {console:#?}");
    for attr in [" src=", " href=", "url("] {
        assert!(!dom.contains(attr), "`{attr}` in the page");
    }
    let charts = dom.matches("<svg class=\"chart\"").count();
    let drawn = dom
        .split("<svg class=\"chart\"")
        .skip(1)
        .filter(|svg| svg.contains("d=\"M") || svg.contains("<rect class=\"bar"))
        .count();
    assert_eq!(drawn, charts, "a chart without a drawn series");
    charts
}

#[test]
fn the_demo_report_opens_offline_in_chromium_without_a_console_error() {
    let Some(chromium) = browser() else {
        assert!(
            std::env::var_os("FLORA_GATE_BROWSER_REQUIRED").is_none(),
            "no chromium on PATH (Debian: `apt-get install chromium`)"
        );
        eprintln!("SKIPPED: no chromium on PATH; `.ci/run` installs it and requires this test");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("report.html");
    let o = flora(&["demo", "-d", "4s", "--html", file.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let (dom, log) = open_in_browser(&chromium, &file, None);
    assert!(dom.contains("flora-gate · novel"), "{dom}");
    let charts = a_clean_page(&dom, &log);
    assert!(charts >= 6, "{charts} charts");
    // The server section opens with the resource panel: its table, then its
    // charts (the mock's process), before any raw series.
    let server = &dom[dom.find("id=\"server\"").expect("the server section")..];
    let panel = server.find("id=\"resources\"").expect("the resource panel");
    let process_chart = server
        .find("process CPU, per window")
        .expect("a resource chart");
    let raw = server.find("<th>series</th>").expect("the series table");
    assert!(
        panel < process_chart && process_chart < raw,
        "resources not first"
    );
    let shot = dir.path().join("report.png");
    open_in_browser(&chromium, &file, Some(&shot));
    let size = std::fs::metadata(&shot).expect("a screenshot").len();
    assert!(size > 20_000, "{size} bytes");
    if let Some(keep) = std::env::var_os("FLORA_GATE_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("keep the screenshot");
    }

    // The check can fail: a page breaking the policy is reported.
    let bad = dir.path().join("bad.html");
    let html = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &bad,
        html.replace("<main>", "<main><p style=\"color:red\">x</p>"),
    )
    .expect("write");
    let (_, log) = open_in_browser(&chromium, &bad, None);
    assert!(
        log.contains(":CONSOLE"),
        "a policy violation was not reported"
    );
}

#[test]
fn report_writes_html_for_a_capacity_file_too() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines/capacity-mock.json");
    let o = flora(&["report", "-r", dir.to_str().expect("utf-8"), "-f", "html"]);
    assert!(o.status.success(), "{}", text(&o));
    let html = String::from_utf8_lossy(&o.stdout);
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("<h2>Probes</h2>") && html.contains("C* "),
        "{html}"
    );
    assert!(html.contains("Content-Security-Policy"));
    // Nothing to load: no attribute that names a resource.
    for attr in ["src=", "href=", "url("] {
        assert!(!html.contains(attr), "`{attr}` in the page");
    }
}
