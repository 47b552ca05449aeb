//! `chat-gateway import` with the real binary: a sample export imported twice gives the same
//! rows (embedded store and Postgres), the history is then read as a carried-over visitor would
//! (raw WebSocket: `welcome`, `history`) and as an agent (HTTP API, `list_conversations`), live
//! chat continues the numbering, bad lines stop the import or are skipped, and the Prisma export
//! template of docs/import.md runs against Prisma-shaped tables.

mod common;

use chat_core::auth::VisitorTokens;
use chat_gateway::import::line::{conversation_id, visitor_id};
use chat_storage::test_support::TestPostgres;
use common::{call, Client, Gateway, SECRET};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

const VISITOR_SECRET: &str = "import-test-visitor-token-secret";
const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/import-sample.jsonl"
);

fn import(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .arg("import")
        .args(args)
        .envs(env.iter().copied())
        .env("CHAT_ADMIN_JWT_SECRET", SECRET)
        .output()
        .expect("run chat-gateway import")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn import_ok(env: &[(&str, &str)], file: &str) -> String {
    let out = import(env, &[file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("import: "),
        "progress line: {}",
        stderr(&out)
    );
    stdout(&out).trim().to_string()
}

/// Every row of the embedded store's three tables, as text, in a stable order.
fn embedded_rows(data_dir: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(data_dir.join("chat.sqlite3")).unwrap();
    let mut rows = Vec::new();
    for sql in [
        "SELECT id || '|' || site_id || '|' || created_at FROM visitors ORDER BY id",
        "SELECT id || '|' || visitor_id || '|' || status || '|' || last_seq || '|' || created_at \
         || '|' || updated_at FROM conversations ORDER BY id",
        "SELECT conversation_id || '|' || seq || '|' || client_msg_id || '|' || sender_role || '|' \
         || sender_id || '|' || coalesce(sender_name, '') || '|' || body || '|' || created_at \
         FROM messages ORDER BY conversation_id, seq",
    ] {
        let mut stmt = conn.prepare(sql).unwrap();
        let found = stmt.query_map([], |row| row.get::<_, String>(0)).unwrap();
        rows.extend(found.map(Result::unwrap));
    }
    rows
}

async fn api_messages(gw: &Gateway, jwt: &str, conversation: &str) -> Vec<Value> {
    let (status, _, page) = call(
        &reqwest::Client::new(),
        reqwest::Method::GET,
        &gw.http(&format!("/chat/api/conversations/{conversation}/messages")),
        None,
        &[("Authorization", &format!("Bearer {jwt}"))],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["messages"].as_array().unwrap().clone()
}

fn bodies(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect()
}

fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn sample_imported_twice_gives_the_same_rows_and_is_read_by_visitor_and_agent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let env = [
        ("CHAT_DATA_DIR", data.as_str()),
        ("CHAT_VISITOR_TOKEN_SECRET", VISITOR_SECRET),
    ];
    assert_eq!(
        import_ok(&env, SAMPLE),
        "IMPORT_OK lines=6 messages_new=5 messages_existing=0 conversations=2 \
         conversations_new=2 skipped=0"
    );
    let rows = embedded_rows(dir.path());
    assert_eq!(rows.len(), 2 + 2 + 5, "{rows:#?}");
    assert_eq!(
        import_ok(&env, SAMPLE),
        "IMPORT_OK lines=6 messages_new=0 messages_existing=5 conversations=2 \
         conversations_new=0 skipped=0"
    );
    assert_eq!(
        embedded_rows(dir.path()),
        rows,
        "a second run changes no row"
    );

    let conv1 = conversation_id("default", "conv-1").to_string();
    let conv2 = conversation_id("default", "conv-2").to_string();
    let gw = Gateway::start(dir.path(), &[("CHAT_VISITOR_TOKEN_SECRET", VISITOR_SECRET)]);

    // An agent reads both conversations over HTTP: numbered in time order, times kept.
    let jwt = gw.agent_token("alice", "Alice");
    let messages = api_messages(&gw, &jwt, &conv1).await;
    assert_eq!(seqs(&messages), [1, 2, 3]);
    assert_eq!(
        bodies(&messages),
        [
            "Hello, my order #42 is late",
            "Sorry about that <b>Ann</b>, let me check.\nOne moment.",
            "Thanks \"Bob\" — merci ✓",
        ]
    );
    let times: Vec<chrono::DateTime<chrono::Utc>> = messages
        .iter()
        .map(|m| m["created_at"].as_str().unwrap().parse().unwrap())
        .collect();
    let expected: Vec<chrono::DateTime<chrono::Utc>> = [
        "2024-05-01T10:00:00.123Z",
        "2024-05-01T10:01:30Z",
        "2024-05-01T10:02:00Z",
    ]
    .iter()
    .map(|t| t.parse().unwrap())
    .collect();
    assert_eq!(times, expected);
    let visitor1 = visitor_id("default", "user-1").to_string();
    assert_eq!(
        messages[0]["sender"],
        json!({"role":"visitor","id":visitor1,"name":null})
    );
    assert_eq!(
        messages[1]["sender"],
        json!({"role":"agent","id":"7","name":"Bob"})
    );
    let closed = api_messages(&gw, &jwt, &conv2).await;
    assert_eq!(
        bodies(&closed),
        ["Do you ship to Norway?", "Yes, in 3–5 days."]
    );
    assert_eq!(closed[1]["sender"]["id"], "imported");

    // The agent console's list shows the closed one.
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={jwt}")), &[]).await;
    let list = agent
        .request(json!({"type":"list_conversations","status":"closed"}))
        .await;
    let ids: Vec<&str> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [conv2.as_str()], "{list}");

    // A visitor carried over (holding a token for the mapped id) finds their open conversation
    // in `welcome` and reads it with `history`, as the widget does.
    let token = VisitorTokens::new(VISITOR_SECRET.as_bytes())
        .mint(visitor_id("default", "user-1"), "default");
    let mut visitor = Client::connect(
        &gw.ws(&format!("/ws-visitor/?site=default&token={token}")),
        &[],
    )
    .await;
    assert_eq!(visitor.welcome["visitor_id"], visitor1.as_str());
    assert_eq!(
        visitor.welcome["conversation"]["id"],
        conv1.as_str(),
        "{}",
        visitor.welcome
    );
    assert_eq!(visitor.welcome["conversation"]["last_seq"], 3);
    let history = visitor
        .request(json!({"type":"history","conversation_id":conv1}))
        .await;
    let seen = history["messages"].as_array().unwrap();
    assert_eq!(seqs(seen), [1, 2, 3], "{history}");
    assert_eq!(bodies(seen), bodies(&messages));
    // Another visitor's imported conversation stays closed to them.
    let other = visitor
        .request(json!({"type":"history","conversation_id":conv2}))
        .await;
    assert_eq!(other["type"], "error", "{other}");

    // Live chat continues the numbering, and importing again (gateway running) adds nothing.
    let sent = visitor
        .request(json!({"type":"send","client_msg_id":"live-1","body":"Any news?"}))
        .await;
    assert_eq!(sent["message"]["seq"], 4, "{sent}");
    assert_eq!(sent["message"]["conversation_id"], conv1.as_str());
    // This time from standard input, as `… | chat-gateway import -`.
    let out = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .args(["import", "-"])
        .envs(env.iter().copied())
        .env("CHAT_ADMIN_JWT_SECRET", SECRET)
        .stdin(std::fs::File::open(SAMPLE).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("messages_new=0 messages_existing=5"),
        "{}",
        stdout(&out)
    );
    assert_eq!(seqs(&api_messages(&gw, &jwt, &conv1).await), [1, 2, 3, 4]);
}

#[tokio::test]
async fn bad_lines_stop_the_import_or_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let env = [("CHAT_DATA_DIR", data.as_str())];
    let line = |id: &str, at: &str| {
        json!({"conversation_id":"c","visitor_id":"v","sender":"visitor","message_id":id,
               "body":format!("message {id}"),"created_at":at})
        .to_string()
    };
    let file = dir.path().join("export.jsonl");
    let long = format!(
        "{{\"conversation_id\":\"c\",\"body\":\"{}\"}}",
        "x".repeat(300 * 1024)
    );
    std::fs::write(
        &file,
        [
            line("m1", "2024-01-01T00:00:00Z"),
            "{\"conversation_id\": 12".to_string(),
            line("m2", "2024-01-01T00:01:00Z"),
            line("m0", "2023-12-31T23:00:00Z"),
            long,
            line("m3", "2024-01-01T00:02:00Z"),
        ]
        .join("\n"),
    )
    .unwrap();
    let path = file.display().to_string();

    let out = import(&env, &[&path]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("import stopped at line 2: not a valid line"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("IMPORT_OK"));
    let messages = |dir: &Path| {
        embedded_rows(dir)
            .into_iter()
            .filter(|r| r.contains("|import:"))
            .count()
    };
    assert_eq!(messages(dir.path()), 1, "only the line before the bad one");

    let out = import(&env, &["--skip-bad", "--batch", "2", &path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("import: line 2 skipped: not a valid line"),
        "{err}"
    );
    assert!(err.contains("import: line 4 skipped: created_at"), "{err}");
    assert!(err.contains("sort the export by created_at"), "{err}");
    assert!(
        err.contains("import: line 5 skipped: longer than 262144 bytes"),
        "{err}"
    );
    assert_eq!(
        stdout(&out).trim(),
        "IMPORT_OK lines=6 messages_new=2 messages_existing=1 conversations=1 \
         conversations_new=0 skipped=3"
    );
    assert_eq!(messages(dir.path()), 3);
}

/// The export SQL of docs/import.md, as written there.
fn documented_export_sql() -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/import.md")).unwrap();
    let start = doc
        .find("```sql\n")
        .expect("an sql block in docs/import.md")
        + "```sql\n".len();
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_string()
}

fn psql(url: &str, args: &[&str]) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url])
        .args(args)
        .output()
        .expect("psql (Debian's postgresql-client, installed with postgresql by scripts/setup)");
    assert!(out.status.success(), "psql: {}", stderr(&out));
    stdout(&out)
}

