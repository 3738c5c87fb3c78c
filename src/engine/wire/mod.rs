//! The request path of the load: HTTP/1.1 written and read in the virtual
//! user's own task, straight from the socket (or its TLS stream) into the
//! event parser, with no connection task and no body channel in between.
//!
//! It keeps what a general client gives: keep-alive connections reused from
//! a pool (one that closed while idle is noticed, and a request that finds
//! its reused connection dead is sent once more on a fresh one), TLS through
//! rustls with the platform's roots and `--ca-cert`, `HTTP(S)_PROXY`,
//! `ALL_PROXY` and `NO_PROXY` (an `http://` proxy forwards plain requests and
//! tunnels TLS with `CONNECT`), a connect timeout and an error class for
//! every failure. An origin that negotiates HTTP/2 (ALPN `h2`), and a target
//! behind a proxy of another kind, are served by the general-purpose client
//! instead: HTTP/2 multiplexes streams over one connection, which needs a
//! task of its own.

mod conn;
mod general;
mod h1;
pub mod proxy;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use reqwest::header::HeaderValue;
use tokio::time::Instant;

use self::conn::{Conn, Exchange};
use self::proxy::{Proxies, Proxy};
use super::sample::ErrorClass;
use crate::error::UserError;

/// A pooled connection idle longer than this is closed, not reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// A buffer grown past this by one large response is not kept in the pool.
const KEEP_BUFFER: usize = 64 << 10;
const USER_AGENT: &str = concat!("flora-gate/", env!("CARGO_PKG_VERSION"));

/// The client shared by all users of a run (cheap to clone).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("wire::Client").finish_non_exhaustive()
    }
}

struct Inner {
    /// HTTP/2 origins and proxies this path does not speak.
    general: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
    proxies: Proxies,
    connect_timeout: Duration,
    max_idle: usize,
    idle: Mutex<HashMap<Origin, Vec<Conn>>>,
    /// Origins that answered the TLS handshake with `h2`.
    h2: RwLock<HashSet<Origin>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    /// Without the brackets of an IPv6 literal.
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &reqwest::Url) -> Option<Self> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let host = url.host_str()?;
        Some(Self {
            https,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: url.port_or_known_default()?,
        })
    }
}

/// One request to send.
#[derive(Debug)]
pub struct Request<'a> {
    /// Method.
    pub method: &'a reqwest::Method,
    /// Full URL (on the target's origin).
    pub url: &'a reqwest::Url,
    /// Headers besides `Host`, `User-Agent`, `Accept`, `Content-Type` and `Content-Length`.
    pub headers: Vec<(&'a str, &'a str)>,
    /// A JSON body.
    pub body: Option<&'a str>,
    /// The answer is an event stream.
    pub event_stream: bool,
}

/// Why a request got no response.
#[derive(Debug)]
pub struct SendError {
    /// The failure's class.
    pub class: ErrorClass,
    /// What went wrong, one line (kept with the error examples).
    pub detail: String,
}

impl SendError {
    fn new(class: ErrorClass, detail: impl Into<String>) -> Self {
        Self {
            class,
            detail: detail.into(),
        }
    }
}

/// Why a body could not be read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The connection broke or closed early.
    Broken,
    /// The bytes do not follow HTTP.
    Protocol,
}

impl Client {
    /// A client for a run of `concurrency` users; `ca_cert` is an extra
    /// trusted root (PEM).
    pub fn new(
        general: reqwest::Client,
        connect_timeout: Duration,
        concurrency: u32,
        ca_cert: Option<&[u8]>,
    ) -> Result<Self, UserError> {
        Ok(Self {
            inner: Arc::new(Inner {
                general,
                tls: Arc::new(conn::tls_config(ca_cert)?),
                proxies: Proxies::from_env(),
                connect_timeout,
                max_idle: concurrency.max(1) as usize,
                idle: Mutex::new(HashMap::new()),
                h2: RwLock::new(HashSet::new()),
            }),
        })
    }

    /// The general-purpose client (server metrics, the clock check).
    pub fn general(&self) -> &reqwest::Client {
        &self.inner.general
    }

