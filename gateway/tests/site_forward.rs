//! The main site's plain reads, forwarded by the gateway's own forwarder
//! (`gateway/src/site_forward.rs`), against a scripted main site: kept-alive upstream
//! connections, the headers of one hop, every way a body may be delimited, an idle connection
//! the main site closed, and answers that break off or never come.

mod common;

use common::{header_value, Gateway};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted main site does with one request head.
#[derive(Clone, Copy)]
enum Reply {
    /// This answer, then the next request on the same connection.
    Keep,
    /// This answer, then the connection is closed (without saying so in the answer).
    ThenClose,
    /// Nothing, ever.
    Silence,
}

/// A scripted main site: every request head is recorded, `script` says what to answer.
struct MainSite {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

async fn main_site(script: fn(&str) -> (Reply, Vec<u8>)) -> MainSite {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (seen, count) = (heads.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(head) = read_head(&mut stream, &mut buf).await else {
                        return;
                    };
                    seen.lock().unwrap().push(head.clone());
                    let (reply, answer) = script(&head);
                    match reply {
                        Reply::Silence => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        Reply::Keep | Reply::ThenClose => {
                            if stream.write_all(&answer).await.is_err() {
                                return;
                            }
                        }
                    }
                    if matches!(reply, Reply::ThenClose) {
                        return;
                    }
                }
            });
        }
    });
    MainSite {
        port,
        heads,
        connections,
    }
}

impl MainSite {
    /// The request line of every head received, in order.
    fn request_lines(&self) -> Vec<String> {
        let heads = self.heads.lock().unwrap();
        heads
            .iter()
            .filter_map(|h| h.lines().next().map(str::to_owned))
            .collect()
    }
}

