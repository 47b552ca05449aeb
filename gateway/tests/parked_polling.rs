//! Long-polling connections parked outside Pingora (`gateway/src/parked.rs`), against the real
//! binary over raw TCP, so that which connection carries which request is certain: a held poll
//! and the idle keep-alive after a polling answer wait parked, answer on the same connection,
//! keep their place under the connection caps, close when idle too long, and hand the
//! connection back to the HTTP layer for whatever request comes next, pipelined ones included.

mod common;

use common::{metric, Gateway};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 response read from a raw connection.
struct Response {
    status: u16,
    head: String,
    body: String,
}

/// Reads one response (`Content-Length` bodies only, which is what the gateway's chat
/// answers use) from `stream`, keeping bytes past it in `pending` for the next call.
async fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Response {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            let length: usize = common::header_value(&head, "content-length")
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            if pending.len() >= end + 4 + length {
                let body =
                    String::from_utf8_lossy(&pending[end + 4..end + 4 + length]).into_owned();
                pending.drain(..end + 4 + length);
                let status = head[9..12].parse().unwrap();
                return Response { status, head, body };
            }
        }
        let mut buf = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .expect("a response within 15 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed before a whole response: {pending:?}"
        );
        pending.extend_from_slice(&buf[..n]);
    }
}

async fn request(stream: &mut TcpStream, method: &str, path: &str, body: &str) {
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: chat.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await.unwrap();
}

async fn connect(gw: &Gateway) -> TcpStream {
    TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap()
}

/// Opens a visitor's polling session on `stream`: its `sid` and cursor.
async fn open_session(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, u64) {
    request(stream, "POST", "/ws-visitor/poll?site=default", "").await;
    let opened = read_response(stream, pending).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let opened: Value = serde_json::from_str(&opened.body).unwrap();
    (
        opened["sid"].as_str().unwrap().to_owned(),
        opened["cursor"].as_u64().unwrap(),
    )
}

async fn parked(gw: &Gateway) -> f64 {
    metric(gw, "chat_http_connections_parked", &[]).await
}

/// Waits until the parked gauge reads `n` (a connection parks right after its answer is
/// written, so a reader can see the answer a moment before the gauge).
async fn until_parked(gw: &Gateway, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while parked(gw).await != n {
        assert!(
            Instant::now() < deadline,
            "parked connections: {} not {n}",
            parked(gw).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_held_poll_waits_parked_and_its_connection_serves_the_next_requests() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_POLL_HOLD_SECS", "10"),
            ("CHAT_KEEPALIVE_TIMEOUT_SECS", "10"),
        ],
    );
    let (mut a, mut a_pending) = (connect(&gw).await, Vec::new());
    let (sid, cursor) = open_session(&mut a, &mut a_pending).await;
    // The opening answer left connection A parked, idle.
    until_parked(&gw, 1.0).await;

    // A's next request is a poll: it is held, still parked (one connection, one count).
    request(
        &mut a,
        "GET",
        &format!("/ws-visitor/poll?sid={sid}&cursor={cursor}"),
        "",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(parked(&gw).await, 1.0);
    assert_eq!(
        metric(&gw, "chat_http_connections_open", &[]).await,
        1.0,
        "a parked connection is still counted as open"
    );

    // A send on a second connection answers the held poll on the first.
    let (mut b, mut b_pending) = (connect(&gw).await, Vec::new());
    let send = r#"{"type":"send","id":"s1","body":"hello from a parked poll"}"#;
    request(&mut b, "POST", &format!("/ws-visitor/poll?sid={sid}"), send).await;
    let sent = read_response(&mut b, &mut b_pending).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body.contains(r#""type":"ack""#), "{}", sent.body);
    let held = read_response(&mut a, &mut a_pending).await;
    assert_eq!(held.status, 200, "{}", held.body);
    assert!(
        held.body.contains("hello from a parked poll"),
        "{}",
        held.body
    );
    assert_eq!(
        common::header_value(&held.head, "connection"),
        Some("keep-alive")
    );
    assert_eq!(
        common::header_value(&held.head, "x-content-type-options"),
        Some("nosniff")
    );
    assert!(
        common::header_value(&held.head, "date").is_some(),
        "{}",
        held.head
    );
    // Both connections now idle parked.
    until_parked(&gw, 2.0).await;

    // The parked connection goes back to the HTTP layer for any request: a page, twice.
    for _ in 0..2 {
        request(&mut a, "GET", "/chat/health", "").await;
        let health = read_response(&mut a, &mut a_pending).await;
        assert_eq!(
            (health.status, health.body.as_str()),
            (200, r#"{"status":"ok"}"#)
        );
    }
    // A health answer is Pingora's: A is no longer parked, and waits in Pingora for more.
    until_parked(&gw, 1.0).await;
    assert_eq!(
        metric(
            &gw,
            "chat_http_requests_total",
            &[("route", "poll_visitor"), ("status", "200")]
        )
        .await,
        3.0,
        "the opening, the held poll and the send, each counted once"
    );

    // A request asking to close is answered by Pingora and not parked.
    let close = format!(
        "GET /ws-visitor/poll?sid={sid}&cursor=1 HTTP/1.1\r\nHost: chat.example\r\nConnection: close\r\n\r\n"
    );
    b.write_all(close.as_bytes()).await.unwrap();
    let answered = read_response(&mut b, &mut b_pending).await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    assert_eq!(
        common::header_value(&answered.head, "connection"),
        Some("close")
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), b.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "closed after the answer: {closed:?}"
    );
    until_parked(&gw, 0.0).await;
}

#[tokio::test]
async fn parked_connections_keep_their_place_under_the_caps_and_close_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_POLL_HOLD_SECS", "8"),
            ("CHAT_KEEPALIVE_TIMEOUT_SECS", "1"),
            ("CHAT_MAX_HTTP_CONNECTIONS_PER_IP", "2"),
        ],
    );
    let (mut a, mut a_pending) = (connect(&gw).await, Vec::new());
    let (sid, cursor) = open_session(&mut a, &mut a_pending).await;
    let mut b = connect(&gw).await;
    request(
        &mut b,
        "GET",
        &format!("/ws-visitor/poll?sid={sid}&cursor={cursor}"),
        "",
    )
    .await;
    until_parked(&gw, 2.0).await;

    // Two parked connections fill the address's two places: a third is refused.
    let mut c = connect(&gw).await;
    let mut c_pending = Vec::new();
    request(&mut c, "GET", "/chat/health", "").await;
    let refused = read_response(&mut c, &mut c_pending).await;
    assert_eq!(refused.status, 503, "{}", refused.body);

    // A, idle since its answer, is closed after the keep-alive timeout (1 s); B's held poll
    // (held up to 8 s) is not idle and stays.
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), a.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "idle parked connection closed: {closed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    until_parked(&gw, 1.0).await;

    // Its place is given back: a new connection is served.
    let mut d = connect(&gw).await;
    let mut d_pending = Vec::new();
    request(&mut d, "GET", "/chat/health", "").await;
    assert_eq!(read_response(&mut d, &mut d_pending).await.status, 200);
}

