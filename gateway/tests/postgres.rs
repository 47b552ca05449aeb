//! The gateway on Postgres: migrations, refusal to start unmigrated, chat that survives a
//! restart, and `/chat/health` following the database down and back up.

mod common;

use chat_storage::test_support::TestPostgres;
use common::{Client, Gateway};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn run(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn unmigrated_database_is_refused_then_migrated_chat_survives_restart() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let env = [
        ("CHAT_DATABASE_URL", url.as_str()),
        ("CHAT_DATA_DIR", data.as_str()),
    ];

    // Start-up on an unmigrated database fails and names the fix.
    let out = run(
        &[
            env[0],
            env[1],
            (
                "CHAT_HTTP_LISTEN",
                &format!("127.0.0.1:{}", common::free_port()),
            ),
        ],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chat-gateway migrate"), "{stderr}");

    let out = run(&env, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("MIGRATE_OK store=postgres"));
    // Idempotent.
    assert!(run(&env, &["migrate"]).status.success());

    let gw = Gateway::start(dir.path(), &[("CHAT_DATABASE_URL", &url)]);
    assert!(gw.log().contains("DB_OK store=postgres"), "{}", gw.log());
    let token = gw.agent_token("alice", "Alice");
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let vtoken = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = visitor
        .request(json!({"type":"send","body":"on postgres"}))
        .await;
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    agent.wait_for(|e| e["type"] == "message").await;
    let reply = agent
        .request(json!({"type":"send","conversation_id":conversation,"body":"reply on postgres"}))
        .await;
    assert_eq!(reply["message"]["seq"], 2);
    visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    drop((agent, visitor));
    gw.stop();

    let gw = Gateway::start(dir.path(), &[("CHAT_DATABASE_URL", &url)]);
    let mut visitor = Client::connect(&gw.ws(&format!("/ws-visitor/?token={vtoken}")), &[]).await;
    assert_eq!(visitor.welcome["conversation"]["last_seq"], 2);
    let resumed = visitor
        .request(json!({"type":"resume","cursors":{conversation.clone(): 0}}))
        .await;
    assert_eq!(resumed["replayed"], 2);
    let first = visitor.wait_for(|e| e["type"] == "message").await;
    assert_eq!(first["message"]["body"], "on postgres");
}

/// The detailed health report, on the metrics listener (the public `/chat/health` tells only
/// the status).
async fn health(gw: &Gateway) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .get(gw.metrics_url().replace("/metrics", "/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn wait_for_health(gw: &Gateway, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = health(gw).await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {status} ({body}), wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn health_reports_503_while_postgres_is_down_and_200_when_it_is_back() {
    // A cluster of our own, even when CHAT_TEST_DATABASE_URL is set: this test stops it.
    let pg = TestPostgres::start_throwaway();
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    assert!(run(
        &[("CHAT_DATABASE_URL", &url), ("CHAT_DATA_DIR", &data)],
        &["migrate"]
    )
    .status
    .success());
    let gw = Gateway::start(dir.path(), &[("CHAT_DATABASE_URL", &url)]);

    let body = wait_for_health(&gw, 200).await;
    assert_eq!(body["store"]["kind"], "postgres");

    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    pg.stop_server();
    let body = wait_for_health(&gw, 503).await;
    assert_eq!(body["store"]["state"], "down", "{body}");
    // The public route says only that much.
    let public = reqwest::get(gw.http("/chat/health")).await.unwrap();
    assert_eq!(public.status(), 503);
    assert_eq!(public.text().await.unwrap(), r#"{"status":"unavailable"}"#);
    // Readiness says the same; liveness stays 200 (the process serves): no restart needed.
    let ready = reqwest::get(gw.http("/chat/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let live = reqwest::get(gw.http("/chat/health/live")).await.unwrap();
    assert_eq!(live.status(), 200);
    let live = reqwest::get(gw.metrics_url().replace("/metrics", "/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    // A send while the store is down is refused with `unavailable`, never acknowledged.
    let e = visitor
        .request(json!({"type":"send","client_msg_id":"down-1","body":"lost?"}))
        .await;
    assert_eq!(e["code"], "unavailable", "{e}");

    pg.start_server();
    let body = wait_for_health(&gw, 200).await;
    assert_eq!(body["store"]["state"], "up");
    // The refused message can be retried with the same id and is stored once.
    let ack = visitor
        .request(json!({"type":"send","client_msg_id":"down-1","body":"lost?"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["duplicate"], false);
}
