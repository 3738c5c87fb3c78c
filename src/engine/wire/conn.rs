//! One connection of the request path: TCP, a `CONNECT` tunnel through an
//! `http://` proxy, TLS (rustls, the platform's roots and `--ca-cert`,
//! ALPN `h2` and `http/1.1`), and one exchange of request and response head.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::proxy::Proxy;
use super::{h1, Origin, SendError};
use crate::engine::sample::{ErrorClass, TimeoutPhase};
use crate::error::UserError;

/// A new connection, or `None` when the origin chose HTTP/2.
pub(super) async fn connect(
    tls: &Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    origin: &Origin,
    proxy: Option<&Proxy>,
) -> Result<Option<Conn>, SendError> {
    let attempt = async {
        let (host, port) = match proxy {
            Some(Proxy::Http { host, port, .. }) => (host.as_str(), *port),
            _ => (origin.host.as_str(), origin.port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mut tcp = TcpStream::connect((host, port)).await.map_err(|e| {
            let class = if super::out_of_descriptors(&e) {
                return SendError::new(ErrorClass::Generator, super::descriptors_message(&e));
            } else if e.kind() == std::io::ErrorKind::TimedOut {
                ErrorClass::Timeout(TimeoutPhase::Connect)
            } else {
                ErrorClass::Connect
            };
            SendError::new(class, format!("cannot connect to {host}:{port}: {e}"))
        })?;
        let _ = tcp.set_nodelay(true);
        let io = if origin.https {
            if let Some(Proxy::Http { auth, .. }) = proxy {
                tunnel(&mut tcp, origin, auth.as_deref()).await?;
            }
            let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                .map_err(|e| SendError::new(ErrorClass::Tls, format!("bad server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| SendError::new(ErrorClass::Tls, format!("TLS handshake: {e}")))?;
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                return Ok(None);
            }
            Io::Tls(Box::new(tls))
        } else {
            Io::Plain(tcp)
        };
        Ok(Some(Conn {
            io,
            buf: BytesMut::new(),
            origin: origin.clone(),
            idle_since: Instant::now(),
        }))
    };
    match tokio::time::timeout(connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(SendError::new(
            ErrorClass::Timeout(TimeoutPhase::Connect),
            format!("connecting took over {:?}", connect_timeout),
        )),
    }
}

/// `CONNECT` through an `http://` proxy, up to its answer.
async fn tunnel(tcp: &mut TcpStream, origin: &Origin, auth: Option<&str>) -> Result<(), SendError> {
    let authority = authority(&origin.host, origin.port);
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = auth {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    let failed = |why: String| SendError::new(ErrorClass::Connect, format!("the proxy: {why}"));
    h1::write_all(tcp, head.as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut buf = BytesMut::new();
    let answer = h1::read_head(tcp, &mut buf, true)
        .await
        .map_err(|_| failed("no answer to CONNECT".into()))?;
    if !(200..300).contains(&answer.status) {
        return Err(failed(format!("CONNECT answered {}", answer.status)));
    }
    if !buf.is_empty() {
        return Err(failed("bytes after the CONNECT answer".into()));
    }
    Ok(())
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub(super) enum Exchange {
    /// Nothing came back on a connection that may have closed while idle.
    Stale,
    Failed(SendError),
}

/// A connection to one origin.
pub(super) struct Conn {
    pub(super) io: Io,
    pub(super) buf: BytesMut,
    pub(super) origin: Origin,
    pub(super) idle_since: Instant,
}

impl Conn {
    /// Write the request, read the head of the answer.
    pub(super) async fn exchange(
        &mut self,
        head: &[u8],
        body: Option<&str>,
        method: &reqwest::Method,
    ) -> Result<h1::Head, Exchange> {
        let written = match body {
            // Small bodies go with the head in one segment.
            Some(b) if b.len() <= 16 << 10 => {
                let mut all = Vec::with_capacity(head.len() + b.len());
                all.extend_from_slice(head);
                all.extend_from_slice(b.as_bytes());
                h1::write_all(&mut self.io, &all).await
            }
            Some(b) => match h1::write_all(&mut self.io, head).await {
                Ok(()) => h1::write_all(&mut self.io, b.as_bytes()).await,
                Err(e) => Err(e),
            },
            None => h1::write_all(&mut self.io, head).await,
        };
        if written.is_err() {
            return Err(Exchange::Stale);
        }
        match h1::read_head(&mut self.io, &mut self.buf, method == reqwest::Method::HEAD).await {
            Ok(h) => Ok(h),
            Err(h1::ReadError::Io(_)) if self.buf.is_empty() => Err(Exchange::Stale),
            Err(h1::ReadError::Io(e)) => Err(Exchange::Failed(SendError::new(
                ErrorClass::Transport,
                format!("the response broke off: {e}"),
            ))),
            Err(h1::ReadError::Protocol(why)) => {
                Err(Exchange::Failed(SendError::new(ErrorClass::Protocol, why)))
            }
        }
    }
}

/// A plain or TLS connection.
pub(super) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// rustls with the platform's roots, `ca_cert` added, offering HTTP/2 and 1.1.
pub(super) fn tls_config(ca_cert: Option<&[u8]>) -> Result<rustls::ClientConfig, UserError> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer};
    let bad = |message: String| UserError::Environment {
        message,
        hint: None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra = match ca_cert {
        Some(pem) => CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("the extra root certificate is not PEM: {e}")))?,
        None => Vec::new(),
    };
    if ca_cert.is_some() && extra.is_empty() {
        return Err(bad(
            "the extra root certificate file holds no certificate".into()
        ));
    }
    let verifier = if extra.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
    }
    .map_err(|e| bad(format!("cannot load the trusted roots: {e}")))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
