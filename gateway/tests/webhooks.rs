//! Webhooks end to end (docs/webhooks.md): the real gateway binary POSTs its events to a real
//! HTTP server started here, signed; a receiver answering 500 gets the event again until it
//! answers 2xx; and an event still in the outbox when its gateway is SIGKILLed is delivered by
//! the next gateway process. On Postgres, and on the embedded store.

mod common;

use chat_storage::test_support::TestPostgres;
use common::setup::{self, migrated_postgres};
use common::{free_port, metric, metric_reaching, Client, Gateway};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const WEBHOOK_SECRET: &str = "webhook-e2e-secret-0123456789abcdef";
/// In every configured URL's query: must never reach a log line.
const URL_TOKEN: &str = "url-token-e2e-5f4dcc3b";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    /// Header names in lower case.
    headers: HashMap<String, String>,
    body: String,
    /// The status the receiver answered.
    answered: u16,
}

/// A webhook receiver: HTTP/1.1 on a loopback port, recording every request and answering the
/// scripted statuses in turn, then 200.
#[derive(Clone)]
struct Receiver {
    port: u16,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    /// Listens on `port` (0: any free one).
    async fn start(port: u16, script: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver");
        let port = listener.local_addr().unwrap().port();
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let seen = deliveries.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, script) = (seen.clone(), script.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    // Keep-alive: one request after another on the connection.
                    while let Some((path, headers, body)) = read_request(&mut stream).await {
                        let status = script.lock().unwrap().pop_front().unwrap_or(200);
                        seen.lock().unwrap().push(Delivery {
                            path,
                            headers,
                            body,
                            answered: status,
                        });
                        let answer =
                            format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\n\r\nok");
                        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { port, deliveries }
    }

    fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}/hooks/chat?token={URL_TOKEN}")
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.deliveries();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not received within 30 s; got {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for successful deliveries of `n` distinct events; returns them in the order of
    /// their first successful delivery.
    async fn wait_for_delivered(&self, n: usize) -> Vec<Delivery> {
        let got = self
            .wait_until(&format!("{n} delivered events"), |got| {
                delivered(got).len() >= n
            })
            .await;
        delivered(&got)
    }
}

/// The first 2xx-answered delivery of each event, in order.
fn delivered(got: &[Delivery]) -> Vec<Delivery> {
    let mut seen = std::collections::HashSet::new();
    got.iter()
        .filter(|d| d.answered < 300 && seen.insert(d.headers["x-chat-event-id"].clone()))
        .cloned()
        .collect()
}

async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(
    stream: &mut R,
) -> Option<(String, HashMap<String, String>, String)> {
    let mut line = String::new();
    stream.read_line(&mut line).await.ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((path, headers, String::from_utf8(body).ok()?))
}

/// Checks a request as a receiver would (docs/webhooks.md, "Verifying a request"): the
/// signature over `<timestamp>.<body>` with the shared secret, a recent timestamp, the event
/// id and type headers matching the body. Returns the body.
fn verify(delivery: &Delivery) -> Value {
    let h = &delivery.headers;
    assert_eq!(h["content-type"], "application/json");
    let timestamp: i64 = h["x-chat-timestamp"].parse().expect("a Unix time");
    assert!(
        (chrono::Utc::now().timestamp() - timestamp).abs() < 300,
        "a recent timestamp"
    );
    let hex_signature = h["x-chat-signature"]
        .strip_prefix("sha256=")
        .expect("sha256=<hex>");
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(delivery.body.as_bytes());
    mac.verify_slice(&hex::decode(hex_signature).expect("hex"))
        .expect("the signature verifies with the shared secret");
    // The same signature does not fit another body.
    let mut forged = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    forged.update(format!("{timestamp}.{}x", delivery.body).as_bytes());
    assert!(forged
        .verify_slice(&hex::decode(hex_signature).unwrap())
        .is_err());
    assert_eq!(delivery.path, format!("/hooks/chat?token={URL_TOKEN}"));
    let body: Value = serde_json::from_str(&delivery.body).expect("a JSON body");
    assert_eq!(body["id"], h["x-chat-event-id"].as_str(), "{body}");
    assert_eq!(body["type"], h["x-chat-event"].as_str(), "{body}");
    body
}

/// Where the gateways of a test keep their data: a fresh Postgres database, or the embedded
/// store in the test's data directory.
enum Db {
    Postgres { _server: TestPostgres, url: String },
    Embedded,
}

impl Db {
    fn postgres(dir: &Path) -> Db {
        let (server, url) = migrated_postgres(dir);
        Db::Postgres {
            _server: server,
            url,
        }
    }

