//! The edge facing a hostile internet: forwarding headers a client cannot forge, no credential
//! in any log line whatever fails, connection deadlines (keep-alive idle, request head, body
//! reads), a public health answer that tells nothing, security headers on the pages, private
//! data files.

mod common;

use common::{header_value, start_upstream, tcp_from, Gateway};
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn header_count(head: &str, name: &str) -> usize {
    head.lines()
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        })
        .count()
}

/// Sends a spoofing request for `/page` and returns the head the upstream received.
async fn proxied_head(gw: &Gateway, heads: &Arc<Mutex<Vec<String>>>, xff: &str) -> String {
    let resp = reqwest::Client::new()
        .get(gw.http("/page"))
        .header("Host", "www.shop.example")
        .header("X-Forwarded-For", xff)
        .header("X-Real-IP", "6.6.6.6")
        .header("Forwarded", "for=6.6.6.6;proto=https")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let head = heads
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|h| h.starts_with("GET /page"))
        .cloned()
        .unwrap();
    // Nothing the client forged reaches the main site.
    assert!(!head.contains("6.6.6.6"), "{head}");
    assert_eq!(header_count(&head, "forwarded"), 0, "{head}");
    assert_eq!(header_count(&head, "x-forwarded-for"), 1, "{head}");
    assert_eq!(header_count(&head, "x-real-ip"), 1, "{head}");
    assert_eq!(header_value(&head, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        header_value(&head, "x-forwarded-host"),
        Some("www.shop.example")
    );
    head
}

#[tokio::test]
async fn without_a_trusted_proxy_the_peer_is_the_client() {
    let (upstream, heads) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[("CHAT_UPSTREAM", &format!("127.0.0.1:{upstream}"))],
    );
    let head = proxied_head(&gw, &heads, "6.6.6.6, 198.51.100.4").await;
    assert!(!head.contains("198.51.100.4"), "{head}");
    assert_eq!(header_value(&head, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header_value(&head, "x-real-ip"), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_trusted_proxy_forwarded_for_is_walked_from_the_right() {
    let (upstream, heads) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_UPSTREAM", &format!("127.0.0.1:{upstream}")),
            ("CHAT_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1/32"),
        ],
    );
    let head = proxied_head(&gw, &heads, "6.6.6.6, 198.51.100.4, 10.0.0.1").await;
    assert_eq!(
        header_value(&head, "x-forwarded-for"),
        Some("198.51.100.4, 10.0.0.1, 127.0.0.1"),
        "{head}"
    );
    assert_eq!(header_value(&head, "x-real-ip"), Some("198.51.100.4"));
}

/// Sends `request` raw and closes the connection without waiting for an answer.
async fn send_and_hang_up(gw: &Gateway, request: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
}

