//! The main site's own WebSockets through the gateway: each proxied upgrade carries frames both
//! ways. Regression test for cloudflare/pingora#946 (patched in third_party/pingora-proxy): a
//! tunnel was torn down right after its 101 when a fast upstream's 101 was read before the
//! upgrade request's empty body end, which happened on a few percent of connections under load.

mod common;

use common::{connect_raw, start_upstream, Gateway};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn echo_once(gw: &Gateway, n: usize) -> Result<(), String> {
    let mut ws = connect_raw(&gw.ws(&format!("/live/feed?n={n}")), &[])
        .await
        .map_err(|e| format!("connection {n}: handshake: {e}"))?;
    ws.send(WsMessage::Text(format!("frame {n}").into()))
        .await
        .map_err(|e| format!("connection {n}: send: {e}"))?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                if text.as_str() == format!("upstream echo: frame {n}") {
                    break;
                }
                return Err(format!("connection {n}: unexpected {text}"));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("connection {n}: torn down after 101: {e}")),
            Ok(None) => return Err(format!("connection {n}: closed after 101")),
            Err(_) => return Err(format!("connection {n}: no echo within 10 s")),
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_proxied_websocket_of_the_main_site_carries_frames_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _) = start_upstream().await;
    let gw = Gateway::start(
        dir.path(),
        &[("CHAT_UPSTREAM", &format!("127.0.0.1:{upstream}"))],
    );
    // A plain request first, so that upgrades also reuse pooled upstream connections.
    let page = reqwest::get(gw.http("/")).await.unwrap();
    assert_eq!(page.status(), 200);
    // 8 at a time, 400 in all: the race needs a busy machine, so the test makes one.
    let mut failures = Vec::new();
    for round in 0..50 {
        let batch = (0..8).map(|i| echo_once(&gw, round * 8 + i));
        for result in futures_util::future::join_all(batch).await {
            if let Err(e) = result {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 400 failed: {failures:?}",
        failures.len()
    );
}