    /// Send the request and read the response head; the body is read from
    /// the returned [`Response`].
    pub async fn send(&self, req: &Request<'_>) -> Result<Response, SendError> {
        let inner = &self.inner;
        let Some(origin) = Origin::of(req.url) else {
            return Err(SendError::new(
                ErrorClass::Transport,
                "the URL is not http(s)",
            ));
        };
        let proxy = inner.proxies.for_target(origin.https, &origin.host);
        if matches!(proxy, Some(Proxy::Other)) || inner.is_h2(&origin) {
            return general::send(&inner.general, req).await;
        }
        let head = encode(req, &origin, proxy)?;
        // A reused connection the server closed while it idled fails before
        // any byte comes back: the request goes once more on a new one.
        for _ in 0..2 {
            let (mut conn, reused) = match inner.checkout(&origin) {
                Some(conn) => (conn, true),
                None => {
                    match conn::connect(&inner.tls, inner.connect_timeout, &origin, proxy).await? {
                        Some(conn) => (conn, false),
                        None => {
                            if let Ok(mut h2) = inner.h2.write() {
                                h2.insert(origin.clone());
                            }
                            return general::send(&inner.general, req).await;
                        }
                    }
                }
            };
            match conn.exchange(&head, req.body, req.method).await {
                Ok(h) => {
                    return Ok(Response {
                        status: h.status,
                        retry_after: h.retry_after,
                        body: BodyKind::H1(H1 {
                            body: h1::Body::new(h.framing),
                            keep_alive: h.keep_alive,
                            conn: Some(conn),
                            pool: self.inner.clone(),
                        }),
                    });
                }
                Err(Exchange::Stale) if reused => {}
                Err(Exchange::Stale) => {
                    return Err(SendError::new(
                        ErrorClass::Transport,
                        "the connection closed before the response",
                    ))
                }
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        Err(SendError::new(
            ErrorClass::Transport,
            "the connection closed before the response, twice",
        ))
    }
}

impl Inner {
    fn is_h2(&self, origin: &Origin) -> bool {
        self.h2.read().is_ok_and(|s| s.contains(origin))
    }

    /// An idle connection to `origin` that is still open.
    fn checkout(&self, origin: &Origin) -> Option<Conn> {
        let now = Instant::now();
        loop {
            let mut conn = self.idle.lock().ok()?.get_mut(origin)?.pop()?;
            if now.duration_since(conn.idle_since) > IDLE_TIMEOUT {
                continue;
            }
            // One read that must not block: data or the end here means the
            // server closed the connection (or spoke out of turn).
            match h1::fill(&mut conn.io, &mut conn.buf).now_or_never() {
                None => return Some(conn),
                Some(_) => continue,
            }
        }
    }

    fn checkin(&self, mut conn: Conn) {
        if !conn.buf.is_empty() {
            // Bytes after the response: the connection is out of step.
            return;
        }
        if conn.buf.capacity() > KEEP_BUFFER {
            conn.buf = BytesMut::new();
        }
        conn.idle_since = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(conn.origin.clone()).or_default();
            if list.len() < self.max_idle {
                list.push(conn);
            }
        }
    }
}

/// The request head in one piece. Header names and values that would break
/// the framing (line breaks, NUL, a name that is not a token) are refused.
fn encode(req: &Request<'_>, origin: &Origin, proxy: Option<&Proxy>) -> Result<Vec<u8>, SendError> {
    let url = req.url;
    let host = url.host_str().unwrap_or_default();
    let host = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut out = Vec::with_capacity(
        256 + req
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>(),
    );
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    let via_proxy = matches!(proxy, Some(Proxy::Http { .. })) && !origin.https;
    if via_proxy {
        out.extend_from_slice(b"http://");
        out.extend_from_slice(host.as_bytes());
    }
    out.extend_from_slice(url.path().as_bytes());
    if let Some(q) = url.query() {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: ");
    out.extend_from_slice(USER_AGENT.as_bytes());
    out.extend_from_slice(if req.event_stream {
        &b"\r\nAccept: text/event-stream"[..]
    } else {
        &b"\r\nAccept: */*"[..]
    });
    if let Some(body) = req.body {
        out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
    } else if matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(b"\r\nContent-Length: 0");
    }
    if let (
        true,
        Some(Proxy::Http {
            auth: Some(auth), ..
        }),
    ) = (via_proxy, proxy)
    {
        out.extend_from_slice(b"\r\nProxy-Authorization: ");
        out.extend_from_slice(auth.as_bytes());
    }
    for (name, value) in &req.headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || HeaderValue::from_str(value).is_err()
        {
            return Err(SendError::new(
                ErrorClass::Transport,
                format!("the header `{name}` is not a valid HTTP header"),
            ));
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    Ok(out)
}

/// A response whose body is still to read. Dropped after its body was read
/// to the end, its connection goes back to the pool; dropped before, the
/// connection is closed (a cancelled stream disconnects).
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, as sent.
    pub retry_after: Option<String>,
    body: BodyKind,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

enum BodyKind {
    H1(H1),
    General {
        response: reqwest::Response,
        piece: Bytes,
    },
}

struct H1 {
    body: h1::Body,
    keep_alive: bool,
    conn: Option<Conn>,
    pool: Arc<Inner>,
}

impl Drop for H1 {
    fn drop(&mut self) {
        if self.keep_alive && self.body.finished() {
            if let Some(conn) = self.conn.take() {
                self.pool.checkin(conn);
            }
        }
    }
}

impl Response {
    /// The next piece of the body, or `None` at its end. The slice lives
    /// until the next call.
    pub async fn chunk(&mut self) -> Result<Option<&[u8]>, BodyError> {
        match &mut self.body {
            BodyKind::H1(h) => {
                let Some(conn) = h.conn.as_mut() else {
                    return Ok(None);
                };
                h.body
                    .next(&mut conn.io, &mut conn.buf)
                    .await
                    .map_err(|e| match e {
                        h1::ReadError::Io(_) => BodyError::Broken,
                        h1::ReadError::Protocol(_) => BodyError::Protocol,
                    })
            }
            BodyKind::General { response, piece } => match response.chunk().await {
                Ok(Some(bytes)) => {
                    *piece = bytes;
                    Ok(Some(&piece[..]))
                }
                Ok(None) => Ok(None),
                Err(_) => Err(BodyError::Broken),
            },
        }
    }
}

/// `EMFILE` (this process) or `ENFILE` (the system): the generator is out
/// of file descriptors, which says nothing about the target.
pub(crate) fn out_of_descriptors(e: &std::io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}

/// What to say when the generator ran out of descriptors.
pub(crate) fn descriptors_message(e: &std::io::Error) -> String {
    format!(
        "the load generator is out of file descriptors ({e}); raise the limit (`ulimit -n`) or run fewer users per machine"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn running_out_of_descriptors_is_the_generators_failure() {
        for code in [23, 24] {
            let e = std::io::Error::from_raw_os_error(code);
            assert!(super::out_of_descriptors(&e), "{e}");
            assert!(super::descriptors_message(&e).contains("ulimit -n"));
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!super::out_of_descriptors(&refused));
    }
}
