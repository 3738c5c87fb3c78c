//! A fake GitHub REST API on 127.0.0.1: comments, refs, contents, pulls.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use flora_gate::github::api::{Api, RetryPolicy};
use flora_gate::github::comment;
use serde_json::{json, Value};

#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) comments: Vec<(u64, u64, String, String)>, // (pr, id, body, author login)
    pub(crate) next_id: u64,
    pub(crate) log: Vec<String>,
    /// Statuses to answer the next requests with, before normal service.
    pub(crate) script: VecDeque<(u16, Option<&'static str>, &'static str)>,
    /// Answer every write with 403 "Resource not accessible by integration".
    pub(crate) forbid_writes: bool,
    pub(crate) files: Vec<(String, String)>,
    pub(crate) pulls: Vec<Value>,
}

pub(crate) type Shared = Arc<Mutex<Fake>>;

fn scripted(f: &mut Fake) -> Option<Response> {
    let (status, retry_after, message) = f.script.pop_front()?;
    let mut resp = (
        StatusCode::from_u16(status).expect("status"),
        Json(json!({"message": message})),
    )
        .into_response();
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert("retry-after", s.parse().expect("header"));
    }
    Some(resp)
}

async fn list(
    State(s): State<Shared>,
    Path((_o, _r, pr)): Path<(String, String, u64)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let mut f = s.lock().expect("lock");
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let per: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
    f.log.push(format!("GET comments page {page}"));
    if let Some(r) = scripted(&mut f) {
        return r;
    }
    let all: Vec<Value> = f
        .comments
        .iter()
        .filter(|c| c.0 == pr)
        .map(|c| json!({"id": c.1, "body": c.2, "user": {"login": c.3}, "html_url": format!("https://github.test/c/{}", c.1)}))
        .collect();
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per)
        .take(per)
        .cloned()
        .collect();
    let mut headers = HeaderMap::new();
    if page * per < all.len() {
        headers.insert(
            "link",
            format!("<https://api.test/x?page={}>; rel=\"next\"", page + 1)
                .parse()
                .expect("header"),
        );
    }
    (headers, Json(Value::Array(items))).into_response()
}

async fn create(
    State(s): State<Shared>,
    Path((_o, _r, pr)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut f = s.lock().expect("lock");
    f.log.push("POST comment".into());
    if let Some(r) = scripted(&mut f) {
        return r;
    }
    if f.forbid_writes {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "Resource not accessible by integration"})),
        )
            .into_response();
    }
    f.next_id += 1;
    let id = 1000 + f.next_id;
    let text = body["body"].as_str().unwrap_or_default().to_string();
    f.comments.push((pr, id, text, BOT.to_string()));
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "html_url": format!("https://github.test/c/{id}")})),
    )
        .into_response()
}

async fn update(
    State(s): State<Shared>,
    Path((_o, _r, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut f = s.lock().expect("lock");
    f.log.push("PATCH comment".into());
    if let Some(r) = scripted(&mut f) {
        return r;
    }
    let text = body["body"].as_str().unwrap_or_default().to_string();
    match f.comments.iter_mut().find(|c| c.1 == id) {
        Some(c) => {
            c.2 = text;
            Json(json!({"id": id, "html_url": format!("https://github.test/c/{id}")}))
                .into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn base_ref(State(s): State<Shared>) -> Response {
    s.lock().expect("lock").log.push("GET base ref".into());
    Json(json!({"object": {"sha": "abc123"}})).into_response()
}

async fn create_ref(State(s): State<Shared>, Json(b): Json<Value>) -> Response {
    s.lock()
        .expect("lock")
        .log
        .push(format!("POST ref {}", b["ref"].as_str().unwrap_or("")));
    (StatusCode::CREATED, Json(json!({}))).into_response()
}

async fn get_file(
    State(s): State<Shared>,
    Path((_o, _r, path)): Path<(String, String, String)>,
) -> Response {
    let mut f = s.lock().expect("lock");
    f.log.push("GET file".into());
    // The newest content PUT at this path, as the contents API returns it:
    // base64 with line breaks, and a blob sha.
    match f.files.iter().rev().find(|(p, _)| *p == path) {
        Some((_, content)) => {
            let wrapped: Vec<String> = content
                .as_bytes()
                .chunks(60)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            let sha = format!("blob{}", f.files.len());
            Json(json!({"type": "file", "encoding": "base64", "content": wrapped.join("\n"), "sha": sha}))
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
    }
}

async fn put_file(
    State(s): State<Shared>,
    Path((_o, _r, path)): Path<(String, String, String)>,
    Json(b): Json<Value>,
) -> Response {
    let mut f = s.lock().expect("lock");
    f.log.push(format!("PUT file {path}"));
    f.files
        .push((path, b["content"].as_str().unwrap_or("").to_string()));
    (StatusCode::CREATED, Json(json!({}))).into_response()
}

async fn list_pulls(
    State(s): State<Shared>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let mut f = s.lock().expect("lock");
    f.log.push(format!(
        "GET pulls head={}",
        q.get("head").map_or("", String::as_str)
    ));
    let pulls = f
        .pulls
        .iter()
        .filter(|p| {
            // Pulls the fake made itself have no label: always listed.
            match (
                q.get("head"),
                p.pointer("/head/label").and_then(|l| l.as_str()),
            ) {
                (Some(h), Some(l)) => h == l,
                _ => true,
            }
        })
        .cloned()
        .collect();
    Json(Value::Array(pulls)).into_response()
}

async fn create_pull(State(s): State<Shared>, Json(b): Json<Value>) -> Response {
    let mut f = s.lock().expect("lock");
    f.log
        .push(format!("POST pull {}", b["head"].as_str().unwrap_or("")));
    let pr = json!({"html_url": "https://github.test/pull/42"});
    f.pulls.push(pr.clone());
    (StatusCode::CREATED, Json(pr)).into_response()
}

pub(crate) async fn fake() -> (String, Shared) {
    let state: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/api/v3/repos/{o}/{r}/issues/{n}/comments",
            get(list).post(create),
        )
        .route("/api/v3/repos/{o}/{r}/issues/comments/{id}", patch(update))
        .route("/api/v3/repos/{o}/{r}/git/ref/heads/{b}", get(base_ref))
        .route("/api/v3/repos/{o}/{r}/git/refs", post(create_ref))
        .route(
            "/api/v3/repos/{o}/{r}/contents/{*path}",
            get(get_file).put(put_file),
        )
        .route(
            "/api/v3/repos/{o}/{r}/pulls",
            get(list_pulls).post(create_pull),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // A GitHub Enterprise-style base path: GITHUB_API_URL must be honoured as given.
    (format!("http://{addr}/api/v3"), state)
}

pub(crate) const BOT: &str = "github-actions[bot]";

pub(crate) fn sticky(number: u64, id: &'static str) -> comment::Sticky<'static> {
    comment::Sticky {
        repo: "o/r",
        number,
        id,
        author: BOT,
    }
}

pub(crate) fn api(url: &str) -> Api {
    Api::new(
        url,
        "test-token",
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(10),
            max_wait: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
        },
    )
    .expect("client")
}

pub(crate) fn writes(s: &Shared) -> usize {
    s.lock()
        .expect("lock")
        .log
        .iter()
        .filter(|l| l.starts_with("POST") || l.starts_with("PATCH"))
        .count()
}
