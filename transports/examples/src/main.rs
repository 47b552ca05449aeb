//! `socketio-example-server`: the Engine.IO and Socket.IO layers of `chat-transport-socketio`
//! behind a tiny hyper server, without the chat gateway, so that the official protocol test
//! suites (engine.io-protocol, socket.io-protocol) and stock clients can check the transport in
//! isolation.
//!
//! - `/engine.io/`: Engine.IO alone, every message (text or binary) sent back.
//! - `/socket.io/`: Socket.IO with the namespaces `/` and `/custom`, behaving like the reference
//!   test server of the socket.io protocol suite (see `README.md`).
//!
//! The first line on stdout is `listening on http://ADDR` (handy with `--listen 127.0.0.1:0`).

use bytes::Bytes;
use chat_transport_socketio::engineio::{
    Engine, EngineConfig, EngineRequest, EngineResponse, Method, WsConnection, WsFrame,
};
use chat_transport_socketio::socketio::{
    ConnectRequest, Emitter, Socket, SocketEvent, SocketIo, SocketIoConfig,
};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming as HttpBody;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const USAGE: &str = "\
usage: socketio-example-server [--listen ADDR] [--ping-interval-ms MS] [--ping-timeout-ms MS]
                               [--connect-timeout-ms MS] [--max-payload BYTES]

  --listen ADDR            address to listen on (env LISTEN, default 127.0.0.1:3000; port 0 = any)
  --ping-interval-ms MS    Engine.IO pingInterval (env PING_INTERVAL, default 25000)
  --ping-timeout-ms MS     Engine.IO pingTimeout (env PING_TIMEOUT, default 20000)
  --connect-timeout-ms MS  Socket.IO connect timeout (env CONNECT_TIMEOUT, default 45000)
  --max-payload BYTES      Engine.IO maxPayload (env MAX_PAYLOAD, default 1000000)

Serves Engine.IO echo on /engine.io/ and Socket.IO (namespaces / and /custom) on /socket.io/.";

#[derive(Debug)]
struct Options {
    listen: String,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    connect_timeout_ms: u64,
    max_payload: usize,
}

fn parse_options() -> Result<Options, String> {
    fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
        match std::env::var(name) {
            Ok(v) => v.parse().map_err(|_| format!("invalid {name}: {v:?}")),
            Err(_) => Ok(default),
        }
    }
    let mut o = Options {
        listen: env_or("LISTEN", "127.0.0.1:3000".to_string())?,
        ping_interval_ms: env_or("PING_INTERVAL", 25_000)?,
        ping_timeout_ms: env_or("PING_TIMEOUT", 20_000)?,
        connect_timeout_ms: env_or("CONNECT_TIMEOUT", 45_000)?,
        max_payload: env_or("MAX_PAYLOAD", 1_000_000)?,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("{flag} needs a value")),
        };
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--listen" => o.listen = value,
            "--ping-interval-ms" => o.ping_interval_ms = number(&value)?,
            "--ping-timeout-ms" => o.ping_timeout_ms = number(&value)?,
            "--connect-timeout-ms" => o.connect_timeout_ms = number(&value)?,
            "--max-payload" => o.max_payload = number(&value)? as usize,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

struct State {
    /// Engine.IO alone, on `/engine.io/`.
    echo: Engine,
    /// Engine.IO under Socket.IO, on `/socket.io/`.
    socketio: Engine,
}

#[tokio::main]
async fn main() {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let engine_config = EngineConfig {
        ping_interval: Duration::from_millis(options.ping_interval_ms),
        ping_timeout: Duration::from_millis(options.ping_timeout_ms),
        max_payload: options.max_payload,
        ..EngineConfig::default()
    };

    let (echo, mut echo_sessions) = Engine::new(engine_config.clone());
    tokio::spawn(async move {
        while let Some(mut session) = echo_sessions.accept().await {
            tokio::spawn(async move {
                while let Some(message) = session.recv().await {
                    if session.send(message).is_err() {
                        break;
                    }
                }
            });
        }
    });

    let authorize = |_req: ConnectRequest| async move { Ok::<(), String>(()) };
    let (io, mut sockets) = SocketIo::new(
        SocketIoConfig {
            namespaces: vec!["/".into(), "/custom".into()],
            connect_timeout: Duration::from_millis(options.connect_timeout_ms),
            ..SocketIoConfig::default()
        },
        authorize,
    );
    let socketio = Engine::with_handler(engine_config, Arc::new(io));
    tokio::spawn(async move {
        while let Some(socket) = sockets.accept().await {
            tokio::spawn(echo_socket(socket));
        }
    });

    let listener = match TcpListener::bind(&options.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", options.listen);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("local address");
    println!("listening on http://{addr}");
    eprintln!(
        "engine.io echo on /engine.io/, socket.io (/ and /custom) on /socket.io/; \
         pingInterval={}ms pingTimeout={}ms maxPayload={}",
        options.ping_interval_ms, options.ping_timeout_ms, options.max_payload
    );
    let state = Arc::new(State { echo, socketio });
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
        };
        let state = state.clone();
        tokio::spawn(serve_connection(state, stream, peer));
    }
}

async fn serve_connection(state: Arc<State>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, "connection error: {e}");
    }
}

