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
