//! Text flora-gate did not write (a server's error bodies, failing scrapes,
//! metric labels; a scenario's and its steps' names) is inert in the
//! Markdown report: read back through a CommonMark parser, it makes no
//! link, image, emphasis, HTML, mention or issue reference.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use pulldown_cmark::{Event, Options, Parser, Tag};

use crate::common::{flora, read_json, text, tokens_csv};

/// Everything GitHub would make live, each with a word to find it by.
pub const HOSTILE: &str = "[CLICKX](https://evil.example/phish) ![PIXELX](http://evil.example/px.png) **BOLDX** _EMX_ ~~STRIKEX~~ <b>HTMLX</b> @octocat #1337 https://evil.example/bare `TICKX` | CELLX &lt;";

async fn hostile_server() -> String {
    let n = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(move || {
                let i = n.fetch_add(1, Ordering::Relaxed);
                async move {
                    if i.is_multiple_of(2) {
                        let body = serde_json::json!({"error": {"code": "bad", "message": HOSTILE}});
                        return (StatusCode::UNPROCESSABLE_ENTITY, body.to_string()).into_response();
                    }
                    let chunk = |t: &str| {
                        format!("data: {}\n\n", serde_json::json!({"choices": [{"delta": {"content": t}}]}))
                    };
                    let body = format!("{}{}{}data: [DONE]\n\n", chunk("一"), chunk("二"), chunk("三"));
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(axum::body::Body::from(body))
                        .expect("response")
                }
            }),
        )
        .route(
            "/metrics",
            get(|| async {
                let label = HOSTILE.replace('\\', "").replace('"', "'");
                format!("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{model_name=\"{label}\"}} 1\nvllm:num_requests_waiting 0\n")
            }),
        )
        .route(
            "/broken-metrics",
            get(|| async { (StatusCode::NOT_FOUND, HOSTILE) }),
        );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// GitHub's mentions, references and bare links in a run of text.
fn check_text(run: &mut String, found: &mut Vec<String>) {
    for live in ["@octocat", "#1337", "https://evil", "http://evil"] {
        if run.contains(live) {
            found.push(format!("{live} in text {run:?}"));
        }
    }
    run.clear();
}

/// What a CommonMark reader (with GitHub's tables and strikethrough) makes
/// live in `md` that came from [`HOSTILE`]; empty when nothing did.
pub fn live_foreign_markup(md: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut styled = 0usize;
    let mut in_code_block = false;
    let parser = Parser::new_ext(md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH);
    let mut run = String::new();
    for ev in parser {
        match ev {
            Event::Start(Tag::Link { dest_url, .. }) => found.push(format!("link to {dest_url}")),
            Event::Start(Tag::Image { dest_url, .. }) => {
                found.push(format!("image from {dest_url}"));
            }
            Event::Start(Tag::Emphasis | Tag::Strong | Tag::Strikethrough) => styled += 1,
            // A fenced block is inert (the Mermaid chart's axis labels).
            Event::Start(Tag::CodeBlock(_)) => in_code_block = true,
            Event::End(pulldown_cmark::TagEnd::CodeBlock) => in_code_block = false,
            Event::End(
                pulldown_cmark::TagEnd::Emphasis
                | pulldown_cmark::TagEnd::Strong
                | pulldown_cmark::TagEnd::Strikethrough,
            ) => styled = styled.saturating_sub(1),
            Event::Html(h) | Event::InlineHtml(h) if h.contains("HTMLX") || h.contains("<b>") => {
                found.push(format!("HTML {h}"));
            }
            // A reader sees one run of text where the parser splits it at
            // escapes: judge the run.
            Event::Text(t) if !in_code_block => {
                if styled > 0
                    && ["BOLDX", "EMX", "STRIKEX", "CLICKX"]
                        .iter()
                        .any(|w| t.contains(w))
                {
                    found.push(format!("styled {t}"));
                }
                run.push_str(&t);
                continue;
            }
            _ => {}
        }
        check_text(&mut run, &mut found);
    }
    check_text(&mut run, &mut found);
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_scenario_text_is_inert_in_the_markdown_report() {
    let url = hostile_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("s.toml");
    let name = HOSTILE.replace(['\\', '\''], "");
    std::fs::write(
        &scenario,
        format!(
            r#"
name = '{name}'
[auth]
kind = "bearer"
[[steps]]
name = '{name}'
path = "/v1/chat/completions"
body = '{{"model": "m", "messages": [], "stream": true}}'
"#
        ),
    )
    .expect("write");
    let tokens = tokens_csv(dir.path(), 2);
    let out = dir.path().join("r.json");
    let (s, o) = (scenario.display().to_string(), out.display().to_string());
    let metrics = format!("{url}/metrics");
    let broken = format!("{url}/broken-metrics");
    let run = tokio::task::spawn_blocking(move || {
        flora(&[
            "run",
            "-s",
            &s,
            "-t",
            &url,
            "--tokens",
            &tokens,
            "--no-progress",
            "-c",
            "2",
            "--requests",
            "12",
            "--warmup",
            "0s",
            "--server-metrics",
            &metrics,
            "--server-metrics",
            &broken,
            "--server-metrics-interval",
            "100ms",
            "-o",
            &o,
        ])
    })
    .await
    .expect("joined");
    assert!(out.exists(), "{}", text(&run));
    let r = read_json(&out);
    assert!(
        r["error_examples"].to_string().contains("CLICKX"),
        "the server's error body was recorded: {}",
        text(&run)
    );
    let o = out.display().to_string();
    let md = text(&flora(&["report", "-r", &o]));
    for word in [
        "CLICKX", "PIXELX", "BOLDX", "octocat", "1337", "TICKX", "CELLX",
    ] {
        assert!(md.contains(word), "{word} is shown, as text: {md}");
    }
    let live = live_foreign_markup(&md);
    assert!(
        live.is_empty(),
        "live markup from foreign text: {live:?}\n{md}"
    );

    // Plain text shows the foreign text as it was, without escapes.
    let txt = text(&flora(&["report", "-r", &o, "-f", "text"]));
    assert!(txt.contains("**BOLDX** _EMX_"), "{txt}");
    assert!(!txt.contains("\\*"), "{txt}");
}
