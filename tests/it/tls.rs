//! An HTTPS target with a self-signed certificate: untrusted, every request
//! is a counted `tls` failure and the run completes; trusted with
//! `--ca-cert`, the same run succeeds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{chat_scenario, Load};
use flora_gate::engine::Plan;
use flora_gate::mock::MockConfig;
use tokio_util::sync::CancellationToken;

/// Serve the mock's routes over TLS with a fresh self-signed certificate;
/// returns the URL and the certificate in PEM.
async fn tls_mock() -> (String, String) {
    tls_mock_speaking(false).await
}

/// [`tls_mock`], speaking only HTTP/2 (ALPN `h2`) when `h2`: a client that
/// cannot speak it fails the handshake.
pub async fn tls_mock_speaking(h2: bool) -> (String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("cert");
    let cert_der = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)
        .expect("server config");
    if h2 {
        config.alpn_protocols = vec![b"h2".to_vec()];
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (router, _) = flora_gate::mock::router(
        MockConfig {
            ttft: Duration::from_millis(5),
            itl: Duration::from_millis(1),
            output_tokens: 8,
            ..MockConfig::default()
        },
        CancellationToken::new(),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let io = hyper_util::rt::TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(io, service)
                    .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    (format!("https://127.0.0.1:{}", addr.port()), ck.cert.pem())
}

async fn run(url: &str, ca: Option<Vec<u8>>) -> flora_gate::result::RunResult {
    let load = Load {
        concurrency: 2,
        duration: None,
        requests: Some(6),
        warmup: Duration::ZERO,
    };
    let plan = Plan {
        ca_cert: ca,
        ..crate::common::plan_for(chat_scenario(""), url, load)
    };
    crate::common::run_plan(plan).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_target_fails_as_tls_until_trusted() {
    let (url, pem) = tls_mock().await;
    let untrusted = run(&url, None).await;
    assert_eq!(
        untrusted.steps[0].errors.get("tls"),
        Some(&6),
        "{:?}",
        untrusted.steps[0].errors
    );
    // The example says why, not only that it failed.
    let why = untrusted
        .error_examples
        .iter()
        .find(|e| e.class == "tls")
        .and_then(|e| e.body.clone())
        .unwrap_or_default();
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    let trusted = run(&url, Some(pem.into_bytes())).await;
    assert_eq!(trusted.steps[0].failed, 0, "{:?}", trusted.steps[0].errors);
    assert_eq!(trusted.steps[0].ok, 6);
}

#[test]
fn a_bad_ca_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate").expect("write");
    let tokens = dir.path().join("t.csv");
    std::fs::write(&tokens, "tok\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flora-gate"))
        .args([
            "run",
            "-s",
            "openai-chat",
            "-t",
            "https://127.0.0.1:9",
            "--tokens",
            &tokens.display().to_string(),
            "-d",
            "2s",
        ])
        .args(["--ca-cert", &bad.display().to_string()])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ca.pem") && stderr.contains("--ca-cert"),
        "{stderr}"
    );
}