#[tokio::test]
async fn a_request_pipelined_behind_a_held_poll_is_answered_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_POLL_HOLD_SECS", "1")]);
    let (mut a, mut pending) = (connect(&gw).await, Vec::new());
    let (sid, cursor) = open_session(&mut a, &mut pending).await;
    let both = format!(
        "GET /ws-visitor/poll?sid={sid}&cursor={cursor} HTTP/1.1\r\nHost: chat.example\r\n\r\n\
         GET /chat/health HTTP/1.1\r\nHost: chat.example\r\n\r\n"
    );
    a.write_all(both.as_bytes()).await.unwrap();
    let held = read_response(&mut a, &mut pending).await;
    assert_eq!(held.status, 200, "{}", held.body);
    assert!(
        held.body.contains(r#""events":[]"#),
        "an empty poll after the hold: {}",
        held.body
    );
    let health = read_response(&mut a, &mut pending).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
}

/// Reads one `Content-Length` response from a blocking stream: (status, head, body).
fn read_blocking(stream: &mut impl std::io::Read) -> (u16, String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = common::header_value(&head, "content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    (
        head[9..12].parse().unwrap(),
        head,
        String::from_utf8(body).unwrap(),
    )
}

#[test]
fn over_tls_a_parked_poll_answers_and_its_connection_stays_tls() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let shop = common::site(dir.path(), "shop");
    let made = rcgen::generate_simple_self_signed(vec!["shop.example".to_string()]).unwrap();
    std::fs::write(&shop.cert, made.cert.pem()).unwrap();
    std::fs::write(&shop.key, made.signing_key.serialize_pem()).unwrap();
    let (gw, port) = common::tls_gateway(
        dir.path(),
        &[&shop],
        &[
            ("CHAT_HSTS_MAX_AGE_SECS", "600"),
            ("CHAT_POLL_HOLD_SECS", "1"),
        ],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut tls, _) = common::tls_client::connect(port, "shop.example");
    let host = "Host: shop.example\r\n";
    write!(
        tls,
        "POST /ws-visitor/poll?site=default HTTP/1.1\r\n{host}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let (status, _, body) = read_blocking(&mut tls);
    assert_eq!(status, 200, "{body}");
    let opened: Value = serde_json::from_str(&body).unwrap();
    let (sid, cursor) = (
        opened["sid"].as_str().unwrap(),
        opened["cursor"].as_u64().unwrap(),
    );

    write!(
        tls,
        "GET /ws-visitor/poll?sid={sid}&cursor={cursor} HTTP/1.1\r\n{host}\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        runtime.block_on(parked(&gw)),
        1.0,
        "the held poll is parked"
    );
    let (status, head, body) = read_blocking(&mut tls);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        common::header_value(&head, "strict-transport-security"),
        Some("max-age=600"),
        "{head}"
    );

    // Handed back to the HTTP layer, the connection is still known to be TLS.
    write!(tls, "GET /chat/health HTTP/1.1\r\n{host}\r\n").unwrap();
    let (status, head, _) = read_blocking(&mut tls);
    assert_eq!(status, 200);
    assert_eq!(
        common::header_value(&head, "strict-transport-security"),
        Some("max-age=600"),
        "{head}"
    );
}
