//! The floor under any HTTP/1.1 proxy we could write on tokio: a hand-written reverse proxy with
//! no framework, one runtime thread, `httparse` for the heads, one kept-alive upstream connection
//! per client connection, and each response sent in one write. `gateway/benches/proxy-vs-nginx`
//! runs it beside Nginx, the bare Pingora proxy and the gateway (`SYSTEMS="… floor"`), so that
//! what Pingora's request path costs can be told apart from what tokio and the kernel cost
//! (docs/benchmarks.md, "The main site's reads forwarded by the gateway").
//!
//! It is a measuring stick, not a proxy to deploy: it forwards bodiless requests only (a request
//! with a body, an upgrade or a response without `Content-Length` ends the connection), keeps no
//! access log, and has no timeouts. It does the per-request work a real proxy does: parse the
//! client's head, rewrite it (hop-by-hop headers dropped; `X-Real-IP`, `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host` set as the bench's Nginx does), parse the upstream's
//! head and rebuild it without hop-by-hop headers.
//!
//! Configured by environment variables:
//! - `FLOOR_UPSTREAM` (required): the upstream's `host:port`;
//! - `FLOOR_LISTEN`: plain HTTP listener (default `127.0.0.1:43050`).
//!
//! Run with `cargo run --release -p chat-gateway --example floor_proxy`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A head larger than this ends the connection (Nginx's `large_client_header_buffers` is 4 × 8k).
const MAX_HEAD: usize = 32 * 1024;
/// Most headers a head may carry.
const MAX_HEADERS: usize = 64;
/// Headers not forwarded as received: those that describe one hop (RFC 9110 §7.6.1), and
/// `X-Forwarded-For`, which is forwarded with the client's address appended.
const NOT_FORWARDED: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn main() -> io::Result<()> {
    let Some(upstream) = env("FLOOR_UPSTREAM") else {
        eprintln!("FLOOR_UPSTREAM (host:port) is required");
        std::process::exit(2);
    };
    let Some(upstream) = upstream.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        eprintln!("FLOOR_UPSTREAM={upstream:?} does not resolve");
        std::process::exit(2);
    };
    let listen = env("FLOOR_LISTEN").unwrap_or_else(|| "127.0.0.1:43050".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&listen).await?;
        println!("FLOOR_OK listen={listen} upstream={upstream}");
        loop {
            let (client, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            tokio::spawn(async move {
                // A connection ends on the first thing it does not forward; nothing to report.
                let _ = serve(client, peer, upstream).await;
            });
        }
    })
}