    /// A gateway on this store POSTing every site's events to `receiver_port`.
    fn gateway(&self, dir: &Path, receiver_port: u16) -> Gateway {
        let urls = format!("*:{}", Receiver::url(receiver_port));
        let mut env = vec![
            ("CHAT_WEBHOOK_URLS", urls.as_str()),
            ("CHAT_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CHAT_WEBHOOK_TIMEOUT_SECS", "3"),
        ];
        if let Db::Postgres { url, .. } = self {
            env.push(("CHAT_DATABASE_URL", url));
        }
        Gateway::start(dir, &env)
    }

    /// The outbox's rows: (event id, type, state, attempts), oldest first.
    async fn outbox(&self, dir: &Path) -> Vec<(String, String, String, i64)> {
        const ROWS: &str = "SELECT id, event_type, state, attempts FROM webhook_outbox \
                            ORDER BY position";
        const PG_ROWS: &str = "SELECT id::text, event_type, state, attempts FROM webhook_outbox \
                               ORDER BY position";
        match self {
            Db::Postgres { url, .. } => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                tokio::spawn(connection);
                let rows = client.query(PG_ROWS, &[]).await.expect("query the outbox");
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), i64::from(r.get::<_, i32>(3))))
                    .collect()
            }
            Db::Embedded => {
                let db = rusqlite::Connection::open_with_flags(
                    dir.join("chat.sqlite3"),
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .expect("open the store file");
                let mut stmt = db.prepare(ROWS).unwrap();
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
        }
    }

    /// Waits until every event has left the outbox (delivered).
    async fn wait_for_empty_outbox(&self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.outbox(dir).await.is_empty() {
            assert!(Instant::now() < deadline, "{:?}", self.outbox(dir).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A scenario as two tests: on a fresh Postgres database, and on the embedded store.
macro_rules! on_both_stores {
    ($scenario:ident, $on_postgres:ident, $on_embedded:ident) => {
        #[tokio::test]
        async fn $on_postgres() {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::postgres(dir.path());
            $scenario(db, dir.path()).await;
        }

        #[tokio::test]
        async fn $on_embedded() {
            let dir = tempfile::tempdir().unwrap();
            $scenario(Db::Embedded, dir.path()).await;
        }
    };
}

/// A visitor's first message: the visitor and the conversation's id.
async fn visitor_writes(gw: &Gateway) -> (Client, String) {
    setup::visitor_writes(gw, "/ws-visitor/", "hello, webhooks").await
}

/// `chat_webhook_deliveries_total` of `result` (`delivered`, `failed`).
async fn deliveries_counted(gw: &Gateway, result: &str) -> f64 {
    metric(gw, "chat_webhook_deliveries_total", &[("result", result)]).await
}

/// The delivery counter once it has reached `at_least` (or after 10 s).
async fn deliveries_counted_once(gw: &Gateway, result: &str, at_least: f64) -> f64 {
    metric_reaching(
        gw,
        "chat_webhook_deliveries_total",
        &[("result", result)],
        at_least,
    )
    .await
}

fn assert_no_secret_logged(gw: &Gateway) {
    let log = gw.log();
    assert!(!log.contains(URL_TOKEN), "a webhook URL reached the log");
    assert!(
        !log.contains(WEBHOOK_SECRET),
        "the webhook secret reached the log"
    );
}

async fn a_conversations_events_reach_the_receiver_signed(db: Db, dir: &Path) {
    let receiver = Receiver::start(0, &[]).await;
    let gw = db.gateway(dir, receiver.port);
    let (_visitor, conversation) = visitor_writes(&gw).await;

    let got = receiver.wait_for_delivered(2).await;
    let created = verify(&got[0]);
    assert_eq!(created["type"], "conversation.created", "{created}");
    assert_eq!(created["site_id"], "default");
    assert_eq!(created["data"]["conversation"]["id"], conversation);
    assert_eq!(created["data"]["conversation"]["status"], "open");
    let message = verify(&got[1]);
    assert_eq!(message["type"], "message.created", "{message}");
    assert_eq!(message["data"]["message"]["conversation_id"], conversation);
    assert_eq!(message["data"]["message"]["seq"], 1);
    assert_eq!(message["data"]["message"]["body"], "hello, webhooks");
    assert_eq!(message["data"]["message"]["sender"]["role"], "visitor");
    assert_eq!(
        message["data"]["visitor_id"],
        created["data"]["conversation"]["visitor_id"]
    );

    let mut agent = gw.agent("alice", "Alice").await;
    let ack = agent
        .request(json!({"type":"assign","conversation_id":conversation}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let got = receiver.wait_for_delivered(3).await;
    let assigned = verify(&got[2]);
    assert_eq!(assigned["type"], "conversation.assigned", "{assigned}");
    assert_eq!(assigned["data"]["conversation"]["assignee"]["id"], "alice");
    assert_eq!(
        assigned["data"]["conversation"]["assignee"]["name"],
        "Alice"
    );

    let ack = agent
        .request(json!({"type":"close","conversation_id":conversation}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let got = receiver.wait_for_delivered(4).await;
    let closed = verify(&got[3]);
    assert_eq!(closed["type"], "conversation.closed", "{closed}");
    assert_eq!(closed["data"]["conversation"]["status"], "closed");

    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|d| d.headers["x-chat-event-id"].as_str())
        .collect();
    assert_eq!(ids.len(), 4, "one id per event");
    assert!(
        receiver.deliveries().iter().all(|d| d.answered == 200),
        "nothing was sent twice to a receiver that answered 200"
    );
    assert_eq!(deliveries_counted_once(&gw, "delivered", 4.0).await, 4.0);
    // Delivered events leave the outbox.
    db.wait_for_empty_outbox(dir).await;
    assert_no_secret_logged(&gw);
}

on_both_stores!(
    a_conversations_events_reach_the_receiver_signed,
    a_conversations_events_reach_the_receiver_signed_on_postgres,
    a_conversations_events_reach_the_receiver_signed_on_the_embedded_store
);

async fn a_failing_receiver_gets_the_event_again_until_it_answers_2xx(db: Db, dir: &Path) {
    // The first two requests fail; then the receiver has recovered.
    let receiver = Receiver::start(0, &[500, 500]).await;
    let gw = db.gateway(dir, receiver.port);
    visitor_writes(&gw).await;
    let delivered = receiver.wait_for_delivered(2).await;
    let all = receiver.deliveries();
    let failed: Vec<&Delivery> = all.iter().filter(|d| d.answered == 500).collect();
    assert_eq!(failed.len(), 2, "{all:#?}");
    for failure in failed {
        let id = &failure.headers["x-chat-event-id"];
        let success = delivered
            .iter()
            .find(|d| &d.headers["x-chat-event-id"] == id)
            .expect("a failed event is delivered later");
        assert_eq!(success.body, failure.body, "the same body on every attempt");
        verify(failure);
        verify(success);
    }
    let kinds: Vec<Value> = delivered
        .iter()
        .map(|d| verify(d)["type"].clone())
        .collect();
    assert!(kinds.contains(&json!("conversation.created")), "{kinds:?}");
    assert!(kinds.contains(&json!("message.created")), "{kinds:?}");
    assert_eq!(deliveries_counted_once(&gw, "failed", 2.0).await, 2.0);
    assert_eq!(deliveries_counted_once(&gw, "delivered", 2.0).await, 2.0);
    assert_no_secret_logged(&gw);
}

on_both_stores!(
    a_failing_receiver_gets_the_event_again_until_it_answers_2xx,
    a_failing_receiver_gets_the_event_again_on_postgres,
    a_failing_receiver_gets_the_event_again_on_the_embedded_store
);

async fn an_event_in_the_outbox_of_a_killed_gateway_is_delivered_by_the_next(db: Db, dir: &Path) {
    // The receiver is down: nothing listens on its port yet.
    let port = free_port();
    let first = db.gateway(dir, port);
    visitor_writes(&first).await;
    // Both events are in the outbox, and the worker has tried (and failed) at least once.
    // `attempts` counts a claim, made before the request is sent, so the failures are
    // awaited on the metric too, which counts an attempt once it has failed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows = db.outbox(dir).await;
        let failed = deliveries_counted(&first, "failed").await;
        if rows.len() == 2 && rows.iter().all(|r| r.3 >= 1) && failed >= 2.0 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "outbox: {rows:?}, failed: {failed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows[0].1, "conversation.created");
    assert_eq!(rows[1].1, "message.created");
    assert!(rows.iter().all(|r| r.2 == "pending"), "{rows:?}");
    assert_no_secret_logged(&first);

    // SIGKILL: no chance to do anything on the way out.
    first.stop();
    let left = db.outbox(dir).await;
    assert_eq!(
        left.iter().map(|r| &r.0).collect::<Vec<_>>(),
        rows.iter().map(|r| &r.0).collect::<Vec<_>>(),
        "the events survive the kill"
    );

    let receiver = Receiver::start(port, &[]).await;
    let second = db.gateway(dir, port);
    let got = receiver.wait_for_delivered(2).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|d| verify(d)["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected, "the very events the killed process left");
    db.wait_for_empty_outbox(dir).await;
    assert_no_secret_logged(&second);
}

on_both_stores!(
    an_event_in_the_outbox_of_a_killed_gateway_is_delivered_by_the_next,
    an_event_in_the_outbox_of_a_killed_gateway_is_delivered_on_postgres,
    an_event_in_the_outbox_of_a_killed_gateway_is_delivered_on_the_embedded_store
);

#[tokio::test]
async fn webhook_urls_without_a_secret_stop_the_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let urls = format!("*:{}", Receiver::url(9));
    let (status, log) = Gateway::refused_start(dir.path(), &[("CHAT_WEBHOOK_URLS", &urls)]);
    assert!(!status.success());
    assert!(log.contains("CHAT_WEBHOOK_SECRET"), "{log}");
    assert!(!log.contains(URL_TOKEN), "{log}");
}