/// The Socket.IO side: behaves like the socket.io protocol suite's reference server.
async fn echo_socket(mut socket: Socket<()>) {
    let emitter = socket.emitter();
    let auth = socket.auth.clone().unwrap_or_else(|| json!({}));
    let _ = emitter.emit("auth", vec![auth], vec![]);
    while let Some(event) = socket.recv().await {
        let SocketEvent::Event {
            name,
            args,
            attachments,
            ack,
        } = event
        else {
            break;
        };
        if name == "ask" {
            // Server → client ack: ask the client, relay its answer.
            ask(&emitter, args.clone(), attachments.clone());
        }
        let sent = match (name.as_str(), ack) {
            // Acks are answered with the same arguments (`message-with-ack` in the suite).
            (_, Some(ack)) => ack.send(args, attachments),
            ("ask", None) => Ok(()),
            // The suite's `message` → `message-back`.
            ("message", None) => emitter.emit("message-back", args, attachments),
            // Anything else: echoed under the same name.
            (_, None) => emitter.emit(&name, args, attachments),
        };
        if sent.is_err() {
            break;
        }
    }
}

fn ask(emitter: &Emitter, args: Vec<Value>, attachments: Vec<Bytes>) {
    let Ok(answer) = emitter.emit_with_ack("question", args, attachments) else {
        return;
    };
    let emitter = emitter.clone();
    tokio::spawn(async move {
        if let Ok(payload) = answer.await {
            let _ = emitter.emit("answer", payload.args, payload.attachments);
        }
    });
}

type Reply = Response<Full<Bytes>>;

async fn handle(state: Arc<State>, req: Request<HttpBody>) -> Result<Reply, Infallible> {
    let origin = req.headers().get("origin").cloned();
    let mut reply = route(&state, req).await;
    add_cors(&mut reply, origin);
    Ok(reply)
}

fn add_cors(reply: &mut Reply, origin: Option<HeaderValue>) {
    let h = reply.headers_mut();
    match origin {
        // Credentialed CORS, like the reference servers: echo the Origin, never `*`.
        Some(origin) => {
            h.insert("access-control-allow-origin", origin);
            h.insert(
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            );
            h.append("vary", HeaderValue::from_static("Origin"));
        }
        None => {
            h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r
}

async fn route(state: &State, req: Request<HttpBody>) -> Reply {
    let engine = match req.uri().path() {
        "/engine.io/" | "/engine.io" => &state.echo,
        "/socket.io/" | "/socket.io" => &state.socketio,
        _ => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    if req.method() == hyper::Method::OPTIONS {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        let h = r.headers_mut();
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        if let Some(requested) = req.headers().get("access-control-request-headers") {
            h.insert("access-control-allow-headers", requested.clone());
        }
        h.insert("access-control-max-age", HeaderValue::from_static("86400"));
        return r;
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    if is_websocket_upgrade(&req) {
        return websocket(engine, req, &query);
    }
    let method = match *req.method() {
        hyper::Method::GET => Method::Get,
        hyper::Method::POST => Method::Post,
        _ => Method::Other,
    };
    let mut body = Vec::new();
    if method == Method::Post {
        // The engine decides 413 by length: never read more than max_payload + 1 bytes.
        let limit = engine.config().max_payload + 1;
        let mut incoming = req.into_body();
        while body.len() < limit {
            match incoming.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        body.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) => return plain(StatusCode::BAD_REQUEST, "bad body"),
                None => break,
            }
        }
    }
    let response = engine
        .handle_polling(EngineRequest {
            method,
            query,
            body: Bytes::from(body),
        })
        .await;
    engine_reply(response)
}

fn engine_reply(response: EngineResponse) -> Reply {
    let mut r = Response::new(Full::new(response.body));
    *r.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_REQUEST);
    for (name, value) in response.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}

fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let has = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    req.method() == hyper::Method::GET && has(UPGRADE, "websocket") && has(CONNECTION, "upgrade")
}

fn websocket(engine: &Engine, mut req: Request<HttpBody>, query: &str) -> Reply {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    if req
        .headers()
        .get("sec-websocket-version")
        .is_none_or(|v| v != "13")
    {
        let mut r = plain(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket version 13 required",
        );
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("13"));
        return r;
    }
    let accept = match engine.websocket_request(query) {
        Ok(accept) => accept,
        Err(refusal) => return engine_reply(refusal),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let max_payload = engine.config().max_payload;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("websocket upgrade failed: {e}");
                return;
            }
        };
        let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        // Slightly over maxPayload so that the engine, not tungstenite, refuses big frames.
        config.max_frame_size = Some(max_payload + 1024);
        config.max_message_size = Some(max_payload + 1024);
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let (to_engine, incoming) = mpsc::channel(64);
        let (outgoing, from_engine) = mpsc::channel(64);
        let engine_side = tokio::spawn(accept.serve(WsConnection { incoming, outgoing }));
        pump(ws, to_engine, from_engine).await;
        let _ = engine_side.await;
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

/// Carries frames between the WebSocket and the engine until either side ends.
async fn pump<S>(
    mut ws: WebSocketStream<S>,
    to_engine: mpsc::Sender<WsFrame>,
    mut from_engine: mpsc::Receiver<WsFrame>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            frame = ws.next() => {
                let frame = match frame {
                    Some(Ok(Message::Text(text))) => WsFrame::Text(text.as_str().to_owned()),
                    Some(Ok(Message::Binary(bytes))) => WsFrame::Binary(bytes),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                if to_engine.send(frame).await.is_err() {
                    break;
                }
            }
            frame = from_engine.recv() => {
                let message = match frame {
                    Some(WsFrame::Text(text)) => Message::Text(text.into()),
                    Some(WsFrame::Binary(bytes)) => Message::Binary(bytes),
                    None => break,
                };
                if ws.send(message).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(to_engine);
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}
