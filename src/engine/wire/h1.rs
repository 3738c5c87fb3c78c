//! HTTP/1.1 on one connection: the request written in one piece, the
//! response head parsed in place, the body de-chunked as it is read, each
//! piece handed out as a slice of the connection's own buffer.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// Longest response head accepted (status line and headers).
pub const MAX_HEAD: usize = 64 << 10;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4 << 10;
/// Bytes read at a time; the buffer grows only for a larger piece.
const READ_AT_LEAST: usize = 2 << 10;

/// What the response head says.
#[derive(Debug)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// `Retry-After`, when present.
    pub retry_after: Option<String>,
    /// How the body is delimited.
    pub framing: Framing,
    /// The server keeps the connection open after this response.
    pub keep_alive: bool,
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// After this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// When the server closes the connection.
    Close,
}

/// Why a response could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed or closed early.
    Io(io::Error),
    /// The bytes are not HTTP/1.1.
    Protocol(&'static str),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Read more into `buf`; false at the end of the stream.
pub async fn fill<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut) -> io::Result<bool> {
    if buf.capacity() - buf.len() < READ_AT_LEAST / 2 {
        buf.reserve(READ_AT_LEAST);
    }
    Ok(io.read_buf(buf).await? > 0)
}

/// Read and parse the response head (1xx interim answers skipped), leaving
/// the body's first bytes in `buf`. `head_request`: the body is empty.
pub async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Head, ReadError> {
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    Some((len, head_of(&response, head_request)?))
                }
                Ok(httparse::Status::Partial) => None,
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(ReadError::Protocol("more than 64 response headers"))
                }
                Err(_) => return Err(ReadError::Protocol("the response is not HTTP/1.1")),
            }
        };
        match parsed {
            Some((len, head)) => {
                buf.advance(len);
                if (100..200).contains(&head.status) && head.status != 101 {
                    continue;
                }
                return Ok(head);
            }
            None if buf.len() >= MAX_HEAD => {
                return Err(ReadError::Protocol("the response head is over 64 KiB"))
            }
            None => {
                if !fill(io, buf).await? {
                    return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
            }
        }
    }
}

fn head_of(r: &httparse::Response<'_, '_>, head_request: bool) -> Result<Head, ReadError> {
    let status = r.code.unwrap_or(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = r.version == Some(0);
    let mut retry_after = None;
    for h in r.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| ReadError::Protocol("bad Content-Length"))?;
            if length.is_some_and(|m| m != n) {
                return Err(ReadError::Protocol("two different Content-Length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && r.version == Some(0) {
                    close = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = Some(value.to_string());
        }
    }
    let framing = if head_request || status == 204 || status == 304 || (100..200).contains(&status)
    {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Ok(Head {
        status,
        retry_after,
        keep_alive: !close && framing != Framing::Close,
        framing,
    })
}

/// Where a body reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Reading to the end of the connection.
    Close,
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Bytes left of the current chunk.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk.
    Trailers,
    /// The whole body was read.
    Done,
}

/// Reads one body out of a connection's buffer and socket.
#[derive(Debug)]
pub struct Body {
    state: State,
    /// Bytes at the front of the buffer handed out by the last call.
    handed: usize,
}

impl Body {
    /// A reader for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        Self { state, handed: 0 }
    }

    /// The body was read to its end.
    pub fn finished(&self) -> bool {
        self.state == State::Done
    }

    /// The next piece of the body (a slice of `buf`, valid until the next
    /// call), or `None` at its end.
    pub async fn next<'b, S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        buf: &'b mut BytesMut,
    ) -> Result<Option<&'b [u8]>, ReadError> {
        buf.advance(std::mem::take(&mut self.handed));
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Length(left) | State::ChunkData(left) if !buf.is_empty() => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let rest = left - n as u64;
                    self.state = match self.state {
                        State::Length(_) if rest == 0 => State::Done,
                        State::Length(_) => State::Length(rest),
                        _ if rest == 0 => State::ChunkEnd,
                        _ => State::ChunkData(rest),
                    };
                    self.handed = n;
                    return Ok(Some(&buf[..n]));
                }
                State::Close if !buf.is_empty() => {
                    self.handed = buf.len();
                    return Ok(Some(&buf[..]));
                }
                State::Close => {
                    if !fill(io, buf).await? {
                        self.state = State::Done;
                    }
                }
                State::Length(_) | State::ChunkData(_) => self.more(io, buf).await?,
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        self.more(io, buf).await?;
                        continue;
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ReadError::Protocol("a chunk does not end in CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::ChunkSize | State::Trailers => {
                    let Some(end) = find_crlf(buf) else {
                        if buf.len() > MAX_LINE {
                            return Err(ReadError::Protocol("a chunk line is over 4 KiB"));
                        }
                        self.more(io, buf).await?;
                        continue;
                    };
                    let line = &buf[..end];
                    self.state = if self.state == State::Trailers {
                        if line.is_empty() {
                            State::Done
                        } else {
                            State::Trailers
                        }
                    } else {
                        match chunk_size(line)? {
                            0 => State::Trailers,
                            n => State::ChunkData(n),
                        }
                    };
                    buf.advance(end + 2);
                }
            }
        }
    }

    /// Read more, where the body cannot end yet.
    async fn more<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        buf: &mut BytesMut,
    ) -> Result<(), ReadError> {
        if fill(io, buf).await? {
            Ok(())
        } else {
            Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()))
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// The size on a chunk line: hex digits, blanks around them allowed, an
/// extension after `;` ignored; at most 15 digits.
fn chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let hex = line.split(|&b| b == b';').next().unwrap_or(b"");
    let hex = hex.trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return Err(ReadError::Protocol("bad chunk size"));
    }
    hex.iter()
        .try_fold(0u64, |n, &d| {
            char::from(d).to_digit(16).map(|v| (n << 4) | u64::from(v))
        })
        .ok_or(ReadError::Protocol("bad chunk size"))
}