/// Reads into `buf` until it holds a whole head, as `parse` tells; returns the head's length.
async fn read_head<F>(stream: &mut TcpStream, buf: &mut Vec<u8>, parse: F) -> io::Result<usize>
where
    F: Fn(&[u8]) -> Result<Option<usize>, httparse::Error>,
{
    loop {
        if !buf.is_empty() {
            match parse(buf) {
                Ok(Some(len)) => return Ok(len),
                Ok(None) if buf.len() < MAX_HEAD => {}
                Ok(None) => return Err(io::Error::other("head too large")),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

fn complete(status: httparse::Status<usize>) -> Option<usize> {
    match status {
        httparse::Status::Complete(len) => Some(len),
        httparse::Status::Partial => None,
    }
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn not_forwarded(name: &str) -> bool {
    NOT_FORWARDED.iter().any(|h| name.eq_ignore_ascii_case(h))
}

async fn serve(mut client: TcpStream, peer: SocketAddr, upstream: SocketAddr) -> io::Result<()> {
    client.set_nodelay(true)?;
    let peer_ip = peer.ip().to_string();
    let mut origin: Option<TcpStream> = None;
    let mut request = Vec::with_capacity(4096);
    let mut forwarded = Vec::with_capacity(1024);
    let mut response = Vec::with_capacity(8192);
    let mut answer = Vec::with_capacity(8192);
    loop {
        let head_len = match read_head(&mut client, &mut request, |b| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            httparse::Request::new(&mut headers).parse(b).map(complete)
        })
        .await
        {
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && request.is_empty() => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(&request[..head_len])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let method = req.method.unwrap_or("GET");
        forwarded.clear();
        forwarded.extend_from_slice(method.as_bytes());
        forwarded.push(b' ');
        forwarded.extend_from_slice(req.path.unwrap_or("/").as_bytes());
        forwarded.extend_from_slice(b" HTTP/1.1\r\n");
        let mut host: &[u8] = b"";
        let mut received_xff: Option<&[u8]> = None;
        for h in req.headers.iter() {
            let has_body = (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
                || h.name.eq_ignore_ascii_case("transfer-encoding")
                || h.name.eq_ignore_ascii_case("upgrade");
            if has_body {
                return Err(io::Error::other(
                    "the floor forwards bodiless requests only",
                ));
            }
            if h.name.eq_ignore_ascii_case("host") {
                host = h.value;
            }
            if h.name.eq_ignore_ascii_case("x-forwarded-for") {
                received_xff = Some(h.value);
            }
            if not_forwarded(h.name) {
                continue;
            }
            push_header(&mut forwarded, h.name, h.value);
        }
        forwarded.extend_from_slice(b"X-Real-IP: ");
        forwarded.extend_from_slice(peer_ip.as_bytes());
        forwarded.extend_from_slice(b"\r\nX-Forwarded-For: ");
        if let Some(xff) = received_xff {
            forwarded.extend_from_slice(xff);
            forwarded.extend_from_slice(b", ");
        }
        forwarded.extend_from_slice(peer_ip.as_bytes());
        forwarded.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ");
        forwarded.extend_from_slice(host);
        forwarded.extend_from_slice(b"\r\n\r\n");
        let head_only = method.eq_ignore_ascii_case("HEAD");
        request.drain(..head_len);

        // A kept-alive upstream connection may have been closed by the upstream meanwhile: one
        // more try on a new connection, as Nginx does for an idempotent request.
        let mut tries = 0;
        let (status_end, keep_origin) = loop {
            tries += 1;
            let conn = match origin.as_mut() {
                Some(conn) => conn,
                None => {
                    let conn = TcpStream::connect(upstream).await?;
                    conn.set_nodelay(true)?;
                    origin.insert(conn)
                }
            };
            response.clear();
            let exchanged = async {
                conn.write_all(&forwarded).await?;
                read_head(conn, &mut response, |b| {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    httparse::Response::new(&mut headers).parse(b).map(complete)
                })
                .await
            }
            .await;
            match exchanged {
                Ok(len) => break (len, true),
                Err(_) if tries == 1 && response.is_empty() => origin = None,
                Err(e) => return Err(e),
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut headers);
        res.parse(&response[..status_end])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let code = res.code.unwrap_or(502);
        answer.clear();
        answer.extend_from_slice(format!("HTTP/1.1 {code} ").as_bytes());
        answer.extend_from_slice(res.reason.unwrap_or("").as_bytes());
        answer.extend_from_slice(b"\r\n");
        let mut body_len: Option<usize> = None;
        let mut origin_closes = !keep_origin;
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                body_len = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            }
            if h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close") {
                origin_closes = true;
            }
            if not_forwarded(h.name) {
                continue;
            }
            push_header(&mut answer, h.name, h.value);
        }
        answer.extend_from_slice(b"\r\n");
        let no_body = head_only || code < 200 || code == 204 || code == 304;
        let body_len = match (no_body, body_len) {
            (true, _) => 0,
            (false, Some(len)) => len,
            (false, None) => {
                return Err(io::Error::other(
                    "the floor forwards Content-Length bodies only",
                ))
            }
        };
        // The body: what came with the head, then the rest, then head and body in one write.
        let Some(conn) = origin.as_mut() else {
            return Err(io::Error::other("no upstream connection"));
        };
        while response.len() < status_end + body_len {
            response.reserve(status_end + body_len - response.len());
            if conn.read_buf(&mut response).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        answer.extend_from_slice(&response[status_end..status_end + body_len]);
        client.write_all(&answer).await?;
        if origin_closes || response.len() > status_end + body_len {
            origin = None;
        }
    }
}