/// Sends `request` raw and reads what comes back until the gateway closes (at most 3 s).
async fn send_and_wait(gw: &Gateway, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn wait_for_log(gw: &Gateway, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn no_token_reaches_the_log_whatever_fails() {
    let dir = tempfile::tempdir().unwrap();
    let dead_upstream = common::free_port();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_LOG", "debug"),
            ("CHAT_API_KEY", "api-key-never-logged"),
            ("CHAT_HEADER_TIMEOUT_SECS", "2"),
            ("CHAT_UPSTREAM", &format!("127.0.0.1:{dead_upstream}")),
        ],
    );
    let token = gw.agent_token("alice", "Alice");
    let h = "Host: gw.example\r\nOrigin: http://127.0.0.1\r\n";
    let conv = "6f1c1c84-7a4e-4f4b-9a38-1f4a0c8e2d11";
    // Request bodies cut short by a client that goes away: the chat route fails reading it.
    for path in [
        format!("/ws-admin/poll?token={token}"),
        format!("/ws-visitor/poll?sid=p-secret-sid&token={token}"),
        format!("/ws-visitor/?EIO=4&transport=polling&sid=e-secret-sid&token={token}"),
        format!("/ws-admin/?EIO=4&transport=polling&sid=e-secret-sid&token={token}"),
    ] {
        send_and_hang_up(
            &gw,
            &format!("POST {path} HTTP/1.1\r\n{h}Content-Length: 100\r\n\r\n0123456789"),
        )
        .await;
    }
    send_and_hang_up(
        &gw,
        &format!(
            "POST /chat/api/conversations/{conv}/messages?token={token} HTTP/1.1\r\n{h}\
             Authorization: Bearer api-key-never-logged\r\nContent-Length: 100\r\n\r\n{{\"bo"
        ),
    )
    .await;
    // A body that stalls: the read times out after CHAT_HEADER_TIMEOUT_SECS.
    let stalled = send_and_wait(
        &gw,
        &format!(
            "POST /ws-admin/poll?token={token}&stall=1 HTTP/1.1\r\n{h}Content-Length: 100\r\n\r\n01"
        ),
    )
    .await;
    assert!(!stalled.contains(" 200 "), "{stalled}");
    // A bad upgrade and a bad WebSocket version, with the token in the query.
    send_and_wait(
        &gw,
        &format!("GET /ws-admin/?token={token} HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
    )
    .await;
    send_and_wait(
        &gw,
        &format!(
            "GET /ws-admin/?token={token} HTTP/1.1\r\n{h}Connection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        ),
    )
    .await;
    // The main site is down: Pingora logs the failed proxy with the request summary.
    let resp = reqwest::get(gw.http(&format!(
        "/account?plan=pro&access_token={token}&password=hunter2"
    )))
    .await
    .unwrap();
    assert_eq!(resp.status(), 502);

    // The failures were logged, with the queries redacted...
    wait_for_log(&gw, "/ws-admin/poll?token=REDACTED");
    wait_for_log(&gw, "/ws-visitor/poll?sid=REDACTED&token=REDACTED");
    wait_for_log(
        &gw,
        "EIO=REDACTED&transport=REDACTED&sid=REDACTED&token=REDACTED",
    );
    wait_for_log(
        &gw,
        &format!("/chat/api/conversations/{conv}/messages?token=REDACTED"),
    );
    wait_for_log(&gw, "token=REDACTED&stall=REDACTED");
    wait_for_log(
        &gw,
        "/account?plan=pro&access_token=REDACTED&password=REDACTED",
    );
    // ...and no credential appears anywhere.
    let log = gw.log();
    for secret in [
        token.as_str(),
        "api-key-never-logged",
        "hunter2",
        "p-secret-sid",
        "e-secret-sid",
        common::SECRET,
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    // The token's signature alone is not there either (a partial leak).
    let signature = token.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "{log}");
}

/// Reads from `s` until EOF or error; the time it took.
async fn time_until_closed(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

/// Writes a complete request and reads its complete response (Content-Length framed).
async fn round_trip(s: &mut TcpStream) {
    s.write_all(b"GET /chat/health HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = header_value(head, "content-length")
                .unwrap()
                .parse()
                .unwrap();
            if body.len() >= len {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                return;
            }
        }
    }
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_KEEPALIVE_TIMEOUT_SECS", "2"),
            ("CHAT_HEADER_TIMEOUT_SECS", "2"),
        ],
    );
    let addr = ("127.0.0.1", gw.port);

    // An idle kept-alive connection, after two requests (the first and a reused one).
    let mut s = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut s).await;
    round_trip(&mut s).await;
    let idle = time_until_closed(&mut s, Duration::from_secs(10)).await;
    eprintln!("keep-alive idle connection closed after {idle:?}");
    assert!(
        idle >= Duration::from_millis(1500) && idle < Duration::from_millis(3500),
        "{idle:?}"
    );

    // A first request head trickled a byte every 300 ms never completes: closed at the
    // header deadline, although each read is quick.
    for reused in [false, true] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if reused {
            round_trip(&mut s).await;
        }
        let start = Instant::now();
        let head =
            b"GET /chat/health HTTP/1.1\r\nHost: gw\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut closed = None;
        for byte in head.iter() {
            if s.write_all(&[*byte]).await.is_err() {
                closed = Some(start.elapsed());
                break;
            }
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = Some(start.elapsed());
                    break;
                }
                Ok(Ok(_)) => panic!("answered a half-sent head"),
                Err(_) => {}
            }
        }
        let closed = closed.expect("connection still open after the whole trickled head");
        eprintln!("trickled head (reused connection: {reused}) closed after {closed:?}");
        assert!(closed < Duration::from_millis(3500), "{closed:?}");
    }

    // A request body that stalls is cut after the per-read timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /ws-visitor/poll?sid=x HTTP/1.1\r\nHost: gw\r\nContent-Length: 50\r\n\r\n{")
        .await
        .unwrap();
    let stalled = time_until_closed(&mut s, Duration::from_secs(10)).await;
    eprintln!("stalled request body closed after {stalled:?}");
    assert!(stalled < Duration::from_millis(3500), "{stalled:?}");
}

