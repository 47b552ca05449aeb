//! Compression of the main site's responses (brotli preferred, gzip otherwise) when the main
//! site did not compress, and `X-Real-IP` for the main site.

mod common;

use common::{header_value, Gateway};
use std::io::Read;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A page big and repetitive enough to be worth compressing.
fn page() -> String {
    (0..200)
        .map(|i| format!("<p>line {i} of the main site's page</p>\n"))
        .collect()
}

/// A main site answering by path: `/page.html` (text/html, with a length), `/chunked.js`
/// (chunked JavaScript), `/small.txt`, `/already.html` (already gzip-encoded by the main site),
/// `/photo.png`; records request heads.
async fn start_site() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    seen.lock().unwrap().push(head.clone());
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let body = page();
                    let answer = match path.as_str() {
                        "/chunked.js" => {
                            let js = format!("console.log({:?});", body);
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/javascript\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{js}\r\n0\r\n\r\n",
                                js.len()
                            )
                            .into_bytes()
                        }
                        "/small.txt" => {
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nsmall"
                                .to_vec()
                        }
                        "/already.html" => {
                            let mut out = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                                gzip(body.as_bytes()).len()
                            )
                            .into_bytes();
                            out.extend(gzip(body.as_bytes()));
                            out
                        }
                        "/photo.png" => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .into_bytes(),
                        _ => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nETag: \"v1\"\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .into_bytes(),
                    };
                    if stream.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, heads)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn gunzip(data: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn unbrotli(data: &[u8]) -> String {
    let mut out = String::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_string(&mut out)
        .unwrap();
    out
}

struct Fetched {
    status: u16,
    encoding: Option<String>,
    vary: Option<String>,
    etag: Option<String>,
    body: Vec<u8>,
}

async fn fetch(gw: &Gateway, path: &str, accept: Option<&str>, head: bool) -> Fetched {
    let client = reqwest::Client::new();
    let mut req = if head {
        client.head(gw.http(path))
    } else {
        client.get(gw.http(path))
    };
    if let Some(accept) = accept {
        req = req.header("Accept-Encoding", accept);
    }
    let resp = req.send().await.unwrap();
    let h = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    Fetched {
        status: resp.status().as_u16(),
        encoding: h("content-encoding"),
        vary: h("vary"),
        etag: h("etag"),
        body: resp.bytes().await.unwrap().to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_main_sites_responses_are_compressed_when_it_did_not() {
    let (site_port, heads) = start_site().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[("CHAT_UPSTREAM", &format!("127.0.0.1:{site_port}"))],
    );
    let page = page();

    let br = fetch(&gw, "/page.html", Some("gzip, deflate, br"), false).await;
    assert_eq!(br.status, 200);
    assert_eq!(br.encoding.as_deref(), Some("br"));
    assert_eq!(unbrotli(&br.body), page);
    assert!(br.body.len() < page.len() / 4, "{} bytes", br.body.len());
    assert_eq!(br.vary.as_deref(), Some("Accept-Encoding"));
    assert_eq!(br.etag.as_deref(), Some("W/\"v1\""));

    let gz = fetch(&gw, "/page.html", Some("gzip"), false).await;
    assert_eq!(gz.encoding.as_deref(), Some("gzip"));
    assert_eq!(gunzip(&gz.body), page);

    let js = fetch(&gw, "/chunked.js", Some("br;q=0, gzip"), false).await;
    assert_eq!(js.encoding.as_deref(), Some("gzip"));
    assert!(gunzip(&js.body).starts_with("console.log("));

    // Not compressed: no Accept-Encoding, a small body, already encoded, an image, HEAD.
    let plain = fetch(&gw, "/page.html", None, false).await;
    assert_eq!(plain.encoding, None);
    assert_eq!(String::from_utf8(plain.body).unwrap(), page);
    assert_eq!(
        plain.vary.as_deref(),
        Some("Accept-Encoding"),
        "caches must vary"
    );
    let small = fetch(&gw, "/small.txt", Some("br, gzip"), false).await;
    assert_eq!((small.encoding, small.body), (None, b"small".to_vec()));
    let already = fetch(&gw, "/already.html", Some("gzip, br"), false).await;
    assert_eq!(already.encoding.as_deref(), Some("gzip"));
    assert_eq!(
        gunzip(&already.body),
        page,
        "passed through, not encoded twice"
    );
    let png = fetch(&gw, "/photo.png", Some("br, gzip"), false).await;
    assert_eq!(png.encoding, None);
    assert_eq!(png.body.len(), page.len());
    let head = fetch(&gw, "/page.html", Some("br"), true).await;
    assert_eq!(head.encoding, None);

    // The widget (a chat asset) is compressed too; chat API answers are not.
    let widget = fetch(&gw, "/chat/widget/widget.js", Some("br"), false).await;
    assert_eq!(widget.status, 200);
    assert_eq!(widget.encoding.as_deref(), Some("br"));
    assert!(!unbrotli(&widget.body).is_empty());

    // The main site is told who the client is.
    let last = heads.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        header_value(&last, "x-real-ip"),
        Some("127.0.0.1"),
        "{last}"
    );

    // CHAT_COMPRESSION=off: sent as the main site sent it.
    gw.stop();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_UPSTREAM", &format!("127.0.0.1:{site_port}")),
            ("CHAT_COMPRESSION", "off"),
        ],
    );
    let off = fetch(&gw, "/page.html", Some("br, gzip"), false).await;
    assert_eq!(off.encoding, None);
    assert_eq!(off.body.len(), page.len());
}
