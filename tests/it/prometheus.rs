//! The monitoring kit against a real Prometheus (Debian's `prometheus`) on
//! loopback: it scrapes a two-level ramp's `--metrics-listen`, the mock and
//! node_exporter every second; its `histogram_quantile` of TTFT is within
//! 5% of the result's p90 at each held level, and every PromQL expression
//! of the Grafana dashboard and the rules returns data from it.

use std::path::Path;
use std::time::Duration;

use crate::common::{read_json, run_cli, spawn_mock, text};
use crate::resources::{component, free_port, start_node_exporter, wait_listening, Child};

/// A Prometheus on loopback scraping `targets` (job → `host:port`) every
/// second, with the kit's rules; its base URL.
fn start_prometheus(bin: &Path, dir: &Path, targets: &[(&str, String)]) -> (Child, String) {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/rules.yml");
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
        rules.display()
    );
    for (job, target) in targets {
        config +=
            &format!("  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n");
    }
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).expect("config");
    let port = free_port();
    let child = Child(
        std::process::Command::new(bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    wait_listening(port);
    // Ready: its storage open and its scrape loops running.
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        let ok = std::process::Command::new("curl")
            .args(["-sf", "--max-time", "1", &format!("{url}/-/ready")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, url)
}

/// An instant query at `time` (Unix seconds): the result vector.
pub fn query(prometheus: &str, expr: &str, time: f64) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-G"])
        .arg(format!("{prometheus}/api/v1/query"))
        .args(["--data-urlencode", &format!("query={expr}")])
        .args(["--data-urlencode", &format!("time={time}")])
        .output()
        .expect("curl runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{expr}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Every PromQL expression of the dashboard and the rules; an alert's
/// without its threshold (the data it compares, not whether it fires).
fn kit_expressions() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana/flora-gate.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut out: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("expr")
                .replace("$run_id", ".*")
                .replace("$scenario", ".*")
        })
        .collect();
    let rules = std::fs::read_to_string(root.join("prometheus/rules.yml")).expect("rules");
    for line in rules.lines() {
        if let Some(expr) = line.trim().strip_prefix("expr: ") {
            let bare = [" > ", " == "]
                .iter()
                .find_map(|op| expr.rsplit_once(op).map(|(l, _)| l))
                .unwrap_or(expr);
            // A recorded series is checked by its own expression.
            out.push(bare.replace(
                "flora_gate:ttft_seconds:p90_1m",
                "histogram_quantile(0.9, sum by (run_id, scenario, step, le) (rate(flora_gate_ttft_seconds_bucket[1m])))",
            ).replace(
                "flora_gate:error_ratio:1m",
                "(sum by (run_id, scenario) (rate(flora_gate_errors_total[1m])) / clamp_min(sum by (run_id, scenario) (rate(flora_gate_requests_total[1m])), 1e-9))",
            ));
        }
    }
    out
}

