//! Observability against the real thing: the gateway and a real Prometheus server (Debian's
//! `prometheus` package; `.ci/run` installs it). Traffic on every transport and both roles, a few
//! scrapes, then every expression of every dashboard panel and every alert rule is evaluated
//! through Prometheus' HTTP API. Also: `promtool` accepts the shipped files, `docs/metrics.md`
//! matches what `/metrics` exports, and traffic logs nothing per message at `info`.
//!
//! Missing `prometheus`/`promtool` fails these tests; it never skips them.

mod common;

use common::{connect_raw, free_port, metrics_text, Client, Gateway};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("`{name}` is not installed: apt-get install prometheus (or run .ci/run)");
}

#[test]
fn promtool_accepts_the_shipped_scrape_config_and_alert_rules() {
    let dir = repo().join("dashboards/prometheus");
    for args in [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
    ] {
        let out = Command::new(tool("promtool"))
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A main site: `/boom` answers 500, everything else 200.
async fn start_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let Ok(n) = stream.read(&mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..n]);
                let status = if head.starts_with("GET /boom") {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    port
}

fn start_gateway(dir: &Path, upstream: u16) -> Gateway {
    Gateway::start(
        dir,
        &[
            ("CHAT_UPSTREAM", &format!("127.0.0.1:{upstream}")),
            ("CHAT_LOG", "info"),
            ("CHAT_LOG_FORMAT", "json"),
            // The access log writes a line per request by design (`tests/access_log.rs`); this
            // test counts the application's own log lines.
            ("CHAT_ACCESS_LOG", "off"),
        ],
    )
}

/// A Socket.IO client over an Engine.IO WebSocket, spoken by hand.
struct SocketIo {
    ws: common::Ws,
}

impl SocketIo {
    async fn connect(gw: &Gateway, path: &str, auth: Value) -> (SocketIo, Value) {
        let ws = connect_raw(&gw.ws(&format!("{path}?EIO=4&transport=websocket")), &[])
            .await
            .unwrap();
        let mut io = SocketIo { ws };
        let open = io.next().await;
        assert!(open.starts_with('0'), "{open}");
        io.send(&format!("40{auth}")).await;
        let connected = io.next().await;
        assert!(connected.starts_with("40{"), "{connected}");
        let welcome = io.event("welcome").await;
        (io, welcome)
    }

    async fn send(&mut self, text: &str) {
        self.ws
            .send(WsMessage::Text(text.to_string().into()))
            .await
            .unwrap();
    }

    /// The next Engine.IO packet, answering pings.
    async fn next(&mut self) -> String {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("socket.io: nothing within 10 s")
                .unwrap()
                .unwrap();
            if let WsMessage::Text(text) = msg {
                if text.as_str() == "2" {
                    self.send("3").await;
                    continue;
                }
                return text.as_str().to_owned();
            }
        }
    }

    /// Waits for event `name`; returns its first argument.
    async fn event(&mut self, name: &str) -> Value {
        loop {
            let packet = self.next().await;
            if let Some(args) = packet.strip_prefix("42") {
                let args: Value = serde_json::from_str(args).unwrap();
                if args[0] == name {
                    return args[1].clone();
                }
            }
        }
    }

    /// Emits `name` with `fields` and ack id `id`; returns the ack's argument.
    async fn request(&mut self, id: u32, name: &str, fields: Value) -> Value {
        self.send(&format!("42{id}{}", json!([name, fields]))).await;
        let prefix = format!("43{id}");
        loop {
            let packet = self.next().await;
            if let Some(args) = packet.strip_prefix(&prefix) {
                let args: Value = serde_json::from_str(args).unwrap();
                return args[0].clone();
            }
        }
    }
}

/// A raw long-polling client.
struct Poller {
    http: reqwest::Client,
    url: String,
    sid: String,
    cursor: u64,
}

