//! The load's request path against servers of our own: an `http://` proxy
//! (absolute-form requests, `CONNECT` for TLS, `NO_PROXY`, proxy
//! credentials), an HTTP/2-only TLS server, and a server that answers one
//! request per connection and closes the next without a word.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{chat_scenario, tokens_csv, Load, BIN};

/// Read one request head (up to the blank line) byte by byte, so nothing
/// after it is consumed.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 || head.len() > 64 << 10 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A forwarding proxy on loopback: plain requests in absolute form are
/// relayed to their origin, `CONNECT` opens a tunnel. Each connection's first
/// request head is recorded.
async fn proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut client).await else {
                    return;
                };
                log.lock().expect("log").push(head.clone());
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let connect = head.starts_with("CONNECT ");
                let authority = if connect {
                    target
                } else {
                    let rest = target.strip_prefix("http://").unwrap_or(&target);
                    rest.split('/').next().unwrap_or("").to_string()
                };
                let Ok(mut origin) = TcpStream::connect(&authority).await else {
                    return;
                };
                if connect {
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                } else if origin.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
            });
        }
    });
    (url, seen)
}

/// `flora-gate run` of `requests` chat requests at `target`, with `env`.
async fn run_with_env(
    target: &str,
    env: &[(&str, &str)],
    extra: &[&str],
) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_csv(dir.path(), 2);
    let out = dir.path().join("r.json");
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "run",
        "-s",
        "openai-chat",
        "-t",
        target,
        "--tokens",
        &tokens,
    ])
    .args([
        "-c",
        "2",
        "--requests",
        "6",
        "--warmup",
        "0s",
        "--no-progress",
        "-o",
    ])
    .arg(&out)
    .args(extra)
    .env_remove("GITHUB_ACTIONS");
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
        cmd.env_remove(k).env_remove(k.to_ascii_lowercase());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = tokio::task::spawn_blocking(move || cmd.output().expect("runs"))
        .await
        .expect("joins");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let result = std::fs::read_to_string(&out)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| panic!("no result: {text}"));
    (result, text)
}

