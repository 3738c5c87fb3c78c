//! The generator's own limits: file descriptors, a full temporary
//! directory, the live endpoint's connections, a stale plan. Each is the
//! tool's failure, said as such, never blamed on the target.

use std::path::Path;

use crate::common::{flora, get_body, read_json, spawn_mock, text, tokens_csv, BIN};

/// Requests the mock has answered.
fn answered(mock_url: &str) -> u64 {
    let stats: serde_json::Value =
        serde_json::from_str(&get_body(&format!("{mock_url}/_mock/stats"))).expect("stats");
    stats["requests"]
        .as_u64()
        .expect("the mock counts its requests")
}

#[cfg(target_os = "linux")]
#[test]
fn more_users_than_open_files_is_refused_before_any_request() {
    let mock = spawn_mock(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = tokens_csv(dir.path(), 4);
    let out = dir.path().join("r.json");
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec {BIN} run -s openai-chat -t {} --tokens {tok} -c 300 -d 2s --no-progress -o {}",
            mock.url,
            out.display()
        ))
        .output()
        .expect("runs");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("300 users need about"), "{t}");
    assert!(t.contains("may open 256 (hard limit 256)"), "{t}");
    assert!(t.contains("ulimit -n"), "{t}");
    assert_eq!(answered(&mock.url), 0, "nothing was sent");
}

/// `flora-gate run` with its temporary directory on a 256 KiB file system
/// of its own (a user and mount namespace; no privilege needed).
#[cfg(target_os = "linux")]
fn run_with_a_small_tmpdir(dir: &Path, mock_url: &str) -> std::process::Output {
    let tmp = dir.join("small");
    std::fs::create_dir(&tmp).expect("mkdir");
    let tok = tokens_csv(dir, 16);
    let script = format!(
        "mount -t tmpfs -o size=256k none {tmp} && TMPDIR={tmp} exec {BIN} run -s openai-chat -t {mock_url} --tokens {tok} -c 16 -d 60s --warmup 0s --var max_tokens=2 --no-progress -o {out} --requests-out {out}.jsonl",
        tmp = tmp.display(),
        out = dir.join("r.json").display(),
    );
    let o = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    assert!(
        !text(&o).contains("mount:") && !text(&o).contains("unshare:"),
        "this test needs unprivileged user and mount namespaces (`unshare -rm`): {}",
        text(&o)
    );
    o
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_tmpdir_stops_the_run_and_keeps_what_was_recorded() {
    let mock = spawn_mock(&["--ttft-ms", "1", "--itl-ms", "1", "--output-tokens", "2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let o = run_with_a_small_tmpdir(dir.path(), &mock.url);
    let t = text(&o);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "the run stopped at the failure instead of running its 60 s: {t}"
    );
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("cannot record the run's requests"), "{t}");
    let r = read_json(&dir.path().join("r.json"));
    assert_eq!(r["status"], "partial", "{t}");
    let reason = r["status_reason"].as_str().unwrap_or("");
    assert!(reason.contains("recording failed"), "{reason}");
    assert!(
        reason.contains("not in the result"),
        "what was lost is said: {reason}"
    );
    let recorded = r["totals"]["requests"].as_u64().unwrap_or(0);
    assert!(
        recorded > 100,
        "what reached the disk is summarised: {recorded}"
    );
    assert!(
        answered(&mock.url) < recorded * 4 + 2000,
        "sending stopped soon after the failure"
    );
}

#[test]
fn a_plan_whose_start_has_passed_is_refused() {
    let mock = spawn_mock(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("plan.json");
    let o = flora(&[
        "plan",
        "-s",
        "openai-chat",
        "--shards",
        "2",
        "-c",
        "4",
        "-d",
        "4s",
        "--start-in",
        "1s",
        "-o",
        p.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let tok = tokens_csv(dir.path(), 4);
    for when in ["2026-01-01T00:00:00Z", "1970-01-01T00:00:00Z"] {
        let mut plan = read_json(&p);
        plan["start_at"] = serde_json::Value::String(when.into());
        let stale = dir.path().join("stale.json");
        std::fs::write(&stale, plan.to_string()).expect("write");
        let out = dir.path().join("s0.json");
        let o = flora(&[
            "run",
            "--plan",
            stale.to_str().expect("utf-8"),
            "--shard",
            "0/2",
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "--tokens",
            &tok,
            "--no-progress",
            "-o",
            out.to_str().expect("utf-8"),
        ]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{when}: {t}");
        assert!(t.contains("nothing of it is left to run"), "{t}");
        assert!(!out.exists(), "{when}: no result");
    }
    assert_eq!(answered(&mock.url), 0, "nothing was sent");
}

#[cfg(target_os = "linux")]
#[test]
fn idle_connections_to_the_live_endpoint_cannot_take_the_generators_descriptors() {
    use std::io::{BufRead, BufReader};
    let mock = spawn_mock(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = tokens_csv(dir.path(), 4);
    let out = dir.path().join("r.json");
    let mut child = std::process::Command::new(BIN)
        .args([
            "run",
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "--tokens",
            &tok,
            "-c",
            "4",
            "-d",
            "12s",
        ])
        .args([
            "--var",
            "max_tokens=8",
            "--no-progress",
            "--metrics-listen",
            "127.0.0.1:0",
            "-o",
        ])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).expect("reads") > 0,
            "the bound address is printed"
        );
        if let Some(u) = line.trim().strip_prefix("live metrics: ") {
            break u.to_string();
        }
    };
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    assert!(
        !addr.ends_with(":0"),
        "the port bound, not the one asked: {addr}"
    );
    let idle: Vec<_> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .expect("fds")
        .count();
    assert!(
        fds < 150,
        "{fds} descriptors open with 300 idle connections"
    );
    // Idle connections time out; the endpoint answers again.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert!(
        get_body(&url).contains("flora_gate_"),
        "the endpoint answers"
    );
    drop(idle);
    let status = child.wait().expect("ends");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert!(status.success(), "{rest}");
    let r = read_json(&out);
    assert_eq!(
        r["totals"]["failed"].as_u64(),
        Some(0),
        "no request failed: {rest}"
    );
}