#[tokio::test]
async fn the_main_sites_websocket_outlives_the_read_timeout_other_requests_do_not() {
    let (upstream, _heads) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_UPSTREAM", &format!("127.0.0.1:{upstream}")),
            ("CHAT_HEADER_TIMEOUT_SECS", "1"),
            ("CHAT_KEEPALIVE_TIMEOUT_SECS", "1"),
        ],
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws("/app-socket"))
        .await
        .unwrap();
    // Silent for longer than every edge timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ws.send(WsMessage::Text("still there?".into()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an echo")
        .expect("open")
        .expect("no error");
    assert_eq!(
        reply.into_text().unwrap().as_str(),
        "upstream echo: still there?"
    );

    // An upload to the main site that stalls is cut by the same timeout.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 50\r\n\r\nab")
        .await
        .unwrap();
    let stalled = time_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(stalled < Duration::from_millis(2500), "{stalled:?}");
}

#[tokio::test]
async fn public_health_tells_only_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_API_KEY", "health-key")]);
    let client = reqwest::Client::new();
    let get = |url: String, auth: Option<&str>| {
        let mut req = client.get(url);
        if let Some(auth) = auth {
            req = req.header("Authorization", format!("Bearer {auth}"));
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(
        get(gw.http("/chat/health"), None).await,
        (200, r#"{"status":"ok"}"#.to_string())
    );
    assert_eq!(
        get(gw.http("/chat/health"), Some("wrong")).await,
        (200, r#"{"status":"ok"}"#.to_string())
    );
    let token = gw.agent_token("alice", "Alice");
    let metrics_base = gw.metrics_url().trim_end_matches("/metrics").to_string();
    for (url, auth) in [
        (gw.http("/chat/health"), Some(token.as_str())),
        (gw.http("/chat/health"), Some("health-key")),
        (format!("{metrics_base}/health"), None),
        (format!("{metrics_base}/chat/health"), None),
    ] {
        let (status, body) = get(url.clone(), auth).await;
        assert_eq!(status, 200, "{url}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "ok", "{url}");
        assert_eq!(body["store"]["kind"], "embedded", "{url}");
        assert_eq!(body["store"]["state"], "up", "{url}");
        assert!(body["version"].is_string() && body["sessions"].is_number());
    }
}

#[tokio::test]
async fn pages_carry_security_headers_and_the_widget_stays_embeddable() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let console = reqwest::get(gw.http("/chat/admin/")).await.unwrap();
    assert_eq!(console.status(), 200);
    let h = console.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self' ws: wss:",
        "frame-ancestors 'none'",
        // Attachments are shown through object URLs (their bytes are fetched with a token).
        "img-src 'self' data: blob:",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");

    let demo = reqwest::get(gw.http("/chat/demo/")).await.unwrap();
    let h = demo.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    assert!(csp.contains("img-src 'self' data: blob:;"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(h.contains_key("x-frame-options") && h.contains_key("referrer-policy"));

    for path in ["/chat/widget/widget.js", "/widget/widgetScript.js"] {
        let widget = reqwest::get(gw.http(path)).await.unwrap();
        let h = widget.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(!h.contains_key("x-frame-options"), "{path}");
        assert!(!h.contains_key("content-security-policy"), "{path}");
        assert!(!h.contains_key("cross-origin-resource-policy"), "{path}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_store_file_and_the_generated_secret_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("fresh/chat-data");
    let port = common::free_port();
    let env = [
        ("CHAT_HTTP_LISTEN", format!("127.0.0.1:{port}")),
        ("CHAT_DATA_DIR", data.display().to_string()),
        ("CHAT_METRICS_LISTEN", "off".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let gw = Gateway::start_with_env(port, env, &data);
    // Something is written, so the WAL exists too.
    let mut visitor = common::Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let ack = visitor
        .request(serde_json::json!({"type":"send","body":"private"}))
        .await;
    assert_eq!(ack["type"], "ack");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&root.path().join("fresh")), 0o700);
    assert_eq!(mode(&data.join("chat.sqlite3")), 0o600);
    assert_eq!(mode(&data.join("admin-jwt.secret")), 0o600);
    for extra in ["chat.sqlite3-wal", "chat.sqlite3-shm"] {
        let path = data.join(extra);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{extra}");
        }
    }
}

#[test]
fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    use std::io::{Read, Write};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls_port = common::free_port();
    let _gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_TLS_CERT", &cert_path.display().to_string()),
            ("CHAT_TLS_KEY", &key_path.display().to_string()),
            ("CHAT_TLS_LISTEN", &format!("127.0.0.1:{tls_port}")),
            ("CHAT_H2_IDLE_TIMEOUT_SECS", "2"),
        ],
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let sock = std::net::TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("HTTP/2 connection still open after {:?}", start.elapsed())
            }
            Err(_) => break,
        }
    }
    let idle = start.elapsed();
    eprintln!("idle HTTP/2 connection closed after {idle:?}");
    assert!(
        idle >= Duration::from_millis(1500) && idle < Duration::from_millis(4000),
        "{idle:?}"
    );
}

#[tokio::test]
async fn a_tls_handshake_that_does_not_finish_is_dropped_at_the_header_deadline() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let site = common::site(dir.path(), "localhost");
    std::fs::write(&site.cert, cert.cert.pem()).unwrap();
    std::fs::write(&site.key, cert.signing_key.serialize_pem()).unwrap();
    let (gw, tls_port) =
        common::tls_gateway(dir.path(), &[&site], &[("CHAT_HEADER_TIMEOUT_SECS", "2")]);
    let addr = ("127.0.0.1", tls_port);

    let start = Instant::now();
    // Connects and sends nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Starts a ClientHello record (200 bytes announced) and stops after 10.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03])
        .await
        .unwrap();
    for (what, s) in [("silent", &mut silent), ("partial hello", &mut partial)] {
        time_until_closed(s, Duration::from_secs(10)).await;
        let closed = start.elapsed();
        eprintln!("{what} TLS connection closed after {closed:?}");
        assert!(
            closed >= Duration::from_millis(1500) && closed < Duration::from_millis(3500),
            "{what}: {closed:?}"
        );
    }
    // Plain HTTP on the TLS port is refused at once.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let refused = time_until_closed(&mut plain, Duration::from_secs(5)).await;
    assert!(refused < Duration::from_secs(1), "{refused:?}");

    // Counted once the connection is dropped, so just after the client saw it close.
    let timeouts = common::metric_reaching(
        &gw,
        "chat_tls_handshake_failures_total",
        &[("reason", "timeout")],
        2.0,
    );
    let refusals = common::metric_reaching(
        &gw,
        "chat_tls_handshake_failures_total",
        &[("reason", "refused")],
        1.0,
    );
    assert_eq!((timeouts.await, refusals.await), (2.0, 1.0));
    // A real client still gets through.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        b"GET /chat/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Reads what the gateway sends until it closes the connection (at most 5 s).
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the gateway kept the connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn idle_connections_are_capped_per_address_and_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_MAX_HTTP_CONNECTIONS_PER_IP", "3"),
            ("CHAT_MAX_HTTP_CONNECTIONS", "5"),
            // The held connections must outlive the test, however slow the machine.
            ("CHAT_HEADER_TIMEOUT_SECS", "120"),
        ],
    );
    let health = |from: &'static str| {
        let gw = &gw;
        async move {
            let mut s = tcp_from(gw, from).await;
            s.write_all(b"GET /chat/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            read_to_close(&mut s).await
        }
    };
    wait_http_connections(&gw, 0).await;
    // Three idle connections (nothing sent: a slow client, or an attacker holding sockets).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tcp_from(&gw, "127.0.0.1").await);
    }
    wait_http_connections(&gw, 3).await;
    // The fourth from the same address is answered 503 with the reason and closed.
    let mut fourth = tcp_from(&gw, "127.0.0.1").await;
    let answer = read_to_close(&mut fourth).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_from_address"), "{answer}");
    assert!(
        answer.contains("CHAT_MAX_HTTP_CONNECTIONS_PER_IP"),
        "{answer}"
    );
    // Another address is unaffected.
    let answer = health("127.0.0.2").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    wait_http_connections(&gw, 3).await;
    // Two more from a third address reach the total of 5; the next one, from anywhere, is
    // refused for the total.
    let _c = tcp_from(&gw, "127.0.0.3").await;
    let _d = tcp_from(&gw, "127.0.0.3").await;
    wait_http_connections(&gw, 5).await;
    let mut over = tcp_from(&gw, "127.0.0.4").await;
    let answer = read_to_close(&mut over).await;
    assert!(answer.contains("too_many_connections"), "{answer}");
    // Closing a connection gives its place back.
    drop(held.pop());
    wait_http_connections(&gw, 4).await;
    let answer = health("127.0.0.1").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Counted by reason.
    let metrics = common::metrics_text(&gw).await;
    for reason in ["too_many_from_address", "too_many_connections"] {
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!(
                "chat_http_connections_refused_total{{reason=\"{reason}\"}} 1"
            ))),
            "{reason}: {metrics}"
        );
    }
}

/// Waits (up to 10 s) until the gateway holds `n` connections on its public listeners.
async fn wait_http_connections(gw: &Gateway, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = format!("chat_http_connections_open {n}");
    loop {
        let metrics = common::metrics_text(gw).await;
        if metrics.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "never {line}: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