fn ok_and_failed(r: &serde_json::Value) -> (u64, u64) {
    let step = &r["steps"][0];
    (
        step["ok"].as_u64().unwrap_or(0),
        step["failed"].as_u64().unwrap_or(u64::MAX),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_go_through_http_proxy_unless_no_proxy_names_the_host() {
    let mock =
        crate::common::spawn_mock(&["--ttft-ms", "2", "--itl-ms", "1", "--output-tokens", "8"]);
    let (proxy_url, seen) = proxy().await;
    let (r, text) = run_with_env(&mock.url, &[("HTTP_PROXY", &proxy_url)], &[]).await;
    assert_eq!(ok_and_failed(&r), (6, 0), "{text}");
    let heads = seen.lock().expect("log").clone();
    let origin = mock.url.trim_end_matches('/');
    assert!(!heads.is_empty(), "the proxy saw nothing");
    for h in &heads {
        assert!(
            h.starts_with(&format!("POST {origin}/v1/chat/completions HTTP/1.1\r\n")),
            "not absolute form: {h}"
        );
        assert!(!h.contains("Proxy-Authorization"), "{h}");
    }
    // Connections are kept and reused through the proxy: 2 users, 6 requests.
    assert!(heads.len() <= 2, "{} connections for 2 users", heads.len());

    seen.lock().expect("log").clear();
    let (r, text) = run_with_env(
        &mock.url,
        &[
            ("HTTP_PROXY", &proxy_url),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
        &[],
    )
    .await;
    assert_eq!(ok_and_failed(&r), (6, 0), "{text}");
    assert!(
        seen.lock().expect("log").is_empty(),
        "NO_PROXY was not honoured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_goes_through_connect_with_the_proxys_credentials_kept_out_of_the_output() {
    let (url, pem) = crate::tls::tls_mock_speaking(false).await;
    let (proxy_url, seen) = proxy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).expect("write");
    let with_auth = proxy_url.replace("http://", "http://proxyuser:pr0xy-s3cret@");
    let (r, text) = run_with_env(
        &url,
        &[("https_proxy", &with_auth)],
        &["--ca-cert", &ca.display().to_string()],
    )
    .await;
    assert_eq!(ok_and_failed(&r), (6, 0), "{text}");
    let heads = seen.lock().expect("log").clone();
    let authority = url.trim_start_matches("https://").trim_end_matches('/');
    assert!(!heads.is_empty(), "the proxy saw nothing");
    for h in &heads {
        assert!(
            h.starts_with(&format!("CONNECT {authority} HTTP/1.1\r\n")),
            "{h}"
        );
        // proxyuser:pr0xy-s3cret in Base64.
        assert!(
            h.contains("Proxy-Authorization: Basic cHJveHl1c2VyOnByMHh5LXMzY3JldA=="),
            "{h}"
        );
    }
    let all = format!("{text}{r}");
    assert!(!all.contains("pr0xy-s3cret") && !all.contains("cHJveHl1c2VyOnByMHh5LXMzY3JldA"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_only_server_is_served_over_http2() {
    let (url, pem) = crate::tls::tls_mock_speaking(true).await;
    let load = Load {
        concurrency: 3,
        duration: None,
        requests: Some(9),
        warmup: Duration::ZERO,
    };
    let plan = flora_gate::engine::Plan {
        ca_cert: Some(pem.into_bytes()),
        ..crate::common::plan_for(chat_scenario(""), &url, load)
    };
    let (r, _) = crate::common::run_plan(plan).await;
    // The server speaks nothing but h2: every answer came over HTTP/2.
    assert_eq!(
        r.steps[0].failed, 0,
        "{:?} {:?}",
        r.steps[0].errors, r.error_examples
    );
    assert_eq!(r.steps[0].ok, 9);
    assert!(r.steps[0].ttft_ms.p50.is_some_and(|t| t > 0.0));
}

/// One answer per connection, the way a real server streams: a role-only
/// first event, two tokens in one event, usage folded into the last content
/// event, no `[DONE]`. A second request on the same connection is met with
/// a close. Returns the URL and the number of connections that carried a request.
async fn one_answer_per_connection() -> (String, Arc<Mutex<usize>>) {
    let conns = Arc::new(Mutex::new(0usize));
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                // (The start-up check connects without a request: not counted.)
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                *count.lock().expect("count") += 1;
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                if s.read_exact(&mut body).await.is_err() {
                    return;
                }
                let events = [
                    r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
                    r#"{"choices":[{"delta":{"content":"two tokens"}}]}"#,
                    r#"{"choices":[{"delta":{"content":" end"}}],"usage":{"prompt_tokens":3,"completion_tokens":3}}"#,
                ];
                let mut out = String::from(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                for e in events {
                    let data = format!("data: {e}\n\n");
                    out.push_str(&format!("{:x}\r\n{data}\r\n", data.len()));
                }
                out.push_str("0\r\n\r\n");
                if s.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
                // The next request on this connection gets no answer.
                let _ = read_head(&mut s).await;
            });
        }
    });
    (url, conns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_a_connection_the_server_closed_is_sent_again_on_a_new_one() {
    let (url, conns) = one_answer_per_connection().await;
    let load = Load {
        concurrency: 1,
        duration: None,
        requests: Some(5),
        warmup: Duration::ZERO,
    };
    let (r, _) = crate::common::run(chat_scenario(""), &url, load).await;
    let step = &r.steps[0];
    assert_eq!(
        (step.ok, step.failed),
        (5, 0),
        "{:?} {:?}",
        step.errors,
        r.error_examples
    );
    assert_eq!(
        step.output_tokens.total, 15,
        "usage in the last content event"
    );
    assert_eq!(
        *conns.lock().expect("count"),
        5,
        "one connection per request"
    );
}
