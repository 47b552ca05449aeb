//! An answer written on a connection of the front: the main site's (its head as received,
//! `AnswerHead`, with what Pingora's session would add) or a 502 page.

use crate::compression::{compressible_head, varies_by_encoding};
use crate::edge_stream::PlainStream;
use crate::site_forward::{AnswerHead, Reply};
use bytes::{BufMut, Bytes, BytesMut};
use pingora::{ErrorType, OrErr, Result};
use tokio::io::AsyncWriteExt;

/// An answer written on a connection of the front: the main site's, relayed by
/// [`SiteForwarder::relay`](crate::site_forward::SiteForwarder), or a 502 page.
pub(super) struct Answer<'a> {
    conn: &'a mut PlainStream,
    /// The connection stays open after this answer (`Connection: keep-alive`).
    pub keepalive: bool,
    /// `Vary: Accept-Encoding` on answers compressible from this many bytes (compression on).
    vary_from: Option<u64>,
    chunked: bool,
    /// The status written, once the head was.
    pub status: Option<u16>,
    /// Body bytes written.
    pub sent: u64,
}

impl<'a> Answer<'a> {
    /// An answer on `conn`; `vary_from` as the field says.
    pub fn new(conn: &'a mut PlainStream, keepalive: bool, vary_from: Option<u64>) -> Self {
        Self {
            conn,
            keepalive,
            vary_from,
            chunked: false,
            status: None,
            sent: 0,
        }
    }
}

impl Answer<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.conn
            .write_all(bytes)
            .await
            .or_err(ErrorType::WriteError, "writing to the client")
            .map_err(|e| e.into_down())
    }

    async fn flush(&mut self) -> Result<()> {
        self.conn
            .flush()
            .await
            .or_err(ErrorType::WriteError, "writing to the client")
            .map_err(|e| e.into_down())
    }

    /// A `502 Bad Gateway` page, the connection closed after it.
    pub async fn bad_gateway(&mut self, page: String, head_only: bool) {
        self.keepalive = false;
        let mut out = BytesMut::with_capacity(256 + page.len());
        out.put_slice(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html; charset=utf-8\r\n");
        out.put_slice(b"Cache-Control: no-store\r\n");
        if self.vary_from.is_some_and(|min| page.len() as u64 >= min) {
            out.put_slice(b"Vary: Accept-Encoding\r\n");
        }
        out.put_slice(format!("Content-Length: {}\r\n", page.len()).as_bytes());
        self.end_head(&mut out);
        if !head_only {
            out.put_slice(page.as_bytes());
            self.sent = page.len() as u64;
        }
        self.status = Some(502);
        let written = async {
            self.write(&out).await?;
            self.flush().await
        };
        if let Err(e) = written.await {
            tracing::debug!(error = %e, "the client went away before its 502 page");
        }
    }

    /// What Pingora's HTTP/1 session adds to every answer (`Date`, `Connection`), and the end
    /// of the head.
    fn end_head(&self, out: &mut BytesMut) {
        out.put_slice(b"Date: ");
        out.put_slice(pingora::protocols::http::date::get_cached_date().as_bytes());
        out.put_slice(if self.keepalive {
            b"\r\nConnection: keep-alive\r\n\r\n".as_slice()
        } else {
            b"\r\nConnection: close\r\n\r\n".as_slice()
        });
    }
}

impl Reply for Answer<'_> {
    async fn head(&mut self, head: &AnswerHead, end: bool) -> Result<()> {
        let status = head.status();
        // A valid code: `parse_head` refuses any other.
        let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        let mut out = BytesMut::with_capacity(512);
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(code.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(code.canonical_reason().unwrap_or("").as_bytes());
        out.put_slice(b"\r\n");
        let mut vary = Vec::new();
        for (name, value) in head.headers() {
            // Pingora's session writes its own `Date`.
            if name.eq_ignore_ascii_case(b"date") {
                continue;
            }
            if name.eq_ignore_ascii_case(b"vary") {
                vary.push(value);
            }
            out.put_slice(name);
            out.put_slice(b": ");
            out.put_slice(value);
            out.put_slice(b"\r\n");
        }
        // As `crate::edge_response` does for Pingora's answers: compressible answers vary by
        // `Accept-Encoding` (another `Vary` line adds to those there, RFC 9110 §5.3).
        if let Some(min_bytes) = self.vary_from {
            let compressible = compressible_head(status, |name| head.header(name), min_bytes);
            if compressible && !varies_by_encoding(vary.into_iter()) {
                out.put_slice(b"Vary: Accept-Encoding\r\n");
            }
        }
        self.chunked = !end && head.chunked();
        if head.chunked() {
            out.put_slice(b"Transfer-Encoding: chunked\r\n");
        }
        self.end_head(&mut out);
        self.status = Some(status);
        self.write(&out).await?;
        if end {
            self.flush().await?;
        }
        Ok(())
    }

    async fn body(&mut self, piece: Option<Bytes>, end: bool) -> Result<()> {
        if let Some(piece) = piece.filter(|p| !p.is_empty()) {
            self.sent += piece.len() as u64;
            if self.chunked {
                self.write(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                self.write(&piece).await?;
                self.write(b"\r\n").await?;
            } else {
                self.write(&piece).await?;
            }
        }
        if end {
            if self.chunked {
                self.write(b"0\r\n\r\n").await?;
            }
            self.flush().await?;
        }
        Ok(())
    }
}