#[test]
fn the_dashboard_and_rules_read_a_ramp_through_a_real_prometheus() {
    let (Some(prometheus), Some(exporter)) = (
        component("prometheus"),
        component("prometheus-node-exporter"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_node, node_port) = start_node_exporter(&exporter);
    let mock = spawn_mock(&[
        "--jitter-ms",
        "20",
        "--error-rate",
        "500=0.05",
        "--db-pool",
        "8",
    ]);
    let mock_addr = mock.url.trim_start_matches("http://").to_string();
    let live_port = free_port();
    let (_prom, prom_url) = start_prometheus(
        &prometheus,
        dir.path(),
        &[
            ("flora-gate", format!("127.0.0.1:{live_port}")),
            ("server", mock_addr),
            ("node", format!("127.0.0.1:{node_port}")),
        ],
    );
    let live = format!("127.0.0.1:{live_port}");
    let (o, out) = run_cli(
        dir.path(),
        "openai-chat",
        &mock.url,
        12,
        &[
            "--stages",
            "hold 4=1s:4,at 4=10s:4,rise=1s:12,at 12=10s:12",
            "--warmup",
            "0s",
            "--metrics-listen",
            &live,
            "--metrics-linger",
            "3s",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = read_json(&out);
    let started = chrono::DateTime::parse_from_rfc3339(
        r["provenance"]["started_at"].as_str().expect("start"),
    )
    .expect("a time")
    .timestamp_millis() as f64
        / 1000.0;
    let end = started + r["provenance"]["elapsed_s"].as_f64().expect("elapsed");
    let run_id = query(
        &prom_url,
        "last_over_time(flora_gate_requests_total[1h])",
        end,
    )
    .first()
    .and_then(|s| s["metric"]["run_id"].as_str().map(String::from))
    .expect("the run's series in Prometheus");

    // Each held level: Prometheus' p90 over the hold against the result's.
    for stage in r["stages"].as_array().expect("stages") {
        let name = stage["name"].as_str().expect("name");
        if !name.starts_with("at ") {
            continue;
        }
        let (a, b) = (
            stage["start_ms"].as_f64().expect("start") / 1000.0,
            stage["end_ms"].as_f64().expect("end") / 1000.0,
        );
        // The hold less a second at each end, where scrapes blur into the
        // ramp next to it.
        let span = (b - a - 2.0).round();
        let expr = format!(
            "histogram_quantile(0.9, sum by (le) (increase(flora_gate_ttft_seconds_bucket{{run_id=\"{run_id}\"}}[{span}s])))"
        );
        let v = query(&prom_url, &expr, started + b - 1.0);
        let theirs: f64 = v[0]["value"][1]
            .as_str()
            .expect("value")
            .parse()
            .expect("number");
        let ours = stage["steps"][0]["ttft_ms"]["p90"].as_f64().expect("p90") / 1000.0;
        let err = (theirs / ours - 1.0).abs();
        eprintln!(
            "{name}: Prometheus TTFT p90 {theirs:.4}s, the result's {ours:.4}s ({:.1}%)",
            err * 100.0
        );
        assert!(err <= 0.05, "{name}: {theirs} against {ours}");
    }

    // Every expression of the kit has data at the end of the run.
    let mut empty = Vec::new();
    for expr in kit_expressions() {
        if query(&prom_url, &expr, end).is_empty() {
            empty.push(expr);
        }
    }
    assert!(
        empty.is_empty(),
        "expressions without data:\n{}",
        empty.join("\n")
    );
    drop(mock);
    std::thread::sleep(Duration::from_millis(10));
}

/// The dashboard holds to Grafana's dashboard model: a uid, a title and a
/// schema version; panels with unique ids on the 24-column grid, each query
/// with its own refId and an expression; the variables it uses defined.
#[test]
fn the_dashboard_is_a_grafana_dashboard() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/flora-gate.json");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    assert!(d["uid"].is_string() && d["title"].is_string(), "{d}");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for p in panels {
        let id = p["id"].as_u64().expect("id");
        assert!(ids.insert(id), "panel id {id} twice");
        assert!(matches!(
            p["type"].as_str(),
            Some("timeseries" | "stat" | "table")
        ));
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
        assert!(
            x + w <= 24 && g["h"].as_u64().is_some() && g["y"].as_u64().is_some(),
            "{g}"
        );
        let mut refs = std::collections::BTreeSet::new();
        for t in p["targets"].as_array().expect("targets") {
            assert!(refs.insert(t["refId"].as_str().expect("refId").to_string()));
            let expr = t["expr"].as_str().expect("expr");
            for var in expr.split('$').skip(1) {
                let name: String = var
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                assert!(vars.contains(&name.as_str()), "${name} is not a variable");
            }
        }
        let ds = p["datasource"]["uid"].as_str().expect("datasource");
        assert!(vars.contains(&ds.trim_start_matches("${").trim_end_matches('}')));
    }
}

/// `--metrics-push`: a run shorter than any scrape interval, pushing to a
/// Prometheus that scrapes nothing, still leaves its final counters there.
#[test]
fn a_short_run_pushes_its_final_figures_with_remote_write() {
    let Some(prometheus) = component("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_prom, prom_url) = start_prometheus(&prometheus, dir.path(), &[]);
    let mock = spawn_mock(&["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "16"]);
    let push = format!("{prom_url}/api/v1/write");
    let (o, out) = run_cli(
        dir.path(),
        "openai-chat",
        &mock.url,
        2,
        &[
            "-c",
            "2",
            "-d",
            "3s",
            "--warmup",
            "0s",
            "--metrics-push",
            &push,
            "--metrics-push-interval",
            "10s",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("pushes failed"), "{}", text(&o));
    let r = read_json(&out);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let v = query(
        &prom_url,
        "last_over_time(flora_gate_requests_total{job=\"flora-gate\",step=\"chat\"}[5m])",
        now,
    );
    assert_eq!(v.len(), 1, "{v:?}");
    let pushed: f64 = v[0]["value"][1]
        .as_str()
        .expect("value")
        .parse()
        .expect("a number");
    let measured = r["totals"]["requests"].as_f64().expect("requests");
    assert!(
        pushed >= measured && measured > 0.0,
        "pushed {pushed}, the result {measured}"
    );
    // The histograms came too, with their buckets.
    let p90 = query(
        &prom_url,
        "histogram_quantile(0.9, sum by (le) (last_over_time(flora_gate_ttft_seconds_bucket[5m])))",
        now,
    );
    let theirs: f64 = p90[0]["value"][1]
        .as_str()
        .expect("value")
        .parse()
        .expect("a number");
    let ours = r["steps"][0]["ttft_ms"]["p90"].as_f64().expect("p90") / 1000.0;
    assert!(
        (theirs / ours - 1.0).abs() <= 0.05,
        "{theirs} against {ours}"
    );
}

/// A receiver that is not there costs the run nothing: the pushes fail,
/// the run completes, and the end says how many failed.
#[test]
fn a_dead_push_receiver_is_said_and_never_fails_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = spawn_mock(&[]);
    let push = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    let (o, _) = run_cli(
        dir.path(),
        "openai-chat",
        &mock.url,
        1,
        &[
            "-c",
            "1",
            "-d",
            "2s",
            "--warmup",
            "0s",
            "--metrics-push",
            &push,
            "--metrics-push-interval",
            "1s",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("metrics pushes failed"), "{}", text(&o));
}
