//! Port 80 as Nginx did it once TLS is configured: a 301 to HTTPS for everything but ACME
//! challenges (served from `CHAT_ACME_DIR` or proxied) and `/chat/health`; HSTS on TLS only.

mod common;

use common::{metric, metric_reaching, site, start_upstream, tls_gateway};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// Writes a self-signed pair for `names`.
fn write_pair(cert: &Path, key: &Path, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    std::fs::write(cert, made.cert.pem()).unwrap();
    std::fs::write(key, made.signing_key.serialize_pem()).unwrap();
}

/// A raw HTTP/1.1 request on the plain listener; returns the whole answer.
fn raw(port: u16, request: &str) -> String {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn port_80_redirects_all_but_acme_and_hsts_is_on_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let shop = site(dir.path(), "shop");
    write_pair(&shop.cert, &shop.key, &["shop.example"]);
    let acme = dir.path().join("acme");
    std::fs::create_dir(&acme).unwrap();
    std::fs::write(acme.join("tok_EN-123"), "tok_EN-123.thumbprint").unwrap();
    std::fs::write(dir.path().join("secret"), "do not serve").unwrap();
    let (upstream_port, heads) = start_upstream().await;
    let acme_dir = acme.display().to_string();
    let upstream = format!("127.0.0.1:{upstream_port}");
    let (gw, tls_port) = tls_gateway(
        dir.path(),
        &[&shop],
        &[
            ("CHAT_ACME_DIR", &acme_dir),
            ("CHAT_UPSTREAM", &upstream),
            ("CHAT_HSTS_MAX_AGE_SECS", "600"),
            ("CHAT_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    );
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let resp = plain
        .get(gw.http("/pricing?plan=pro"))
        .header("Host", "Shop.Example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 301);
    assert_eq!(
        resp.headers()["location"],
        format!("https://shop.example:{tls_port}/pricing?plan=pro").as_str()
    );
    assert!(resp.headers().get("strict-transport-security").is_none());
    let before = heads.lock().unwrap().len();

    // A Host that is not a host name is not redirected anywhere.
    let answer = raw(
        gw.port,
        "GET / HTTP/1.1\r\nHost: evil.example/x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // An absolute-form target naming another host never sends the client there (Pingora
    // refuses the mismatch, or the redirect keeps the request's Host).
    let answer = raw(
        gw.port,
        "GET http://evil.example/x HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
    );
    assert!(
        !answer.to_lowercase().contains("location: https://evil"),
        "{answer}"
    );

    let challenge = plain
        .get(gw.http("/.well-known/acme-challenge/tok_EN-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 200);
    assert_eq!(challenge.headers()["content-type"], "text/plain");
    assert_eq!(challenge.text().await.unwrap(), "tok_EN-123.thumbprint");
    for path in [
        "/.well-known/acme-challenge/../secret",
        "/.well-known/acme-challenge/..%2fsecret",
        "/.well-known/acme-challenge/%2e%2e/secret",
        "/.well-known/acme-challenge/missing",
    ] {
        let answer = raw(
            gw.port,
            &format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n"),
        );
        assert!(!answer.contains("do not serve"), "{path}: {answer}");
        assert!(!answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }

    // The gateway's own answers, not requests to the main site.
    assert!(
        metric(
            &gw,
            "chat_http_requests_total",
            &[("route", "https_redirect"), ("status", "301")]
        )
        .await
            >= 1.0
    );
    assert_eq!(
        metric_reaching(
            &gw,
            "chat_http_requests_total",
            &[("route", "https_redirect"), ("status", "400")],
            1.0
        )
        .await,
        1.0
    );
    assert_eq!(
        metric_reaching(
            &gw,
            "chat_http_requests_total",
            &[("route", "acme_challenge"), ("status", "200")],
            1.0
        )
        .await,
        1.0
    );

    // Local probes of health stay on plain HTTP.
    for probe in ["/chat/health", "/chat/health/live", "/chat/health/ready"] {
        let health = plain.get(gw.http(probe)).send().await.unwrap();
        assert_eq!(health.status(), 200, "{probe}");
        assert!(health.headers().get("strict-transport-security").is_none());
    }

    // TLS terminated by a trusted load balancer: proxied, not redirected.
    let behind = plain
        .get(gw.http("/behind-lb"))
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(behind.status(), 200);
    assert_eq!(behind.text().await.unwrap(), "hello from the main site");
    assert_eq!(
        heads.lock().unwrap().len(),
        before + 1,
        "only the load balancer's request went up"
    );

    // HSTS on TLS, for chat answers and proxied pages alike.
    let roots = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("shop.example", ([127, 0, 0, 1], tls_port).into())
        .build()
        .unwrap();
    for path in ["/chat/health", "/some/page"] {
        let resp = roots
            .get(format!("https://shop.example:{tls_port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["strict-transport-security"],
            "max-age=600",
            "{path}"
        );
    }
    // Compression over HTTP/2 too (the widget is a compressible chat asset).
    let widget = roots
        .get(format!(
            "https://shop.example:{tls_port}/chat/widget/widget.js"
        ))
        .header("Accept-Encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(widget.version(), reqwest::Version::HTTP_2);
    assert_eq!(widget.headers()["content-encoding"], "br");
    let body = widget.bytes().await.unwrap();
    let mut js = String::new();
    brotli::Decompressor::new(&body[..], 4096)
        .read_to_string(&mut js)
        .unwrap();
    assert!(js.len() > 1000, "{} bytes of widget", js.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_acme_dir_challenges_are_proxied_and_redirect_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    let shop = site(dir.path(), "shop");
    write_pair(&shop.cert, &shop.key, &["shop.example"]);
    let (upstream_port, heads) = start_upstream().await;
    let upstream = format!("127.0.0.1:{upstream_port}");
    let (gw, _) = tls_gateway(dir.path(), &[&shop], &[("CHAT_UPSTREAM", &upstream)]);
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let challenge = plain
        .get(gw.http("/.well-known/acme-challenge/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 200);
    assert_eq!(challenge.text().await.unwrap(), "hello from the main site");
    let head = heads.lock().unwrap().last().cloned().unwrap();
    assert!(
        head.starts_with("GET /.well-known/acme-challenge/abc "),
        "{head}"
    );
    assert_eq!(
        plain.get(gw.http("/other")).send().await.unwrap().status(),
        301
    );
    gw.stop();

    let dir = tempfile::tempdir().unwrap();
    let shop = site(dir.path(), "shop");
    write_pair(&shop.cert, &shop.key, &["shop.example"]);
    let (gw, _) = tls_gateway(
        dir.path(),
        &[&shop],
        &[("CHAT_UPSTREAM", &upstream), ("CHAT_HTTPS_REDIRECT", "off")],
    );
    let page = plain.get(gw.http("/other")).send().await.unwrap();
    assert_eq!(page.status(), 200, "redirect off: served as without TLS");
}
