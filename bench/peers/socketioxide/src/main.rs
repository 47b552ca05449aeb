//! The socketioxide peer of the benchmark harness: the gateway's chat job on Socket.IO, written
//! plainly. A visitor (no credentials) sends `send {body, client_msg_id}`; the message is stored in
//! Postgres with one prepared statement (one transaction), then acknowledged to the visitor and
//! delivered as a `message` event to every agent (auth `{token: JWT}`, HS256, checked with hmac + sha2) and to the visitor.
//! No recovery, no bus, no dedupe: the same job as bench/peers/node/server.js.
//!
//! Environment: `PORT` (listens on 127.0.0.1), `DATABASE_URL`, `JWT_SECRET`, `POOL_SIZE` (16).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::SocketIo;
use tokio_postgres::{Client, NoTls, Statement};

const SEND_SQL: &str = include_str!("../../send.sql");
const MAX_BODY_CHARS: usize = 4000;

/// A fixed set of connections, each with the send statement prepared, used in turn.
struct Store {
    connections: Vec<(Client, Statement)>,
    next: AtomicUsize,
}

impl Store {
    async fn connect(url: &str, size: usize) -> Result<Store, tokio_postgres::Error> {
        let mut connections = Vec::with_capacity(size);
        for _ in 0..size {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("postgres connection ended: {e}");
                }
            });
            let statement = client.prepare(SEND_SQL).await?;
            connections.push((client, statement));
        }
        Ok(Store {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// Stores one message; returns its seq and creation time.
    async fn append(
        &self,
        visitor: &str,
        body: &str,
        client_msg_id: Option<&str>,
    ) -> Result<(i64, String), tokio_postgres::Error> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let (client, statement) = &self.connections[i];
        let row = client
            .query_one(statement, &[&visitor, &body, &client_msg_id])
            .await?;
        Ok((row.get(0), row.get(1)))
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    name: Option<String>,
    exp: u64,
}

#[derive(Deserialize)]
struct SendCommand {
    body: String,
    client_msg_id: Option<String>,
}

/// The agent claims of an HS256 JWT in `auth.token` (None: no token, a visitor), checked as the
/// gateway does for what matters here: the algorithm, the signature and `exp`.
fn agent_of(auth: &Value, secret: &[u8]) -> Option<Result<Claims, ()>> {
    let token = auth.get("token")?.as_str()?;
    Some(verify_hs256(token, secret).ok_or(()))
}

fn verify_hs256(token: &str, secret: &[u8]) -> Option<Claims> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use hmac::Mac as _;
    let (signed, signature) = token.rsplit_once('.')?;
    let (header, claims) = signed.split_once('.')?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).ok()?;
    mac.update(signed.as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?)
        .ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    (claims.exp > now).then_some(claims)
}

fn error_answer(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}

async fn on_send(
    io: SocketIo,
    store: Arc<Store>,
    visitor: Arc<str>,
    command: Value,
    ack: AckSender,
) {
    let command: SendCommand = match serde_json::from_value(command) {
        Ok(c) => c,
        Err(_) => {
            ack.send(&error_answer("invalid_frame", "send needs a body"))
                .ok();
            return;
        }
    };
    let chars = command.body.chars().count();
    if chars == 0 || chars > MAX_BODY_CHARS {
        ack.send(&error_answer(
            "bad_request",
            "body must have 1..=4000 characters",
        ))
        .ok();
        return;
    }
    match store
        .append(&visitor, &command.body, command.client_msg_id.as_deref())
        .await
    {
        Ok((seq, created_at)) => {
            let message = json!({
                "conversation_id": &*visitor,
                "seq": seq,
                "client_msg_id": command.client_msg_id,
                "sender": { "role": "visitor", "id": &*visitor, "name": null },
                "body": command.body,
                "created_at": created_at,
            });
            let event = json!({ "message": message });
            ack.send(&json!({ "message": message, "duplicate": false }))
                .ok();
            io.within(["agents".to_string(), visitor.to_string()])
                .emit("message", &event)
                .await
                .ok();
        }
        Err(e) => {
            eprintln!("store: {e}");
            ack.send(&error_answer("unavailable", "the store failed"))
                .ok();
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")?.parse()?;
    let url = std::env::var("DATABASE_URL")?;
    let secret = std::env::var("JWT_SECRET")?;
    let pool_size: usize = std::env::var("POOL_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let store = Arc::new(Store::connect(&url, pool_size.max(1)).await?);
    let secret: Arc<[u8]> = secret.into_bytes().into();

    let (layer, io) = SocketIo::new_layer();
    io.ns(
        "/",
        move |socket: SocketRef, io: SocketIo, Data(auth): Data<Value>| {
            let store = store.clone();
            let secret = secret.clone();
            async move {
                match agent_of(&auth, &secret) {
                    Some(Ok(claims)) => {
                        socket.join("agents");
                        let name = claims.name.clone().unwrap_or_else(|| claims.sub.clone());
                        let welcome =
                            json!({ "role": "agent", "agent": { "id": claims.sub, "name": name } });
                        socket.emit("welcome", &welcome).ok();
                    }
                    Some(Err(())) => {
                        socket.disconnect().ok();
                    }
                    None => {
                        let visitor: Arc<str> = uuid::Uuid::new_v4().to_string().into();
                        socket.join(visitor.to_string());
                        socket
                            .emit(
                                "welcome",
                                &json!({ "role": "visitor", "visitor_id": &*visitor }),
                            )
                            .ok();
                        socket.on("send", move |Data::<Value>(command), ack: AckSender| {
                            on_send(io.clone(), store.clone(), visitor.clone(), command, ack)
                        });
                    }
                }
            }
        },
    );

    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("LISTENING port={port}");
    axum::serve(listener, app).await?;
    Ok(())
}
