//! The first request head of an HTTP/1 connection, read and checked before
//! hyper serves it, so that a head hyper would refuse with a bare status
//! gets the JSON error body every other refusal carries.
//!
//! hyper answers a head it cannot parse (`400`) or one larger than its
//! read buffer (`431`) itself, with an empty body, before any service
//! runs. Here the head is read up to that same bound and parsed with
//! `httparse` (hyper's own parser) only to sort it: complete, incomplete,
//! malformed or too large. The two refusals are answered in JSON and the
//! connection closed; anything else is handed to hyper with the bytes
//! already read replayed first ([`Rewind`]), so hyper parses and serves
//! exactly what the client sent. Only the first head of a connection is
//! checked: a later request on a kept-alive connection that hyper refuses
//! gets hyper's bare status (docs/api.md, "Errors").

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::IntoResponse as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use crate::http::ApiError;

/// What became of a connection's first head.
pub(super) enum First {
    /// Serve it: these bytes (a complete head, maybe more, or the start of
    /// an HTTP/2 preface) were read and must be replayed to hyper.
    Serve(Vec<u8>),
    /// Answered and to be closed, or closed or too slow before a complete
    /// head arrived (there is no request to answer).
    Done,
}

/// Reads the first head of `stream` within `deadline`, up to `limit`
/// bytes and `max_headers` header fields (hyper's own limits), and answers
/// it in JSON if hyper would refuse it. With `http2`, bytes that begin the
/// HTTP/2 preface are handed on unchecked: that is HTTP/2, not a head.
pub(super) async fn check_first<S>(
    stream: &mut S,
    deadline: Duration,
    limit: usize,
    max_headers: usize,
    http2: bool,
) -> First
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let read = tokio::time::timeout(deadline, read_head(stream, limit, max_headers, http2)).await;
    let refusal = match read {
        Ok(Ok(Read::Head(bytes))) => return First::Serve(bytes),
        Ok(Ok(Read::Malformed)) => {
            ApiError::invalid_request("the request line or a header is malformed")
        }
        Ok(Ok(Read::TooLarge)) => ApiError::headers_too_large(),
        // Closed, reset, or too slow: nothing to answer.
        Ok(Ok(Read::Ended) | Err(_)) | Err(_) => return First::Done,
    };
    // The client may already be gone; closing is all that is left then.
    let _ = tokio::time::timeout(deadline, answer(stream, refusal)).await;
    First::Done
}

/// A stream whose first bytes were already read: they are read again
/// first, then the stream itself.
pub(super) struct Rewind<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub(super) fn new(prefix: Vec<u8>, inner: S) -> Rewind<S> {
        Rewind {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let left = &this.prefix[this.at..];
            let n = left.len().min(buf.remaining());
            buf.put_slice(&left[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                // Replayed: the buffer is not kept for the connection's life.
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How reading a head ended.
enum Read {
    Head(Vec<u8>),
    Malformed,
    TooLarge,
    Ended,
}

/// Reads until the bytes hold a complete head, are malformed, or reach
/// `limit` without a complete head.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
    max_headers: usize,
    http2: bool,
) -> io::Result<Read> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 8 * 1024];
    loop {
        let room = (limit - bytes.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(Read::Ended);
        }
        bytes.extend_from_slice(&chunk[..n]);
        if http2 && bytes.starts_with(b"PRI ") {
            return Ok(Read::Head(bytes));
        }
        let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
        match httparse::Request::new(&mut headers).parse(&bytes) {
            Ok(httparse::Status::Complete(_)) => return Ok(Read::Head(bytes)),
            Err(httparse::Error::TooManyHeaders) => return Ok(Read::TooLarge),
            Err(_) => return Ok(Read::Malformed),
            Ok(httparse::Status::Partial) if bytes.len() >= limit => return Ok(Read::TooLarge),
            Ok(httparse::Status::Partial) => {}
        }
    }
}

/// Writes `refusal` as an HTTP/1.1 answer that closes the connection.
async fn answer<S: AsyncWrite + Unpin>(stream: &mut S, refusal: ApiError) -> io::Result<()> {
    let (parts, body) = refusal.into_response().into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(io::Error::other)?;
    let head = format!(
        "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        parts.status,
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.flush().await?;
    stream.shutdown().await
}
