//! The setups many end-to-end tests repeat: a migrated Postgres database, two gateway processes
//! on one, an agent's session, a visitor's first message, a start-up the gateway refuses.

use super::{migrate, two_gateways, Client, Gateway};
use chat_storage::test_support::TestPostgres;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// A fresh database on the test Postgres server, migrated with `chat-gateway migrate` (`data`:
/// the data directory). The database lives as long as the returned server value.
pub fn migrated_postgres(data: &Path) -> (TestPostgres, String) {
    let server = TestPostgres::start();
    let url = server.fresh_database();
    migrate(&url, data);
    (server, url)
}

/// Two gateway processes sharing a fresh Postgres database and the data directory `data`: the
/// cluster of the multi-process tests. Bind the server first (`let (_pg, a, b) = …`), so that
/// it outlives the gateways (variables are dropped last to first).
pub fn two_gateways_on_postgres(data: &Path) -> (TestPostgres, Gateway, Gateway) {
    let server = TestPostgres::start();
    let url = server.fresh_database();
    let (a, b) = two_gateways(&url, data);
    (server, a, b)
}

impl Gateway {
    /// An agent's raw WebSocket session (`/ws-admin/`), with a token for `id` and `name` naming
    /// no site.
    pub async fn agent(&self, id: &str, name: &str) -> Client {
        self.agent_for(id, name, None).await
    }

    /// An agent's raw WebSocket session with a token for `sites` (`None`: naming none).
    pub async fn agent_for(&self, id: &str, name: &str, sites: Option<&str>) -> Client {
        let token = self.agent_token_for(id, name, sites);
        Client::connect(&self.ws(&format!("/ws-admin/?token={token}")), &[]).await
    }

    /// Runs the binary with only a listen address, `data_dir` and `extra` (no metrics listener,
    /// no agent secret), for a configuration it must refuse: waits up to 30 s for it to exit and
    /// returns its exit status and output.
    pub fn refused_start(data_dir: &Path, extra: &[(&str, &str)]) -> (ExitStatus, String) {
        let port = super::free_port();
        let mut env = HashMap::new();
        env.insert("CHAT_HTTP_LISTEN".to_owned(), format!("127.0.0.1:{port}"));
        env.insert("CHAT_DATA_DIR".to_owned(), data_dir.display().to_string());
        env.insert("CHAT_METRICS_LISTEN".to_owned(), "off".to_owned());
        for (name, value) in extra {
            env.insert(name.to_string(), value.to_string());
        }
        let mut gw = Gateway::spawn(port, env, data_dir, &[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = gw.exit_status() {
                break status;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", gw.log());
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads may still be draining the last lines.
        std::thread::sleep(Duration::from_millis(200));
        (status, gw.log())
    }
}

impl Client {
    /// `resume` with no cursors (nothing seen yet): the session goes live. Returns the answer.
    pub async fn resume_from_start(&mut self) -> Value {
        self.request(json!({"type":"resume","cursors":{}})).await
    }

    /// Waits for a `presence` event counting `n` agents online (a visitor's view); returns it.
    pub async fn wait_for_agents_online(&mut self, n: u64) -> Value {
        self.wait_for(|e| e["type"] == "presence" && e["agents_online"] == n)
            .await
    }
}

/// The conversation of a `send`'s acknowledgement; panics with the answer when it is not one.
pub fn conversation_of(ack: &Value) -> String {
    ack["message"]["conversation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no conversation in {ack}"))
        .to_string()
}

/// A visitor connected at `path` (`/ws-visitor/…`) whose first message, `body`, was
/// acknowledged: the visitor and the conversation's id.
pub async fn visitor_writes(gw: &Gateway, path: &str, body: &str) -> (Client, String) {
    let mut visitor = Client::connect(&gw.ws(path), &[]).await;
    let ack = visitor
        .request(json!({"type": "send", "client_msg_id": "v1", "body": body}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let conversation = conversation_of(&ack);
    (visitor, conversation)
}
