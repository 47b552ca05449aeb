//! The edge: reverse proxy to the main site with forwarded headers (HTTP and WebSocket), a clear
//! 502 when it is down, and TLS with HTTP/2 and `wss://`.

mod common;

use common::{header_value, start_upstream, Client, Gateway};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn everything_else_is_proxied_with_forwarded_headers() {
    let (upstream_port, heads) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[("CHAT_UPSTREAM", &format!("127.0.0.1:{upstream_port}"))],
    );

    let resp = reqwest::Client::new()
        .get(gw.http("/pricing?plan=pro"))
        .header("Host", "www.shop.example")
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from the main site");
    let head = heads.lock().unwrap().last().cloned().unwrap();
    assert!(head.starts_with("GET /pricing?plan=pro HTTP/1.1"), "{head}");
    assert_eq!(
        header_value(&head, "host"),
        Some("www.shop.example"),
        "{head}"
    );
    // The client's own X-Forwarded-For is not believed (no CHAT_TRUSTED_PROXIES): the peer only.
    assert_eq!(
        header_value(&head, "x-forwarded-for"),
        Some("127.0.0.1"),
        "{head}"
    );
    assert_eq!(
        header_value(&head, "x-forwarded-proto"),
        Some("http"),
        "{head}"
    );

    // Chat paths never reach the upstream.
    let before = heads.lock().unwrap().len();
    assert_eq!(
        reqwest::get(gw.http("/chat/health"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(heads.lock().unwrap().len(), before);

    // The main site's own WebSockets are proxied too.
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws("/app-socket"))
        .await
        .unwrap_or_else(|e| panic!("{e}; upstream saw {:?}", heads.lock().unwrap()));
    ws.send(WsMessage::Text("ping".into())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), "upstream echo: ping");
    let ws_head = heads
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|h| h.starts_with("GET /app-socket"))
        .cloned()
        .unwrap();
    assert_eq!(
        header_value(&ws_head, "x-forwarded-proto"),
        Some("http"),
        "{ws_head}"
    );
}

#[tokio::test]
async fn a_missing_or_down_upstream_gets_a_clear_502() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let resp = reqwest::get(gw.http("/")).await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("CHAT_UPSTREAM is not set"));
    drop(gw);

    let (_refusing, dead) = common::refusing_port();
    let gw = Gateway::start(
        dir.path(),
        &[("CHAT_UPSTREAM", &format!("127.0.0.1:{dead}"))],
    );
    let resp = reqwest::get(gw.http("/about")).await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains(&format!("127.0.0.1:{dead} is unreachable")));
    // Chat keeps working while the main site is down.
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    assert_eq!(
        visitor.request(json!({"type":"send","body":"hi"})).await["type"],
        "ack"
    );
}

#[tokio::test]
async fn tls_serves_http2_for_pages_and_wss_for_chat() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (upstream_port, heads) = start_upstream().await;
    let tls_port = common::free_port();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_TLS_CERT", &cert_path.display().to_string()),
            ("CHAT_TLS_KEY", &key_path.display().to_string()),
            ("CHAT_TLS_LISTEN", &format!("127.0.0.1:{tls_port}")),
            ("CHAT_UPSTREAM", &format!("127.0.0.1:{upstream_port}")),
        ],
    );
    assert!(
        gw.log().contains(&format!("tls_port={tls_port}")),
        "{}",
        gw.log()
    );

    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", ([127, 0, 0, 1], tls_port).into())
        .build()
        .unwrap();
    let health = client
        .get(format!("https://localhost:{tls_port}/chat/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    // Two cookie fields, as HTTP/2 clients send them.
    let page = client
        .get(format!("https://localhost:{tls_port}/"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(page.version(), reqwest::Version::HTTP_2);
    assert_eq!(page.text().await.unwrap(), "hello from the main site");
    let head = heads.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        header_value(&head, "x-forwarded-proto"),
        Some("https"),
        "{head}"
    );
    // The main site gets HTTP/1.1: the `:authority` as `Host`, the cookies in one header.
    let host = format!("localhost:{tls_port}");
    assert_eq!(header_value(&head, "host"), Some(host.as_str()), "{head}");
    let cookies: Vec<&str> = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("cookie:"))
        .collect();
    assert_eq!(cookies.len(), 1, "{head}");
    assert_eq!(header_value(&head, "cookie"), Some("a=1; b=2"), "{head}");

    // wss:// chat, HTTP/1.1 upgrade over TLS.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_tungstenite::Connector::Rustls(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
        .await
        .unwrap();
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
        format!("wss://localhost:{tls_port}/ws-visitor/"),
        tcp,
        None,
        Some(connector),
    )
    .await
    .unwrap();
    let mut visitor = Client::from_ws(ws).await;
    let ack = visitor
        .request(json!({"type":"send","body":"over wss"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
}