/// Reads one head (up to the blank line) from `stream`, keeping what follows in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads one response with a `Content-Length` (or none, for `HEAD`) from `stream`.
async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> (String, Vec<u8>) {
    let head = read_head(stream, buf).await.expect("a response head");
    let length: usize = if head_only {
        0
    } else {
        header_value(&head, "content-length")
            .expect("a Content-Length")
            .parse()
            .unwrap()
    };
    while buf.len() < length {
        let mut chunk = [0u8; 65536];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the body ended early");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..length).collect();
    (head, body)
}

/// Sends `request` on a new connection and reads until the gateway closes it (at most 10 s).
async fn answer_until_closed(gw: &Gateway, request: &[u8]) -> String {
    let mut client = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    client.write_all(request).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

fn big_body() -> String {
    "0123456789abcdef".repeat(20_000)
}

fn answer(head: &str) -> (Reply, Vec<u8>) {
    let target = head.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    match path {
        "/page" => {
            let body = "hello from the main site";
            let a = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: only for the gateway\r\nX-Site: kept\r\n\r\n{body}",
                body.len()
            );
            (Reply::Keep, a.into_bytes())
        }
        "/big" => {
            let body = big_body();
            let a = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let mut bytes = a.into_bytes();
            if !head.starts_with("HEAD ") {
                bytes.extend_from_slice(body.as_bytes());
            }
            (Reply::Keep, bytes)
        }
        "/chunked" => (
            Reply::Keep,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n6\r\nhello \r\n12\r\nin three chunks!!!\r\n1\r\n.\r\n0\r\nX-Sum: 42\r\n\r\n".to_vec(),
        ),
        "/until-close" => (
            Reply::ThenClose,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil the main site closes".to_vec(),
        ),
        "/broken" => (
            Reply::ThenClose,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nonly ten..".to_vec(),
        ),
        "/huge-head" => {
            let a = format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
                "x".repeat(70 * 1024)
            );
            (Reply::Keep, a.into_bytes())
        }
        "/silent" => (Reply::Silence, Vec::new()),
        _ => (
            Reply::Keep,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
    }
}

/// A main site that closes every connection after one answer, without saying so.
fn answer_once(head: &str) -> (Reply, Vec<u8>) {
    let (_, bytes) = answer(head);
    (Reply::ThenClose, bytes)
}

fn gateway_for(site: &MainSite, dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> Gateway {
    let upstream = format!("127.0.0.1:{}", site.port);
    let mut env = vec![("CHAT_UPSTREAM", upstream.as_str())];
    env.extend_from_slice(extra);
    Gateway::start(dir.path(), &env)
}

#[tokio::test]
async fn reads_share_one_upstream_connection_and_lose_the_headers_of_their_hop() {
    let site = main_site(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_for(&site, &dir, &[]);
    let mut client = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..3 {
        client
            .write_all(
                b"GET /page?q=1 HTTP/1.1\r\nHost: www.shop.example\r\nConnection: keep-alive, X-Client-Hop\r\nX-Client-Hop: for the gateway\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nCookie: a=b\r\n\r\n",
            )
            .await
            .unwrap();
        let (head, body) = read_response(&mut client, &mut buf, false).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"hello from the main site");
        assert_eq!(header_value(&head, "x-site"), Some("kept"), "{head}");
        for hop in ["keep-alive", "x-hop"] {
            assert_eq!(
                header_value(&head, hop),
                None,
                "{hop} reached the client: {head}"
            );
        }
    }
    let heads = site.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 3);
    assert_eq!(
        site.connections.load(Ordering::SeqCst),
        1,
        "three reads, one upstream connection"
    );
    for head in &heads {
        assert!(head.starts_with("GET /page?q=1 HTTP/1.1\r\n"), "{head}");
        assert_eq!(header_value(head, "host"), Some("www.shop.example"));
        assert_eq!(header_value(head, "cookie"), Some("a=b"));
        assert_eq!(header_value(head, "x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(header_value(head, "x-real-ip"), Some("127.0.0.1"));
        assert_eq!(header_value(head, "x-forwarded-proto"), Some("http"));
        assert_eq!(
            header_value(head, "x-forwarded-host"),
            Some("www.shop.example")
        );
        for dropped in ["x-client-hop", "forwarded", "connection"] {
            assert_eq!(
                header_value(head, dropped),
                None,
                "{dropped} forwarded: {head}"
            );
        }
        assert!(!head.contains("6.6.6.6"), "{head}");
    }
}

#[tokio::test]
async fn bodies_arrive_whole_however_the_main_site_delimits_them() {
    let site = main_site(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_for(&site, &dir, &[]);
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = gw.http(path);
        async move {
            let res = http.get(url).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            res.text().await.unwrap()
        }
    };
    assert_eq!(get("/big").await, big_body());
    assert_eq!(get("/chunked").await, "hello in three chunks!!!.");
    assert_eq!(get("/until-close").await, "until the main site closes");
    // The connection after a chunked body is still in step.
    assert_eq!(get("/page").await, "hello from the main site");

    // HEAD: the length of the body, and no body (the next answer on the connection is whole).
    let mut client = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let mut buf = Vec::new();
    client
        .write_all(b"HEAD /big HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut client, &mut buf, true).await;
    assert_eq!(
        header_value(&head, "content-length"),
        Some(big_body().len().to_string().as_str()),
        "{head}"
    );
    client
        .write_all(b"GET /page HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut client, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"hello from the main site");
}

#[tokio::test]
async fn an_idle_connection_the_main_site_closed_is_replaced_without_an_error() {
    let site = main_site(answer_once).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_for(&site, &dir, &[]);
    let http = reqwest::Client::new();
    for _ in 0..4 {
        let res = http.get(gw.http("/page")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), "hello from the main site");
        // Time for the close to reach the gateway's idle connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(site.connections.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn an_answer_that_breaks_off_ends_the_client_connection_without_a_502() {
    let site = main_site(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_for(&site, &dir, &[]);
    let got = answer_until_closed(&gw, b"GET /broken HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    // What had come may or may not have left before the close (writes are gathered until a
    // flush); what never comes is a 502 page after a 200.
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(!got.contains("502"), "{got}");
}

#[tokio::test]
async fn a_silent_main_site_or_an_oversized_head_is_a_502() {
    let site = main_site(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_for(&site, &dir, &[("CHAT_UPSTREAM_READ_TIMEOUT_SECS", "1")]);
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let res = http.get(gw.http("/silent")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    assert!(res.text().await.unwrap().contains("ReadTimedout"));
    assert!(started.elapsed() < Duration::from_secs(10));

    let res = http.get(gw.http("/huge-head")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    // The gateway still serves the next read.
    let res = http.get(gw.http("/page")).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "hello from the main site");
}

#[tokio::test]
async fn pipelined_reads_are_answered_in_order() {
    let site = main_site(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_for(&site, &dir, &[]);
    let mut client = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    // Three requests in one write, as a pipelining client sends them.
    client
        .write_all(
            b"GET /page?n=1 HTTP/1.1\r\nHost: shop\r\n\r\nHEAD /big HTTP/1.1\r\nHost: shop\r\n\r\nGET /page?n=3 HTTP/1.1\r\nHost: shop\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let first = read_response(&mut client, &mut buf, false).await;
        let second = read_response(&mut client, &mut buf, true).await;
        let third = read_response(&mut client, &mut buf, false).await;
        (first, second, third)
    });
    let ((h1, b1), (h2, _), (h3, b3)) = read.await.expect("three answers");
    assert!(h1.starts_with("HTTP/1.1 200"), "{h1}");
    assert_eq!(b1, b"hello from the main site");
    assert_eq!(
        header_value(&h2, "content-length"),
        Some(big_body().len().to_string().as_str()),
        "{h2}"
    );
    assert!(h3.starts_with("HTTP/1.1 200"), "{h3}");
    assert_eq!(b3, b"hello from the main site");
    assert_eq!(
        site.request_lines(),
        [
            "GET /page?n=1 HTTP/1.1",
            "HEAD /big HTTP/1.1",
            "GET /page?n=3 HTTP/1.1"
        ]
    );
}

#[tokio::test]
async fn one_connection_goes_from_site_reads_to_chat_requests_and_back() {
    let site = main_site(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_for(&site, &dir, &[]);
    let mut client = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let mut buf = Vec::new();
    let requests: [(&[u8], &str); 4] = [
        (
            b"GET /page HTTP/1.1\r\nHost: shop\r\n\r\n",
            "hello from the main site",
        ),
        // The chat's own answer (Pingora's), then the main site's again.
        (
            b"GET /chat/health HTTP/1.1\r\nHost: shop\r\n\r\n",
            "\"status\"",
        ),
        (
            b"GET /page?again HTTP/1.1\r\nHost: shop\r\n\r\n",
            "hello from the main site",
        ),
        // A request with a body is the proxy's (Pingora's), on the same connection.
        (
            b"POST /page HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\nhello",
            "",
        ),
    ];
    for (request, expected) in requests {
        client.write_all(request).await.unwrap();
        let (head, body) = tokio::time::timeout(
            Duration::from_secs(10),
            read_response(&mut client, &mut buf, false),
        )
        .await
        .expect("an answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            String::from_utf8_lossy(&body).contains(expected),
            "{head}{}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(
        site.request_lines(),
        [
            "GET /page HTTP/1.1",
            "GET /page?again HTTP/1.1",
            "POST /page HTTP/1.1"
        ]
    );
}

#[tokio::test]
async fn a_head_sent_too_slowly_and_an_idle_connection_are_closed_on_time() {
    let site = main_site(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_for(
        &site,
        &dir,
        &[
            ("CHAT_HEADER_TIMEOUT_SECS", "1"),
            ("CHAT_KEEPALIVE_TIMEOUT_SECS", "1"),
        ],
    );
    // A byte every 200 ms never completes the head: closed by the 1 s total deadline, not kept
    // open by each byte.
    let mut slow = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let started = std::time::Instant::now();
    let mut closed = false;
    for byte in b"GET /page HTTP/1.1\r\nHost: shop\r\nX-Slow: "
        .iter()
        .cycle()
        .take(60)
    {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("an answer to half a head"),
            Err(_) => {}
        }
    }
    assert!(closed, "a head trickling in was kept open");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // After an answer, an idle kept-alive connection is closed after 1 s.
    let mut idle = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let mut buf = Vec::new();
    idle.write_all(b"GET /page HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut idle, &mut buf, false).await;
    assert_eq!(
        header_value(&head, "connection"),
        Some("keep-alive"),
        "{head}"
    );
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(4), idle.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed")
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn connection_close_is_honoured_and_said() {
    let site = main_site(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_for(&site, &dir, &[]);
    let request = b"GET /page HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n";
    let got = answer_until_closed(&gw, request).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(header_value(&got, "connection"), Some("close"), "{got}");
    assert!(got.ends_with("hello from the main site"), "{got}");
}
