//! Helpers shared by the integration tests: an in-process mock and runs against it.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flora_gate::engine::{self, Plan, RunOutput};
use flora_gate::mock::{self, MockConfig, MockHandle};
use flora_gate::result::{self, RunResult};
use flora_gate::scenario::Scenario;
use flora_gate::tokens;
use tokio_util::sync::CancellationToken;

pub async fn start_mock(cfg: MockConfig) -> MockHandle {
    mock::start(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("mock binds to a free port")
}

pub fn scenario(text: &str) -> Scenario {
    Scenario::parse(text, Path::new("test.toml"), None, &[]).expect("test scenario is valid")
}

pub struct Load {
    pub concurrency: u32,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub warmup: Duration,
}

/// A checked target from a test's URL.
pub fn target(url: &str) -> flora_gate::target::Target {
    flora_gate::target::Target::parse(url, flora_gate::target::Source { name: "--target" })
        .expect("a test URL")
}

/// A plan for `sc` against `target` with `load`, generated tokens, no progress line.
pub fn plan_for(sc: Scenario, target: &str, load: Load) -> Plan {
    let mut spec = sc.load.clone();
    spec.concurrency = load.concurrency;
    spec.duration = load.duration;
    spec.requests = load.requests;
    spec.warmup = load.warmup;
    Plan::new(
        Arc::new(sc),
        self::target(target),
        Arc::new(tokens::generated(load.concurrency as usize)),
        spec,
    )
}

pub async fn run(sc: Scenario, target: &str, load: Load) -> (RunResult, RunOutput) {
    run_plan(plan_for(sc, target, load)).await
}

/// Run a plan to the end and summarise it.
pub async fn run_plan(plan: Plan) -> (RunResult, RunOutput) {
    let out = engine::run(
        plan.clone(),
        CancellationToken::new(),
        CancellationToken::new(),
    )
    .await
    .expect("run completes");
    (
        result::build(&plan, &out).expect("the run's records read back"),
        out,
    )
}

/// A one-step OpenAI chat scenario with the given extra TOML (timeouts etc.).
pub fn chat_scenario(extra: &str) -> Scenario {
    scenario(&format!(
        r#"
name = "chat-test"
[auth]
kind = "bearer"
{extra}
[[steps]]
name = "chat"
path = "/v1/chat/completions"
body = '{{"model": "m", "messages": [{{"role": "user", "content": "hi"}}], "stream": true}}'
"#
    ))
}

/// The built binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_flora-gate");

/// `flora-gate mock --port 0 ARGS…` as a child process, killed on drop.
pub struct MockProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the mock binary on a free port.
pub fn spawn_mock(args: &[&str]) -> MockProcess {
    spawn_mock_in(Path::new("."), args)
}

/// Start the mock binary on a free port, in `dir` (where its `--tokens`
/// file is).
pub fn spawn_mock_in(dir: &Path, args: &[&str]) -> MockProcess {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(BIN)
        .current_dir(dir)
        .args(["mock", "--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mock starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("mock prints its URL");
    MockProcess {
        child,
        url: line.trim().to_string(),
    }
}

/// The built binary with `args`, outside GitHub Actions whatever the
/// environment, its output captured.
pub fn flora(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("runs")
}

/// stdout and stderr of a finished command, as one text.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A tokens CSV of `n` users in `dir`; its path.
pub fn tokens_csv(dir: &std::path::Path, n: usize) -> String {
    let p = dir.join("tokens.csv");
    let mut csv = String::from("user_id,access_token\n");
    for i in 0..n {
        csv.push_str(&format!("u{i},test-token-{i:04}\n"));
    }
    std::fs::write(&p, csv).expect("tokens written");
    p.to_str().expect("utf-8").to_string()
}

/// `flora-gate run -s SCENARIO -t TARGET` with a tokens file of `users`
/// tokens in `dir`, no progress line, the result written to `dir/r.json`,
/// then `extra` flags: the command's output and the result's path.
pub fn run_cli(
    dir: &Path,
    scenario: &str,
    target: &str,
    users: usize,
    extra: &[&str],
) -> (std::process::Output, std::path::PathBuf) {
    let tokens = tokens_csv(dir, users);
    let out = dir.join("r.json");
    let mut args = vec![
        "run",
        "-s",
        scenario,
        "-t",
        target,
        "--tokens",
        &tokens,
        "--no-progress",
        "-o",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    (flora(&args), out)
}

/// What `run -s SCENARIO -t http://127.0.0.1:9` (then `extra` flags) says
/// of a scenario file that must be refused: its exit is 2.
pub fn refused(scenario: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("s.toml");
    std::fs::write(&p, scenario).expect("write");
    let mut args = vec![
        "run",
        "-s",
        p.to_str().expect("utf-8"),
        "-t",
        "http://127.0.0.1:9",
    ];
    args.extend_from_slice(extra);
    let o = flora(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    t
}

/// A result file, parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("result")).expect("JSON")
}

/// The Markdown report of a result file (`flora-gate report -r FILE`).
pub fn report_md(path: &Path) -> String {
    text(&flora(&["report", "-r", path.to_str().expect("utf-8")]))
}

/// A plain HTTP/1.1 request on loopback (no client library, nothing
/// pooled): the whole answer, status line first.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).expect("connects");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    write!(s, "{head}\r\n{body}").expect("sent");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// The body of a plain GET on loopback.
pub fn get_body(url: &str) -> String {
    http("GET", url, &[], "")
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .expect("a body")
}