/// Write `bytes` and flush (a TLS stream holds them until flushed).
pub async fn write_all<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    io.write_all(bytes).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(raw: &[u8], split: usize) -> Result<(Head, Vec<u8>, BytesMut), ReadError> {
        // The server's bytes arrive `split` at a time.
        let mut builder = tokio_test_io(raw, split);
        let mut buf = BytesMut::new();
        let head = read_head(&mut builder, &mut buf, false).await?;
        let mut body = Body::new(head.framing);
        let mut out = Vec::new();
        while let Some(piece) = body.next(&mut builder, &mut buf).await? {
            out.extend_from_slice(piece);
        }
        assert!(body.finished());
        Ok((head, out, buf))
    }

    /// An in-memory reader that returns at most `split` bytes per read.
    fn tokio_test_io(raw: &[u8], split: usize) -> impl AsyncRead + Unpin {
        let pieces: Vec<Vec<u8>> = raw.chunks(split.max(1)).map(<[u8]>::to_vec).collect();
        Pieces(pieces.into_iter().collect())
    }

    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if let Some(p) = self.0.pop_front() {
                let n = p.len().min(buf.remaining());
                buf.put_slice(&p[..n]);
                if n < p.len() {
                    self.0.push_front(p[n..].to_vec());
                }
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_chunked_body_is_decoded_whatever_the_read_sizes() {
        let raw =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        for split in [1, 2, 3, 7, 64, 4096] {
            let (head, body, rest) = block(body_of(raw, split)).expect("parses");
            assert_eq!(head.status, 200);
            assert!(head.keep_alive);
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz", "split {split}");
            // What follows the body stays for the next response.
            assert!(split < raw.len() || &rest[..] == b"NEXT");
        }
    }

    #[test]
    fn length_close_and_no_body_framings() {
        let (h, body, rest) = block(body_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef",
            4096,
        ))
        .expect("ok");
        assert_eq!(
            (h.framing, &body[..], &rest[..]),
            (Framing::Length(3), &b"abc"[..], &b"def"[..])
        );
        let (h, body, _) = block(body_of(b"HTTP/1.1 200 OK\r\n\r\nto the end", 3)).expect("ok");
        assert_eq!(
            (h.framing, h.keep_alive, &body[..]),
            (Framing::Close, false, &b"to the end"[..])
        );
        let (h, body, _) = block(body_of(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            5,
        ))
        .expect("ok");
        assert_eq!((h.status, body.len()), (204, 0));
        let (h, _, _) = block(body_of(
            b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            9,
        ))
        .expect("ok");
        assert_eq!(
            (h.status, h.retry_after.as_deref(), h.keep_alive),
            (429, Some("7"), false)
        );
        let (h, _, _) =
            block(body_of(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 9)).expect("ok");
        assert!(!h.keep_alive, "HTTP/1.0 closes unless it says keep-alive");
    }

    #[test]
    fn broken_bodies_are_errors_not_panics() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        ] {
            assert!(
                block(body_of(raw, 4)).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
