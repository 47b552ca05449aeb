//! Shared harness for the end-to-end tests: runs the real `chat-gateway` binary on loopback
//! ports and speaks to it with real WebSocket and HTTP clients.
#![allow(dead_code)]

pub mod poller;
pub mod setup;
pub mod tls_client;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "e2e-test-secret-0123456789abcdef";

/// Brings the Postgres database at `url` to the current schema with `chat-gateway migrate`
/// (`data`: the data directory, for the secrets the command may create).
pub fn migrate(url: &str, data: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .envs([("CHAT_DATABASE_URL", url)])
        .env("CHAT_DATA_DIR", data)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two gateway processes sharing the Postgres database at `url` (migrated first) and the data
/// directory `dir` (so the same secrets): the cluster of the multi-process tests.
pub fn two_gateways(url: &str, dir: &Path) -> (Gateway, Gateway) {
    migrate(url, dir);
    let a = Gateway::start(dir, &[("CHAT_DATABASE_URL", url)]);
    let b = Gateway::start(dir, &[("CHAT_DATABASE_URL", url)]);
    (a, b)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback port that refuses connections for as long as the returned
/// socket lives: bound but never listening, so no other test can take the
/// port in the meantime (a port from `free_port` can be reused at once by a
/// server another test starts, and then the "dead" upstream answers).
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// A running gateway process; killed on drop.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub env: HashMap<String, String>,
    pub output: Arc<Mutex<Vec<String>>>,
    pub data_dir: PathBuf,
}

impl Gateway {
    /// Starts the gateway with the embedded store in `data_dir` plus `extra` variables, and waits
    /// for `SERVER_OK`.
    pub fn start(data_dir: &Path, extra: &[(&str, &str)]) -> Gateway {
        let port = free_port();
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("CHAT_HTTP_LISTEN".into(), format!("127.0.0.1:{port}"));
        env.insert("CHAT_DATA_DIR".into(), data_dir.display().to_string());
        env.insert("CHAT_ADMIN_JWT_SECRET".into(), SECRET.into());
        env.insert("CHAT_LOG".into(), "info,chat_gateway=debug".into());
        // Every gateway gets its own metrics port: tests run in parallel.
        env.insert(
            "CHAT_METRICS_LISTEN".into(),
            format!("127.0.0.1:{}", free_port()),
        );
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        Self::start_with_env(port, env, data_dir)
    }

    pub fn start_with_env(port: u16, env: HashMap<String, String>, data_dir: &Path) -> Gateway {
        let mut gateway = Self::spawn(port, env, data_dir, &[]);
        gateway.wait_for_line("SERVER_OK", Duration::from_secs(60));
        gateway
    }

    /// Starts the binary with `args` and returns at once, without waiting for `SERVER_OK`.
    pub fn spawn(
        port: u16,
        env: HashMap<String, String>,
        data_dir: &Path,
        args: &[&str],
    ) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
            .args(args)
            .envs(&env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chat-gateway");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        Gateway {
            child,
            port,
            env,
            output,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Waits until the gateway printed a line starting with `prefix`; panics if it exits or
    /// `timeout` passes first.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .output
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with(prefix))
            {
                return;
            }
            if let Some(status) = self.exit_status() {
                panic!(
                    "gateway exited with {status} before {prefix}:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "gateway did not print {prefix} within {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// `http://…/metrics` on the metrics listener.
    pub fn metrics_url(&self) -> String {
        format!(
            "http://{}/metrics",
            self.env
                .get("CHAT_METRICS_LISTEN")
                .expect("CHAT_METRICS_LISTEN is set")
        )
    }

    pub fn ws(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    /// Mints an agent token with the binary's own `token` command.
    pub fn agent_token(&self, id: &str, name: &str) -> String {
        self.agent_token_for(id, name, None)
    }

    /// Mints an agent token for `sites` (`--sites`; `None`: the token names none).
    pub fn agent_token_for(&self, id: &str, name: &str, sites: Option<&str>) -> String {
        let mut args = vec!["token", "--agent", id, "--name", name];
        if let Some(sites) = sites {
            args.extend(["--sites", sites]);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
            .envs(&self.env)
            .args(&args)
            .output()
            .expect("run chat-gateway token");
        assert!(
            out.status.success(),
            "token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- gateway output ---\n{}", self.log());
        }
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A chat client over a real WebSocket.
pub struct Client {
    pub ws: Ws,
    pub welcome: Value,
    next_id: u64,
    /// Events received while waiting for something else.
    pub backlog: Vec<Value>,
}

pub async fn connect_raw(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

impl Client {
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Client {
        let ws = connect_raw(url, headers)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Self::from_ws(ws).await
    }

    pub async fn from_ws(ws: Ws) -> Client {
        let mut client = Client {
            ws,
            welcome: Value::Null,
            next_id: 0,
            backlog: Vec::new(),
        };
        let welcome = client.next().await;
        assert_eq!(
            welcome["type"], "welcome",
            "first event must be welcome: {welcome}"
        );
        client.welcome = welcome;
        client
    }

    /// The next JSON event (panics after 10 s).
    pub async fn next(&mut self) -> Value {
        if !self.backlog.is_empty() {
            return self.backlog.remove(0);
        }
        self.next_from_socket().await
    }

    async fn next_from_socket(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("no event within 10 s")
                .expect("socket ended")
                .expect("socket error");
            match msg {
                WsMessage::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                WsMessage::Close(frame) => panic!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Waits for an event matching `pred`, keeping the others for later `next` calls.
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(pos) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(pos);
        }
        loop {
            let ev = self.next_from_socket().await;
            if pred(&ev) {
                return ev;
            }
            self.backlog.push(ev);
        }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(WsMessage::Text(text.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends a command and returns its `ack` or `error`.
    pub async fn request(&mut self, mut command: Value) -> Value {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        command["id"] = json!(id);
        self.send_raw(&command.to_string()).await;
        self.wait_for(|ev| ev["id"] == json!(id) && (ev["type"] == "ack" || ev["type"] == "error"))
            .await
    }

    /// The next JSON event, or the close code if the connection closes first.
    pub async fn next_or_close(&mut self) -> Result<Value, u16> {
        if !self.backlog.is_empty() {
            return Ok(self.backlog.remove(0));
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
                Ok(Some(Ok(WsMessage::Text(t)))) => {
                    return Ok(serde_json::from_str(t.as_str()).unwrap())
                }
                Ok(Some(Ok(WsMessage::Close(Some(frame))))) => return Err(u16::from(frame.code)),
                Ok(Some(Ok(WsMessage::Close(None)))) | Ok(None) => return Err(1005),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("socket error before close: {e}"),
                Err(_) => panic!("no event within 10 s"),
            }
        }
    }

    /// Reads until the connection closes; returns the close code.
    pub async fn closed_with(&mut self) -> u16 {
        loop {
            if let Err(code) = self.next_or_close().await {
                return code;
            }
        }
    }
}

/// Status, `Retry-After` and JSON body (a JSON string if not JSON) of one HTTP request.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut request = http.request(method, url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body);
    }
    let response = tokio::time::timeout(Duration::from_secs(15), request.send())
        .await
        .expect("no answer within 15 s")
        .expect("request failed");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry_after, value)
}

/// The text of the gateway's `/metrics`.
pub async fn metrics_text(gw: &Gateway) -> String {
    reqwest::get(gw.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one sample of `/metrics`, summed over the series matching `labels` (0 when
/// absent).
pub async fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics_text(gw)
        .await
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// [`metric`] once it has reached `at_least`, or after 10 s. A counter is bumped after what a
/// client can see (a closed socket, an answer already sent, a receiver's record of a request),
/// so a test that asserts it right away can read it a moment early.
pub async fn metric_reaching(
    gw: &Gateway,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = metric(gw, name, labels).await;
        if value >= at_least || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A main site upstream on a loopback port (HTTP/1.1): records each request head, echoes
/// WebSockets (`upstream echo: …`) and answers anything else 200 `hello from the main site`.
pub async fn start_upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let Some(head) = read_head(&mut stream).await else {
                        return;
                    };
                    seen.lock().unwrap().push(head.clone());
                    // Pingora reuses upstream connections, so any request on a connection may
                    // be the upgrade.
                    if let Some(key) = header_value(&head, "sec-websocket-key") {
                        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                            key.as_bytes(),
                        );
                        let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
                        stream.write_all(resp.as_bytes()).await.unwrap();
                        let mut ws = WebSocketStream::from_raw_socket(
                            stream,
                            tokio_tungstenite::tungstenite::protocol::Role::Server,
                            None,
                        )
                        .await;
                        while let Some(Ok(msg)) = ws.next().await {
                            if let WsMessage::Text(t) = msg {
                                let echo = format!("upstream echo: {t}");
                                if ws.send(WsMessage::Text(echo.into())).await.is_err() {
                                    return;
                                }
                            }
                        }
                        return;
                    }
                    let body = "hello from the main site";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, heads)
}

/// Reads one HTTP request head up to the blank line; `None` if the connection ends first.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The value of header `name` (any case) in a request or response head.
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A TCP connection to the gateway from `from` (a loopback address of this machine).
pub async fn tcp_from(gw: &Gateway, from: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], gw.port)))
        .await
        .unwrap()
}

/// A certificate and key file pair of the TLS tests (`edge_port80.rs`, `edge_tls_certs.rs`).
pub struct Site {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where a site's pair lives under `dir`.
pub fn site(dir: &Path, name: &str) -> Site {
    Site {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    }
}

/// A gateway serving `sites` through `CHAT_TLS_CERTS` on a TLS port of its own: (gateway, TLS
/// port).
pub fn tls_gateway(dir: &Path, sites: &[&Site], extra: &[(&str, &str)]) -> (Gateway, u16) {
    let tls_port = free_port();
    let list: Vec<String> = sites
        .iter()
        .map(|s| format!("{}:{}", s.cert.display(), s.key.display()))
        .collect();
    let list = list.join(",");
    let listen = format!("127.0.0.1:{tls_port}");
    let mut env = vec![
        ("CHAT_TLS_CERTS", list.as_str()),
        ("CHAT_TLS_LISTEN", listen.as_str()),
    ];
    env.extend_from_slice(extra);
    (Gateway::start(dir, &env), tls_port)
}
