//! Liveness and readiness: `/chat/health/live` answers 200 while the process serves requests;
//! `/chat/health/ready` (and `/chat/health`) answers 503 once the gateway is shutting down.
//! (The store-down case is in postgres.rs, which owns a Postgres it can stop.)

mod common;

use common::Gateway;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 request on `conn`: the status and the body.
async fn get(conn: &mut TcpStream, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed: {}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = common::header_value(head, "content-length")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    let status = head[9..12].parse().unwrap();
                    return (status, body.to_string());
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no answer within 10 s")
}

#[tokio::test]
async fn readiness_goes_503_on_sigterm_while_liveness_stays_200() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let public_live = reqwest::get(gw.http("/chat/health/live")).await.unwrap();
    assert_eq!(public_live.status(), 200);
    assert_eq!(public_live.text().await.unwrap(), r#"{"status":"ok"}"#);
    let public_ready = reqwest::get(gw.http("/chat/health/ready")).await.unwrap();
    assert_eq!(public_ready.status(), 200);

    // Connections kept alive to the metrics listener, as a load balancer's health checker
    // keeps them: they are still served while the process drains (for about 1 s, Pingora's
    // grace period). Several, because each answered after Pingora saw the signal is closed.
    let metrics = gw.env["CHAT_METRICS_LISTEN"].clone();
    let mut ready = Vec::new();
    for _ in 0..8 {
        let mut conn = TcpStream::connect(&metrics).await.unwrap();
        let (status, body) = get(&mut conn, "/health/ready").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""shutting_down":false"#), "{body}");
        ready.push(conn);
    }
    let mut live = TcpStream::connect(&metrics).await.unwrap();
    assert_eq!(get(&mut live, "/health/live").await.0, 200);

    // SAFETY: signalling a child process we own.
    assert_eq!(unsafe { libc::kill(gw.pid() as i32, libc::SIGTERM) }, 0);
    let mut answers = Vec::new();
    for mut conn in ready {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, body) = get(&mut conn, "/health/ready").await;
        answers.push((status, body));
        if status == 503 {
            break;
        }
    }
    let (status, body) = answers.last().unwrap();
    assert_eq!(*status, 503, "readiness never went 503: {answers:?}");
    assert!(body.contains(r#""shutting_down":true"#), "{body}");
    assert!(
        body.contains(r#""state":"up""#),
        "the store is fine: {body}"
    );
    let (status, body) = get(&mut live, "/health/live").await;
    assert_eq!(status, 200, "{body}");
}
