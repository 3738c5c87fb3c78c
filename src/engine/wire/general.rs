//! Requests the HTTP/1.1 path does not carry (an origin that chose HTTP/2,
//! a proxy other than `http://`), through reqwest with the same error classes.

use bytes::Bytes;

use super::{BodyKind, Request, Response, SendError};
use crate::engine::sample::{ErrorClass, TimeoutPhase};

pub(super) async fn send(
    general: &reqwest::Client,
    req: &Request<'_>,
) -> Result<Response, SendError> {
    let mut b = general.request(req.method.clone(), req.url.clone());
    for (k, v) in &req.headers {
        b = b.header(*k, *v);
    }
    if let Some(body) = req.body {
        b = b
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    if req.event_stream {
        b = b.header(reqwest::header::ACCEPT, "text/event-stream");
    }
    let response = b.send().await.map_err(|e| {
        let class = if let Some(io) = io_source(&e).filter(|io| super::out_of_descriptors(io)) {
            return SendError::new(ErrorClass::Generator, super::descriptors_message(io));
        } else if is_tls(&e) {
            ErrorClass::Tls
        } else if e.is_connect() && !e.is_timeout() {
            ErrorClass::Connect
        } else if e.is_timeout() {
            ErrorClass::Timeout(TimeoutPhase::Connect)
        } else {
            ErrorClass::Transport
        };
        SendError::new(class, error_chain(&e))
    })?;
    Ok(Response {
        status: response.status().as_u16(),
        retry_after: response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: BodyKind::General {
            response,
            piece: Bytes::new(),
        },
    })
}

/// An error and its causes, one line.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        let t = err.to_string();
        if !parts.iter().any(|p: &String| p.contains(&t)) {
            parts.push(t);
        }
        src = err.source();
    }
    parts.join(": ")
}

/// The operating system's error in the chain, if one is.
fn io_source(e: &reqwest::Error) -> Option<&std::io::Error> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        src = err.source();
    }
    None
}

/// True when the error chain says the TLS handshake failed.
fn is_tls(e: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("handshake") || text.contains("tls") {
            return true;
        }
        src = err.source();
    }
    false
}