/// Prisma-shaped tables of the old server, as `prisma migrate` creates them.
const OLD_SCHEMA: &str = r#"
CREATE TABLE "Conversation" (
    "id" TEXT PRIMARY KEY, "userId" TEXT, "status" TEXT NOT NULL DEFAULT 'OPEN',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE "Message" (
    "id" TEXT PRIMARY KEY, "conversationId" TEXT NOT NULL REFERENCES "Conversation"("id"),
    "sender" TEXT NOT NULL, "content" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP);
INSERT INTO "Conversation" VALUES
    ('clopen1', 'user_42', 'OPEN', '2024-05-01 10:00:00'),
    ('clanon2', NULL, 'CLOSED', '2024-05-02 09:00:00');
-- Ids not in time order: the export orders by time.
INSERT INTO "Message" VALUES
    ('m-z', 'clopen1', 'user', 'First, with a "quote", a \backslash and
a newline', '2024-05-01 10:00:00.123'),
    ('m-a', 'clopen1', 'admin', 'Second <b>bold</b>', '2024-05-01 10:05:00'),
    ('m-b', 'clanon2', 'user', 'Anonymous question ✓', '2024-05-02 09:00:00'),
    ('m-c', 'clanon2', 'user', '   ', '2024-05-02 09:01:00');
"#;

#[tokio::test]
async fn prisma_export_template_imports_twice_into_postgres() {
    let pg = TestPostgres::start();
    let old = pg.fresh_database();
    let new = pg.fresh_database();
    psql(&old, &["-c", OLD_SCHEMA]);
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("chat-export.sql");
    std::fs::write(&sql, documented_export_sql()).unwrap();
    // Whatever the session's time zone, the export prints UTC.
    let separator = if old.contains('?') { '&' } else { '?' };
    let export = psql(
        &format!("{old}{separator}options=-c%20TimeZone%3DAmerica%2FNew_York"),
        &["-f", &sql.display().to_string()],
    );
    assert_eq!(export.lines().count(), 3, "{export}");
    let file = dir.path().join("chat-export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let path = file.display().to_string();

    let data = dir.path().display().to_string();
    let env = [
        ("CHAT_DATABASE_URL", new.as_str()),
        ("CHAT_DATA_DIR", data.as_str()),
    ];
    let dump = || {
        psql(
            &new,
            &[
                "-c",
                "SELECT v.id, v.site_id, v.created_at FROM visitors v ORDER BY 1",
                "-c",
                "SELECT id, visitor_id, status, last_seq, created_at, updated_at \
                 FROM conversations ORDER BY 1",
                "-c",
                "SELECT * FROM messages ORDER BY conversation_id, seq",
            ],
        )
    };
    let first = import_ok(&env, &path);
    assert!(first.starts_with("IMPORT_OK lines=3 messages_new=3 messages_existing=0 conversations=2 conversations_new=2"), "{first}");
    let rows = dump();
    let second = import_ok(&env, &path);
    assert!(
        second.contains("messages_new=0 messages_existing=3"),
        "{second}"
    );
    assert_eq!(dump(), rows);

    let gw = Gateway::start(dir.path(), &[("CHAT_DATABASE_URL", &new)]);
    let jwt = gw.agent_token("alice", "Alice");
    let open = api_messages(
        &gw,
        &jwt,
        &conversation_id("default", "clopen1").to_string(),
    )
    .await;
    assert_eq!(seqs(&open), [1, 2]);
    assert_eq!(
        bodies(&open),
        [
            "First, with a \"quote\", a \\backslash and\na newline",
            "Second <b>bold</b>"
        ]
    );
    let first_at: chrono::DateTime<chrono::Utc> =
        open[0]["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        first_at,
        "2024-05-01T10:00:00.123Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    );
    assert_eq!(
        open[1]["sender"],
        json!({"role":"agent","id":"imported","name":"Support"})
    );
    let anonymous = api_messages(
        &gw,
        &jwt,
        &conversation_id("default", "clanon2").to_string(),
    )
    .await;
    assert_eq!(bodies(&anonymous), ["Anonymous question ✓"]);
    assert_eq!(
        anonymous[0]["sender"]["id"],
        visitor_id("default", "anonymous-clanon2").to_string()
    );
    let statuses = psql(
        &new,
        &["-c", "SELECT status FROM conversations ORDER BY created_at"],
    );
    assert_eq!(statuses.trim(), "open\nclosed");
}
