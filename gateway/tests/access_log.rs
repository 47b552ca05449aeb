//! The access log (`CHAT_ACCESS_LOG`, `CHAT_ACCESS_LOG_FORMAT`) of the real binary: one line per
//! proxied and chat request, one per finished WebSocket session (raw and Socket.IO) with its
//! transport, role and reason, JSON that parses, `off` that writes nothing, and never a token.
//! Also: a gateway whose stdout nobody reads keeps answering, and counts the lines it drops.

mod common;

use common::{connect_raw, start_upstream, Client, Gateway};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const UA: &str = "access-log-test/1.0";

/// The lines of `path` once `done` holds for them (panics after 10 s).
async fn wait_until(path: &Path, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if done(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "not there yet in {}:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The first line of `path` that matches `pred`, once there is one.
async fn wait_for_line(path: &Path, pred: impl Fn(&str) -> bool) -> String {
    let lines = wait_until(path, |lines| lines.iter().any(|l| pred(l))).await;
    lines.into_iter().find(|l| pred(l)).unwrap()
}

/// The whitespace-separated fields after the quoted request, status, bytes, referer and agent:
/// request time, upstream time, then any `key=value`.
fn tail(line: &str) -> Vec<&str> {
    let after_agent = line.splitn(7, '"').nth(6).unwrap();
    after_agent.split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_and_sessions_get_one_line_each_and_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (upstream, _) = start_upstream().await;
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_UPSTREAM", &format!("127.0.0.1:{upstream}")),
            ("CHAT_ACCESS_LOG", log.to_str().unwrap()),
            ("CHAT_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    );
    let http = reqwest::Client::new();
    let agent_token = gw.agent_token("alice", "Alice");

    // A proxied request, with every kind of secret a request can carry.
    let resp = http
        .get(gw.http("/pricing?plan=pro&token=query-secret-1"))
        .header("Authorization", "Bearer header-secret-2")
        .header("Cookie", "session=cookie-secret-3")
        .header("User-Agent", UA)
        .header(
            "Referer",
            "https://example.com/from?token=referer-secret-8#frag",
        )
        .header("X-Forwarded-For", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "hello from the main site");
    let line = wait_for_line(&log, |l| l.contains("/pricing")).await;
    assert!(
        line.starts_with("198.51.100.7 - - ["),
        "the client address as resolved through the trusted proxy: {line}"
    );
    assert!(
        line.contains(&format!(
            "] \"GET /pricing HTTP/1.1\" 200 24 \"https://example.com/from\" \"{UA}\" "
        )),
        "{line}"
    );
    let fields = tail(&line);
    assert_eq!(fields.len(), 2, "{line}");
    let total: f64 = fields[0].parse().unwrap();
    let upstream_time: f64 = fields[1]
        .parse()
        .expect("a proxied request has an upstream time");
    assert!(upstream_time <= total + 0.001, "{line}");

    // A chat HTTP request: no upstream time.
    http.get(gw.http("/chat/health?token=health-secret-4"))
        .header("User-Agent", UA)
        .send()
        .await
        .unwrap();
    let line = wait_for_line(&log, |l| l.contains("/chat/health")).await;
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("\"GET /chat/health HTTP/1.1\" 200 "),
        "{line}"
    );
    assert_eq!(tail(&line)[1], "-", "{line}");

    // A refused WebSocket upgrade is an ordinary request line.
    // Its hostile Referer stays inside its field.
    let refused = connect_raw(
        &gw.ws("/ws-admin/?token=not-a-valid-jwt-secret-5"),
        &[("Referer", "x\" 200 \"forged\\")],
    )
    .await;
    assert!(refused.is_err());
    let line = wait_for_line(&log, |l| l.contains("\"GET /ws-admin/ HTTP/1.1\" 401")).await;
    assert!(!line.contains("transport="), "{line}");
    assert!(line.contains(" \"x\\x22 200 \\x22forged\\x5C\" "), "{line}");

    // A raw WebSocket session: nothing at the upgrade, one line when it ends.
    let mut agent = Client::connect(
        &gw.ws(&format!("/ws-admin/?token={agent_token}")),
        &[("User-Agent", UA)],
    )
    .await;
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/?site=default"), &[]).await;
    let visitor_token = visitor.welcome["visitor_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = visitor
        .request(json!({"type": "send", "body": "a message the log must not carry"}))
        .await;
    assert_eq!(sent["type"], "ack", "{sent}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("transport="),
        "a session's line is written when it ends:\n{text}"
    );
    agent.ws.close(None).await.unwrap();
    while agent.ws.next().await.is_some() {}
    let line = wait_for_line(&log, |l| l.contains("role=agent")).await;
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains("\"GET /ws-admin/ HTTP/1.1\" 101 "), "{line}");
    let fields = tail(&line);
    assert_eq!(
        fields[2..4].join(" "),
        "transport=websocket role=agent",
        "{line}"
    );
    assert_eq!(fields[4], "reason=client_closed", "{line}");
    let received: u64 = fields[5]
        .strip_prefix("bytes_received=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(received > 0, "the close frame at least: {line}");
    let sent_bytes: u64 = line
        .split("101 ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent_bytes > 50, "the welcome at least: {line}");
    assert!(line.contains(&format!("\"{UA}\"")), "{line}");
    // The visitor goes away without a close frame, then comes back with its token in the
    // query string and closes.
    drop(visitor);
    let mut again = Client::connect(
        &gw.ws(&format!("/ws-visitor/?site=default&token={visitor_token}")),
        &[],
    )
    .await;
    again.ws.close(None).await.unwrap();
    while again.ws.next().await.is_some() {}
    let sessions = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains("transport=websocket role=visitor"))
            .cloned()
            .collect()
    };
    let lines = wait_until(&log, |lines| sessions(lines).len() == 2).await;
    for line in sessions(&lines) {
        assert!(
            line.contains("\"GET /ws-visitor/ HTTP/1.1\" 101 "),
            "{line}"
        );
        let reason = tail(&line)[4].strip_prefix("reason=").unwrap().to_owned();
        assert!(
            chat_gateway::metrics::DISCONNECT_REASONS.contains(&reason.as_str()),
            "{line}"
        );
    }

    // Socket.IO over WebSocket.
    let mut io = connect_raw(&gw.ws("/ws-visitor/?EIO=4&transport=websocket"), &[])
        .await
        .unwrap();
    let open = next_text(&mut io).await;
    assert!(open.starts_with('0'), "{open}");
    io.send(WsMessage::Text(
        format!("40{}", json!({"token": "sio-secret-6", "site": "default"})).into(),
    ))
    .await
    .unwrap();
    let _ = next_text(&mut io).await;
    io.close(None).await.unwrap();
    while io.next().await.is_some() {}
    let line = wait_for_line(&log, |l| l.contains("transport=socketio")).await;
    assert!(
        line.contains("\"GET /ws-visitor/ HTTP/1.1\" 101 "),
        "{line}"
    );
    assert!(line.contains("role=visitor reason=client_closed"), "{line}");

    // The main site's own WebSocket is a proxied request: one line when it closes.
    let mut site_ws = connect_raw(&gw.ws("/live/feed?token=site-ws-secret-7"), &[])
        .await
        .unwrap();
    site_ws.send(WsMessage::Text("hi".into())).await.unwrap();
    assert_eq!(next_text(&mut site_ws).await, "upstream echo: hi");
    site_ws.close(None).await.unwrap();
    while site_ws.next().await.is_some() {}
    let line = wait_for_line(&log, |l| l.contains("/live/feed")).await;
    assert!(line.contains("\"GET /live/feed HTTP/1.1\" 101 "), "{line}");
    assert_ne!(tail(&line)[1], "-", "{line}");

    // Every line is well formed, and no credential appears anywhere.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("access log:\n{text}");
    for line in &lines {
        assert!(
            line.contains(" - - [") && line.contains("+0000] \""),
            "{line}"
        );
    }
    for secret in [
        "query-secret-1",
        "header-secret-2",
        "cookie-secret-3",
        "health-secret-4",
        "not-a-valid-jwt-secret-5",
        "sio-secret-6",
        "site-ws-secret-7",
        "referer-secret-8",
        agent_token.as_str(),
        visitor_token.as_str(),
        "token=",
        "Bearer",
        "a message the log must not carry",
        common::SECRET,
    ] {
        assert!(
            !text.contains(secret),
            "{secret} in the access log:\n{text}"
        );
    }
    // Nothing per message: the four requests and four sessions above, no more.
    assert_eq!(lines.len(), 8, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reopens_the_log_file_for_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start(dir.path(), &[("CHAT_ACCESS_LOG", log.to_str().unwrap())]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "client addresses are not for everyone");
    reqwest::get(gw.http("/chat/health?before")).await.unwrap();
    wait_for_line(&log, |l| l.contains("/chat/health")).await;
    // What logrotate does: move the file, then signal.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(gw.pid() as i32, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        assert!(Instant::now() < deadline, "not reopened:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    reqwest::get(gw.http("/chat/nothing")).await.unwrap();
    let line = wait_for_line(&log, |l| l.contains("/chat/nothing")).await;
    assert!(line.contains("\" 404 "), "{line}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("/chat/nothing"), "{old}");
    assert!(gw.log().contains("reloaded: reopened"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_long_polling_session_gets_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_ACCESS_LOG", log.to_str().unwrap()),
            ("CHAT_POLL_SESSION_TTL_SECS", "1"),
            ("CHAT_POLL_HOLD_SECS", "1"),
        ],
    );
    let http = reqwest::Client::new();
    let opened: Value = http
        .post(gw.http("/ws-visitor/poll?site=default"))
        .header("User-Agent", UA)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = opened["sid"].as_str().unwrap().to_owned();
    let token = opened["events"][0]["visitor_token"]
        .as_str()
        .unwrap()
        .to_owned();
    http.get(gw.http(&format!("/ws-visitor/poll?sid={sid}&cursor=1")))
        .send()
        .await
        .unwrap();
    // No more GETs: the session expires after its TTL.
    let line = wait_for_line(&log, |l| l.contains("transport=polling")).await;
    assert!(
        line.contains(&format!(
            "\"POST /ws-visitor/poll HTTP/1.1\" 200 - \"-\" \"{UA}\" "
        )),
        "{line}"
    );
    assert!(
        line.ends_with("transport=polling role=visitor reason=peer_timeout"),
        "{line}"
    );
    let duration: f64 = tail(&line)[0].parse().unwrap();
    assert!(duration >= 1.0, "{line}");
    let text = std::fs::read_to_string(&log).unwrap();
    // The opening POST, the GET, and the session.
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("\"GET /ws-visitor/poll HTTP/1.1\" 200 "),
        "{text}"
    );
    assert!(!text.contains(&sid) && !text.contains(&token), "{text}");
}

async fn next_text(ws: &mut common::Ws) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("nothing within 10 s")
            .unwrap()
            .unwrap();
        if let WsMessage::Text(text) = msg {
            return text.as_str().to_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_on_stdout_parse_and_off_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _) = start_upstream().await;
    let upstream = format!("127.0.0.1:{upstream}");
    // The default destination is stdout.
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_UPSTREAM", &upstream),
            ("CHAT_ACCESS_LOG_FORMAT", "json"),
        ],
    );
    reqwest::Client::new()
        .get(gw.http("/shop/item?id=7&token=json-secret"))
        .header(
            "User-Agent",
            reqwest::header::HeaderValue::from_bytes(b"quote\" back\\slash\ttab \xC3\xA9").unwrap(),
        )
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = gw
            .output
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.starts_with("{\"time\"") && l.contains("/shop/item"))
            .cloned();
        if let Some(line) = found {
            break line;
        }
        assert!(Instant::now() < deadline, "no JSON line:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["kind"], "request");
    assert_eq!(v["client"], "127.0.0.1");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/shop/item");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_sent"], 24);
    assert_eq!(v["user_agent"], "quote\" back\\slash\ttab \u{e9}");
    assert!(v["request_time"].as_f64().unwrap() >= v["upstream_time"].as_f64().unwrap());
    assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(!gw.log().contains("json-secret"));
    gw.stop();

    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[("CHAT_UPSTREAM", &upstream), ("CHAT_ACCESS_LOG", "off")],
    );
    for path in ["/chat/health", "/off-check"] {
        reqwest::get(gw.http(path)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = gw.log();
    assert!(
        !log.contains("/off-check") && !log.contains("GET /chat/health"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_reading_stdout_stalls_nothing_and_drops_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let metrics_listen = format!("127.0.0.1:{}", common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .env("CHAT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("CHAT_DATA_DIR", dir.path())
        .env("CHAT_ADMIN_JWT_SECRET", common::SECRET)
        .env("CHAT_METRICS_LISTEN", &metrics_listen)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read up to SERVER_OK, as test harnesses and careless supervisors do, then never again
    // (the pipe stays open).
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("SERVER_OK") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no SERVER_OK");
    }
    let gw = GatewayPorts {
        port,
        metrics: metrics_listen,
    };
    // Enough long lines to fill the pipe (64 KiB) and the writer's queue (8192 lines).
    let agent = "x".repeat(400);
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url, agent) = (http.clone(), gw.url("/chat/nothing"), agent.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..650 {
                let resp = http
                    .get(&url)
                    .header("User-Agent", &agent)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 404);
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("requests stalled behind the access log")
            .unwrap();
    }
    let elapsed = started.elapsed();
    let health = tokio::time::timeout(Duration::from_secs(5), reqwest::get(gw.url("/chat/health")))
        .await
        .expect("the gateway still answers")
        .unwrap();
    assert_eq!(health.status(), 200);
    let text = reqwest::get(format!("http://{}/metrics", gw.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("chat_access_log_dropped_total "))
        .expect("chat_access_log_dropped_total is exported")
        .parse()
        .unwrap();
    eprintln!("10400 requests in {elapsed:?}, {dropped} access log lines dropped");
    assert!(dropped > 1000.0, "dropped {dropped}");
    let _ = child.kill();
    let _ = child.wait();
}

struct GatewayPorts {
    port: u16,
    metrics: String,
}

impl GatewayPorts {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}
