//! The action's install step against a fake release server on 127.0.0.1:
//! a good checksum installs, a bad one is refused, a missing asset falls back
//! to cargo.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

type Files = Arc<HashMap<String, Vec<u8>>>;

async fn serve(State(files): State<Files>, UrlPath(path): UrlPath<String>) -> Response {
    match files.get(&path) {
        Some(b) => b.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn release_server(files: HashMap<String, Vec<u8>>) -> String {
    let app = Router::new()
        .route("/{*path}", get(serve))
        .with_state(Arc::new(files));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn target() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-gnu",
        _ => "x86_64-unknown-linux-gnu",
    }
}

/// A release asset holding a stand-in `flora-gate` that prints a version.
fn asset(dir: &Path) -> Vec<u8> {
    let stage = dir.join("stage");
    std::fs::create_dir_all(&stage).expect("mkdir");
    let exe = stage.join("flora-gate");
    std::fs::write(&exe, "#!/bin/sh\necho 'flora-gate 9.9.9'\n").expect("write");
    let ok = Command::new("chmod")
        .arg("+x")
        .arg(&exe)
        .status()
        .expect("chmod")
        .success();
    assert!(ok);
    let tarball = dir.join("asset.tar.gz");
    let ok = Command::new("tar")
        .args([
            "-czf",
            &tarball.display().to_string(),
            "-C",
            &stage.display().to_string(),
            "flora-gate",
        ])
        .status()
        .expect("tar")
        .success();
    assert!(ok);
    std::fs::read(tarball).expect("read")
}

fn sha256_hex(bytes: &[u8]) -> String {
    flora_gate::scenario::hex_sha256(bytes)
}

struct Install {
    code: i32,
    stderr: String,
    stdout: String,
    dir: PathBuf,
    github_path: String,
    cargo_log: String,
}

async fn install(base: String, work: &Path) -> Install {
    let dir = work.join("tool");
    let github_path = work.join("github_path");
    let cargo_log = work.join("cargo.log");
    // Stand-in cargo: records its arguments and "builds" a binary at --root.
    let cargo = work.join("fake-cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nroot=''\nwhile [ $# -gt 0 ]; do [ \"$1\" = --root ] && root=$2; shift; done\nmkdir -p \"$root/bin\" && printf '#!/bin/sh\\necho flora-gate source\\n' > \"$root/bin/flora-gate\" && chmod +x \"$root/bin/flora-gate\"\n",
            cargo_log.display()
        ),
    )
    .expect("write");
    Command::new("chmod")
        .arg("+x")
        .arg(&cargo)
        .status()
        .expect("chmod");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh");
    let (d, gp, c) = (dir.clone(), github_path.clone(), cargo.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .env("FLORA_GATE_RELEASE_BASE_URL", base)
            .env("FLORA_GATE_REPO", "org/flora-gate")
            .env("FLORA_GATE_VERSION", "v9.9.9")
            .env("FLORA_GATE_INSTALL_DIR", &d)
            .env("FLORA_GATE_CARGO", &c)
            .env("GITHUB_ACTION_PATH", env!("CARGO_MANIFEST_DIR"))
            .env("GITHUB_PATH", &gp)
            .output()
            .expect("bash runs")
    })
    .await
    .expect("joined");
    Install {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        dir,
        github_path: std::fs::read_to_string(github_path).unwrap_or_default(),
        cargo_log: std::fs::read_to_string(cargo_log).unwrap_or_default(),
    }
}

