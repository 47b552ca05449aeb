//! deploy/postgres/roles.sql, as an operator runs it (psql, as a superuser): `migrate` works as
//! the owner role, a gateway on the DML-only role chats both ways (store and LISTEN/NOTIFY bus),
//! that role can change no schema and delete nothing, and a table a later migration creates is
//! usable by it through the default privileges.

mod common;

use chat_storage::test_support::TestPostgres;
use common::{Client, Gateway};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

const ROLES_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/postgres/roles.sql");

/// psql next to the server binaries the throwaway cluster uses (scripts/setup installs them).
fn psql() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CHAT_TEST_PG_BIN") {
        candidates.push(PathBuf::from(dir).join("psql"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("psql")));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin/psql"))
        .collect();
    versions.sort_by_key(|p| {
        p.components()
            .nth(4)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates.extend(versions.into_iter().rev());
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .expect("psql not found: install Debian's postgresql (scripts/setup does)")
}

/// Runs psql on `url` with `args`; returns (success, stdout + stderr).
fn run_psql(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(psql())
        .arg(url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn role_url(admin_url: &str, role: &str) -> String {
    // postgres://postgres@127.0.0.1:PORT/postgres -> postgres://ROLE@127.0.0.1:PORT/chat
    let rest = admin_url
        .strip_prefix("postgres://postgres@")
        .expect("the throwaway cluster's URL");
    let host = rest.split('/').next().unwrap();
    format!("postgres://{role}@{host}/chat")
}

fn gateway_cli(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_app_role_chats_and_cannot_change_the_schema() {
    // Roles are global to a cluster: always a throwaway one, never CHAT_TEST_DATABASE_URL's.
    let pg = TestPostgres::start_throwaway();
    let admin = pg.admin_url();
    let (ok, out) = run_psql(&admin, &["-f", ROLES_SQL]);
    assert!(ok, "deploy/postgres/roles.sql failed: {out}");
    let owner = role_url(&admin, "chat_owner");
    let app = role_url(&admin, "chat_app");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();

    // The running role cannot migrate; the owner can.
    let out = gateway_cli(
        &[("CHAT_DATABASE_URL", &app), ("CHAT_DATA_DIR", &data)],
        &["migrate"],
    );
    assert!(!out.status.success(), "chat_app could migrate");
    let out = gateway_cli(
        &[("CHAT_DATABASE_URL", &owner), ("CHAT_DATA_DIR", &data)],
        &["migrate"],
    );
    assert!(
        out.status.success(),
        "migrate as chat_owner: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A gateway on chat_app: start-up schema check, sends, replies, the bus.
    let gw = Gateway::start(dir.path(), &[("CHAT_DATABASE_URL", &app)]);
    assert!(gw.log().contains("DB_OK store=postgres"), "{}", gw.log());
    let token = gw.agent_token("alice", "Alice");
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let ack = visitor
        .request(json!({"type":"send","body":"hello as chat_app"}))
        .await;
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("send refused: {ack}\n{}", gw.log()))
        .to_string();
    agent.wait_for(|e| e["type"] == "message").await;
    let assigned = agent
        .request(json!({"type":"assign","conversation_id":conversation}))
        .await;
    assert_ne!(assigned["type"], "error", "{assigned}");
    let reply = agent
        .request(json!({"type":"send","conversation_id":conversation,"body":"reply as chat_app"}))
        .await;
    assert_eq!(reply["message"]["seq"], 2, "{reply}");
    visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    drop((agent, visitor));
    gw.stop();

    let (ok, out) = run_psql(&app, &["-tA", "-c", "SELECT count(*) FROM messages"]);
    assert!(ok && out.trim() == "2", "{out}");

    // No schema change, no deletion, no other database.
    for sql in [
        "CREATE TABLE intruder (id int)",
        "DROP TABLE messages",
        "ALTER TABLE messages ADD COLUMN x int",
        "DELETE FROM messages",
        "TRUNCATE messages",
        "CREATE TEMP TABLE scratch (id int)",
    ] {
        let (ok, out) = run_psql(&app, &["-c", sql]);
        assert!(!ok, "chat_app could run `{sql}`");
        assert!(
            out.contains("permission denied") || out.contains("must be owner"),
            "`{sql}`: {out}"
        );
    }
    // It deletes from the three tables it must (delivered webhook events, deleted canned
    // responses, uploads never sent; granted by migration 12) and from no other.
    for table in ["webhook_outbox", "canned_responses", "attachments"] {
        let (ok, out) = run_psql(&app, &["-c", &format!("DELETE FROM {table}")]);
        assert!(ok, "chat_app cannot delete from {table}: {out}");
    }
    for table in ["conversations", "visitors", "agents", "conversation_reads"] {
        let (ok, out) = run_psql(&app, &["-c", &format!("DELETE FROM {table}")]);
        assert!(!ok && out.contains("permission denied"), "{table}: {out}");
    }
    let postgres_db = app.replace("/chat", "/postgres");
    let (ok, out) = run_psql(&postgres_db, &["-c", "SELECT 1"]);
    assert!(!ok, "chat_app reached the postgres database: {out}");

    // A later migration (run as chat_owner) adds a table with a sequence: usable at once.
    let (ok, out) = run_psql(
        &owner,
        &[
            "-c",
            "CREATE TABLE chat_later (id bigserial PRIMARY KEY, note text)",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = run_psql(
        &app,
        &[
            "-tA",
            "-c",
            "INSERT INTO chat_later (note) VALUES ('x') RETURNING id",
        ],
    );
    assert!(ok && out.trim() == "1", "default privileges: {out}");
}