impl Poller {
    async fn open(gw: &Gateway, path: &str, query: &str) -> Poller {
        let http = reqwest::Client::new();
        let body: Value = http
            .post(gw.http(&format!("{path}?{query}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["events"][0]["type"], "welcome", "{body}");
        Poller {
            http,
            url: gw.http(path),
            sid: body["sid"].as_str().unwrap().to_owned(),
            cursor: 1,
        }
    }

    async fn request(&self, command: Value) -> Value {
        let body: Value = self
            .http
            .post(format!("{}?sid={}", self.url, self.sid))
            .body(command.to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["answers"][0].clone()
    }

    async fn poll_until(&mut self, pred: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let body: Value = self
                .http
                .get(format!(
                    "{}?sid={}&cursor={}",
                    self.url, self.sid, self.cursor
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let events = body["events"].as_array().unwrap().clone();
            self.cursor = body["cursor"].as_u64().unwrap();
            if events.iter().any(&pred) {
                return;
            }
        }
        panic!("polling: no matching event within 10 s");
    }
}

fn is_message(body: &str) -> impl Fn(&Value) -> bool + '_ {
    move |ev: &Value| ev["type"] == "message" && ev["message"]["body"] == body
}

/// What the traffic leaves connected (dropped at the end of the test).
struct Open {
    _clients: Vec<Client>,
    _sockets: Vec<SocketIo>,
    _pollers: Vec<Poller>,
}

/// Traffic on every transport and both roles: sessions, messages both ways (and through the
/// HTTP API), a resume with replay, refused handshakes, proxied requests (200 and 500).
/// Returns how many messages were sent.
async fn traffic(gw: &Gateway) -> (Open, usize) {
    let token = gw.agent_token("alice", "Alice");
    let bearer = format!("Bearer {token}");
    // Agents on all three transports.
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    let (mut io_agent, _) = SocketIo::connect(gw, "/ws-admin/", json!({ "token": token })).await;
    let mut poll_agent = Poller::open(gw, "/ws-admin/poll", &format!("token={token}")).await;

    // A WebSocket visitor and a reply from the WebSocket agent.
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let ack = visitor
        .request(json!({"type": "send", "body": "ws hello"}))
        .await;
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    agent.wait_for(is_message("ws hello")).await;
    io_agent.event("message").await;
    poll_agent.poll_until(is_message("ws hello")).await;
    let reply = agent
        .request(json!({"type": "send", "conversation_id": conversation, "body": "ws reply"}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    visitor.wait_for(is_message("ws reply")).await;

    // A long-polling visitor; the answer comes through the HTTP API.
    let mut poller = Poller::open(gw, "/ws-visitor/poll", "").await;
    let answer = poller
        .request(json!({"type": "send", "body": "poll hello"}))
        .await;
    let poll_conversation = answer["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    agent.wait_for(is_message("poll hello")).await;
    let status = reqwest::Client::new()
        .post(gw.http(&format!(
            "/chat/api/conversations/{poll_conversation}/messages"
        )))
        .header("Authorization", &bearer)
        .json(&json!({"body": "api reply"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    poller.poll_until(is_message("api reply")).await;
    // The polling agent answers too.
    let answer = poll_agent
        .request(
            json!({"type": "send", "conversation_id": poll_conversation, "body": "poll reply"}),
        )
        .await;
    assert_eq!(answer["type"], "ack", "{answer}");
    poller.poll_until(is_message("poll reply")).await;

    // A Socket.IO visitor, answered by the Socket.IO agent.
    let (mut io_visitor, _) = SocketIo::connect(gw, "/ws-visitor/", json!({})).await;
    let ack = io_visitor
        .request(1, "send", json!({"body": "io hello"}))
        .await;
    let io_conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    agent.wait_for(is_message("io hello")).await;
    let ack = io_agent
        .request(
            1,
            "send",
            json!({"conversation_id": io_conversation, "body": "io reply"}),
        )
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    loop {
        if io_visitor.event("message").await["message"]["body"] == "io reply" {
            break;
        }
    }

    // The WebSocket visitor reconnects and resumes from the start: two messages replayed.
    let visitor_token = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut again =
        Client::connect(&gw.ws(&format!("/ws-visitor/?token={visitor_token}")), &[]).await;
    let resumed = again
        .request(json!({"type": "resume", "cursors": {conversation.clone(): 0}}))
        .await;
    assert_eq!(resumed["replayed"], 2, "{resumed}");
    drop(visitor);

    // Refused handshakes: a bad token, a foreign origin.
    assert!(connect_raw(&gw.ws("/ws-visitor/?token=forged"), &[])
        .await
        .is_err());
    assert!(connect_raw(&gw.ws("/ws-admin/?token=forged"), &[])
        .await
        .is_err());
    assert!(connect_raw(
        &gw.ws("/ws-visitor/"),
        &[("Origin", "https://evil.example")]
    )
    .await
    .is_err());

    // The main site through the proxy, one good page and one failure; chat routes.
    let http = reqwest::Client::new();
    for path in ["/", "/boom", "/chat/health", "/chat/nope"] {
        http.get(gw.http(path)).send().await.unwrap();
    }
    let open = Open {
        _clients: vec![agent, again],
        _sockets: vec![io_agent, io_visitor],
        _pollers: vec![poller, poll_agent],
    };
    (open, 7)
}

/// A Prometheus server scraping the gateway every second, with the shipped alert rules.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let alerts = repo().join("dashboards/prometheus/alerts.yml");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: chat-gateway\n    static_configs:\n      - targets: ['{target}']\n",
                alerts.canonicalize().unwrap().display()
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .query(query)
            .send()
            .await;
        match response {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    async fn query(&self, expr: &str) -> Value {
        self.api("/api/v1/query", &[("query", expr)]).await
    }

    /// Waits until `expr` returns at least `n` samples.
    async fn wait_for(&self, expr: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.query(expr).await;
            if v["data"]["result"].as_array().is_some_and(|r| r.len() >= n) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus: `{expr}` has no result after 60 s: {v}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Panels whose queries may come back empty after the test traffic, and why.
const MAY_BE_EMPTY: &[(&str, &str)] = &[(
    "Chat 5xx/s by route",
    "no chat route answers 5xx while the store is up",
)];

/// Grafana's built-in variables, as the test queries them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
}

fn has_finite_sample(result: &Value) -> bool {
    result["data"]["result"].as_array().is_some_and(|series| {
        series.iter().any(|s| {
            s["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(f64::is_finite)
        })
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_panel_and_alert_rule_evaluates_against_a_real_prometheus() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dashboards/grafana/chat-gateway.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_upstream().await;
    let gw = start_gateway(dir.path(), upstream);
    let target = gw.env["CHAT_METRICS_LISTEN"].clone();
    let prometheus = Prometheus::start(&target);
    // Scraped at least twice before the traffic, so that rates see it start.
    prometheus
        .wait_for(r#"count_over_time(up{job="chat-gateway"}[1m]) >= 2"#, 1)
        .await;
    let log_lines_before = gw.output.lock().unwrap().len();

    let (open, messages) = traffic(&gw).await;
    // Scrapes after the traffic (the store gauges refresh every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    prometheus
        .wait_for(
            r#"chat_messages_total{direction="visitor_to_agent",transport="socketio"} >= 1"#,
            1,
        )
        .await;

    let mut failures = Vec::new();
    let mut evaluated = 0;
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap();
        let may_be_empty = MAY_BE_EMPTY.iter().any(|(t, _)| *t == title);
        for target in panel["targets"].as_array().unwrap() {
            let expr = substitute(target["expr"].as_str().unwrap());
            let result = prometheus.query(&expr).await;
            evaluated += 1;
            if result["status"] != "success" {
                failures.push(format!("panel {title:?}: `{expr}` failed: {result}"));
            } else if !may_be_empty && !has_finite_sample(&result) {
                failures.push(format!(
                    "panel {title:?}: `{expr}` has no series with a value: {result}"
                ));
            }
        }
    }
    assert!(evaluated >= 25, "only {evaluated} panel queries found");

    // Prometheus loaded the shipped rules: each evaluated without error, and each expression
    // also answers through the query API.
    let rules = prometheus.api("/api/v1/rules", &[]).await;
    let rules: Vec<Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect();
    assert!(rules.len() >= 5, "alert rules not loaded: {rules:?}");
    for rule in &rules {
        let name = rule["name"].as_str().unwrap();
        if rule["health"] == "err" {
            failures.push(format!("alert {name}: {}", rule["lastError"]));
        }
        let expr = rule["query"].as_str().unwrap();
        let result = prometheus.query(expr).await;
        if result["status"] != "success" {
            failures.push(format!("alert {name}: `{expr}` failed: {result}"));
        }
    }
    // The gateway is up: the down alert's condition is false, its input is not.
    let up = prometheus.query(r#"up{job="chat-gateway"}"#).await;
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Logs: JSON, and nothing per message, poll or connection at info.
    let log = gw.output.lock().unwrap().clone();
    for line in log.iter().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
    }
    let during: Vec<&String> = log[log_lines_before..].iter().collect();
    assert!(
        during.len() < messages,
        "{} log lines at info for {messages} messages: {during:#?}",
        during.len()
    );
    drop(open);
}

/// `docs/metrics.md`'s table: metric → (type, label names).
fn documented() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let doc = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let mut metrics = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `name` | type | labels | meaning | emitted |
        if cells.len() < 6 || !matches!(cells[2], "counter" | "gauge" | "histogram") {
            continue;
        }
        let name = cells[1].trim_matches('`').to_owned();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty() && l != "—")
            .collect();
        metrics.insert(name, (cells[2].to_owned(), labels));
    }
    metrics
}

/// `/metrics`: metric → (type, label names seen on its samples).
fn exported(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut metrics: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            metrics.insert(name.to_owned(), (kind.to_owned(), BTreeSet::new()));
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, _) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|b| metrics.get(*b).is_some_and(|(k, _)| k == "histogram"))
            })
            .unwrap_or(name);
        let entry = metrics
            .get_mut(base)
            .unwrap_or_else(|| panic!("sample of undeclared metric: {line}"));
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let label = pair.split('=').next().unwrap();
            if label != "le" {
                entry.1.insert(label.to_owned());
            }
        }
    }
    metrics
}

#[tokio::test(flavor = "multi_thread")]
async fn docs_metrics_md_lists_exactly_the_exported_metrics_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_upstream().await;
    let gw = start_gateway(dir.path(), upstream);
    let (_open, _) = traffic(&gw).await;
    // The store gauges are refreshed every 5 s, the first time at start-up.
    let text = metrics_text(&gw).await;
    let exported = exported(&text);
    let documented = documented();
    assert!(
        documented.len() >= 20,
        "docs table not parsed: {documented:?}"
    );
    let mut problems = Vec::new();
    for (name, (kind, labels)) in &exported {
        match documented.get(name) {
            None => problems.push(format!("{name} ({kind}) is exported but not documented")),
            Some((doc_kind, doc_labels)) => {
                if doc_kind != kind {
                    problems.push(format!(
                        "{name}: exported as {kind}, documented as {doc_kind}"
                    ));
                }
                if doc_labels != labels {
                    problems.push(format!(
                        "{name}: exported labels {labels:?}, documented {doc_labels:?}"
                    ));
                }
            }
        }
    }
    for name in documented.keys() {
        if !exported.contains_key(name) {
            problems.push(format!("{name} is documented but not exported"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Bounded labels: nothing from the wire.
    assert!(!text.contains("/chat/"), "a path leaked into a label");
    for line in text.lines() {
        assert!(line.len() < 300, "suspiciously long series: {line}");
    }
}
