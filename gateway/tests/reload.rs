//! Reload without restart: SIGHUP re-reads `CHAT_CONFIG_FILE` and applies the origin lists and
//! the rollout share to the running gateway; a broken file changes nothing.

mod common;

use common::{connect_raw, metric, Client, Gateway};
use std::path::Path;
use std::time::{Duration, Instant};

fn write_config(path: &Path, rollout: &str, origins: &str) {
    std::fs::write(
        path,
        format!(
            "# written by the test\nCHAT_WS_ROLLOUT_PERCENT={rollout}\nCHAT_ALLOWED_ORIGINS={origins}\n"
        ),
    )
    .unwrap();
}

fn hangup(gw: &Gateway) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(gw.pid() as i32, libc::SIGHUP) }, 0);
}

/// Waits until `chat_config_reloads_total{part="config",result}` reaches `count`.
async fn reloads(gw: &Gateway, result: &str, count: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let labels = [("part", "config"), ("result", result)];
    while metric(gw, "chat_config_reloads_total", &labels).await < count {
        assert!(
            Instant::now() < deadline,
            "no {result} reload counted:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn preferred_transport(gw: &Gateway, origin: &str) -> String {
    let visitor = Client::connect(&gw.ws("/ws-visitor/?site=default"), &[("Origin", origin)]).await;
    visitor.welcome["preferred_transport"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The upgrade's HTTP status, or 101.
async fn handshake_status(gw: &Gateway, origin: &str) -> u16 {
    match connect_raw(&gw.ws("/ws-visitor/?site=default"), &[("Origin", origin)]).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("handshake failed without a status: {other}"),
    }
}

#[tokio::test]
async fn sighup_applies_the_rollout_and_origins_of_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.env");
    write_config(&file, "0", "https://old.example");
    let file_name = file.display().to_string();
    // The process environment says 100 %: the file wins.
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_CONFIG_FILE", file_name.as_str()),
            ("CHAT_WS_ROLLOUT_PERCENT", "100"),
        ],
    );
    assert_eq!(handshake_status(&gw, "https://new.example").await, 403);
    for _ in 0..5 {
        assert_eq!(
            preferred_transport(&gw, "https://old.example").await,
            "polling"
        );
    }
    // A session opened before the reload stays open across it.
    let mut before = Client::connect(
        &gw.ws("/ws-visitor/?site=default"),
        &[("Origin", "https://old.example")],
    )
    .await;

    write_config(&file, "100", "https://new.example");
    hangup(&gw);
    reloads(&gw, "ok", 1.0).await;
    assert_eq!(handshake_status(&gw, "https://old.example").await, 403);
    for _ in 0..5 {
        assert_eq!(
            preferred_transport(&gw, "https://new.example").await,
            "websocket"
        );
    }
    let answer = before
        .request(serde_json::json!({"type": "send", "client_msg_id": "m-1", "body": "still here"}))
        .await;
    assert_eq!(
        answer["type"], "ack",
        "the old session still works: {answer}"
    );

    // A value that does not parse: refused, the old settings kept, the reason logged.
    write_config(&file, "150", "https://other.example");
    hangup(&gw);
    reloads(&gw, "refused", 1.0).await;
    assert_eq!(handshake_status(&gw, "https://other.example").await, 403);
    assert_eq!(
        preferred_transport(&gw, "https://new.example").await,
        "websocket"
    );
    let log = gw.log();
    assert!(
        log.contains("CHAT_WS_ROLLOUT_PERCENT=\"150\""),
        "the refusal names the setting: {log}"
    );
    assert!(
        log.contains("applied ADMIN_ALLOWED_ORIGINS")
            || log.contains("applied CHAT_ALLOWED_ORIGINS"),
        "{log}"
    );
}

#[tokio::test]
async fn a_setting_that_needs_a_restart_is_named_without_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.env");
    std::fs::write(&file, "CHAT_API_KEY=first-key-value\n").unwrap();
    let file_name = file.display().to_string();
    let gw = Gateway::start(dir.path(), &[("CHAT_CONFIG_FILE", file_name.as_str())]);
    std::fs::write(&file, "CHAT_API_KEY=second-key-value\n").unwrap();
    hangup(&gw);
    reloads(&gw, "ok", 1.0).await;
    let log = gw.log();
    assert!(log.contains("waiting for a restart: CHAT_API_KEY"), "{log}");
    assert!(!log.contains("key-value"), "a value reached the log: {log}");
}