fn release(files: Vec<(&str, Vec<u8>)>) -> HashMap<String, Vec<u8>> {
    files
        .into_iter()
        .map(|(name, b)| (format!("org/flora-gate/releases/download/v9.9.9/{name}"), b))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_checksum_installs_the_release_binary() {
    let work = tempfile::tempdir().expect("tempdir");
    let a = asset(work.path());
    let name = format!("flora-gate-{}.tar.gz", target());
    let sums = format!(
        "{}  {name}\n{}  flora-gate-other.tar.gz\n",
        sha256_hex(&a),
        "0".repeat(64)
    );
    let base = release_server(release(vec![(&name, a), ("SHA256SUMS", sums.into_bytes())])).await;
    let r = install(base, work.path()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = Command::new(r.dir.join("flora-gate"))
        .output()
        .expect("installed binary runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "flora-gate 9.9.9"
    );
    assert!(r.github_path.contains(&r.dir.display().to_string()));
    assert!(
        r.cargo_log.is_empty(),
        "no fallback when the release is good"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_checksum_is_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let a = asset(work.path());
    let name = format!("flora-gate-{}.tar.gz", target());
    let sums = format!("{}  {name}\n", "ab".repeat(32));
    let base = release_server(release(vec![(&name, a), ("SHA256SUMS", sums.into_bytes())])).await;
    let r = install(base, work.path()).await;
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("checksum mismatch") && r.stderr.contains("refusing"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("::error"),
        "an annotation says why: {}",
        r.stdout
    );
    assert!(!r.dir.join("flora-gate").exists(), "nothing installed");
    assert!(
        r.cargo_log.is_empty(),
        "a bad checksum is not papered over by building"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_asset_falls_back_to_cargo_install() {
    let work = tempfile::tempdir().expect("tempdir");
    let base = release_server(release(vec![("SHA256SUMS", b"".to_vec())])).await;
    let r = install(base, work.path()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.cargo_log.contains("install --locked --path"),
        "{}",
        r.cargo_log
    );
    assert!(r.cargo_log.contains(env!("CARGO_MANIFEST_DIR")));
    let out = Command::new(r.dir.join("flora-gate"))
        .output()
        .expect("built binary runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "flora-gate source"
    );
}

/// The Action's `args` input as `scripts/gate.sh` hands it to flora-gate:
/// the words it received, one per line.
fn gate_sh_words(args: &str) -> (Option<i32>, Vec<String>) {
    gate_sh_words_with(args, &[])
}

/// [`gate_sh_words`] with more of the action's environment.
fn gate_sh_words_with(args: &str, env: &[(&str, &str)]) -> (Option<i32>, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let stub = bin.join("flora-gate");
    std::fs::write(
        &stub,
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
    )
    .expect("stub");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gate.sh"))
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("RUNNER_TEMP", dir.path())
        .env("FG_SCENARIO", "novel")
        .env("FG_TARGET", "http://127.0.0.1:9")
        .env("FG_COMMENT_ID", "default")
        .env("FG_FAIL", "true")
        .env("FG_ARGS", args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert!(
        !dir.path().join("pwned").exists(),
        "nothing in args is evaluated"
    );
    let words = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.code(), words)
}

#[test]
fn the_actions_gate_confirms_a_failure_unless_told_not_to() {
    let (code, words) = gate_sh_words("");
    assert_eq!(code, Some(0));
    assert!(words.iter().any(|w| w == "--confirm"), "{words:?}");
    let (_, words) = gate_sh_words_with("", &[("FG_CONFIRM", "false")]);
    assert!(!words.iter().any(|w| w == "--confirm"), "{words:?}");
    // A mode without its inputs is refused before anything runs.
    let (code, words) = gate_sh_words_with("", &[("FG_TARGET", "")]);
    assert_eq!(code, Some(2), "{words:?}");
    assert!(
        words.iter().any(|w| w.contains("needs the `target` input")),
        "{words:?}"
    );
}

#[test]
fn the_actions_args_keep_quoted_values_whole_and_evaluate_nothing() {
    // The README's example, word for word.
    let (code, words) =
        gate_sh_words(r#"--stages "to 64=30s:64,hold 64=2m:64" --gate-stage "hold 64""#);
    assert_eq!(code, Some(0));
    let tail: Vec<&str> = words
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "--stages",
            "to 64=30s:64,hold 64=2m:64",
            "--gate-stage",
            "hold 64"
        ]
    );
    let (code, words) = gate_sh_words(r#"--var 'a=$(touch pwned) `touch pwned` *' --var b=c\ d"#);
    assert_eq!(code, Some(0));
    assert!(
        words.contains(&"a=$(touch pwned) `touch pwned` *".to_string()),
        "{words:?}"
    );
    assert!(words.contains(&"b=c d".to_string()), "{words:?}");
    let (code, _) = gate_sh_words(r#"--gate-stage "hold 64"#);
    assert_eq!(code, Some(2), "an unmatched quote is an error");
}
