//! Port 443 and 80 as Nginx did them: certificates chosen by SNI and replaced without a restart
//! (on a file change and on SIGHUP, a broken replacement refused), the plain listener's 301 to
//! HTTPS with ACME challenges let through, and HSTS on TLS only.

mod common;

use common::{header_value, metric, start_upstream, Gateway};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accepts any certificate: the tests look at which one was served.
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection (HTTP/1.1) to `port` asking for `sni`, and the leaf certificate served.
fn connect(port: u16, sni: &str) -> (Tls, Vec<u8>) {
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    let leaf = tls.conn.peer_certificates().unwrap()[0].as_ref().to_vec();
    (tls, leaf)
}

fn served(port: u16, sni: &str) -> Vec<u8> {
    connect(port, sni).1
}

/// One keep-alive request on `tls`; returns the status line.
fn get(tls: &mut Tls, path: &str) -> String {
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: keep-alive\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = header_value(&head, "content-length")
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    tls.read_exact(&mut body).unwrap();
    head.lines().next().unwrap().to_string()
}

/// Writes a self-signed pair for `names`; returns the leaf in DER.
fn write_pair(cert: &Path, key: &Path, names: &[&str]) -> Vec<u8> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    // Written aside then renamed, as certbot swaps its symlinks: never half a file.
    for (path, pem) in [
        (cert, made.cert.pem()),
        (key, made.signing_key.serialize_pem()),
    ] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    made.cert.der().to_vec()
}

fn wait_until(what: &str, gw: &Gateway, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Site {
    cert: PathBuf,
    key: PathBuf,
}

fn site(dir: &Path, name: &str) -> Site {
    Site {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    }
}

fn tls_gateway(dir: &Path, sites: &[&Site], extra: &[(&str, &str)]) -> (Gateway, u16) {
    let tls_port = common::free_port();
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

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_and_a_changed_file_is_served_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (shop, blog) = (site(dir.path(), "shop"), site(dir.path(), "blog"));
    let shop_v1 = write_pair(&shop.cert, &shop.key, &["shop.example"]);
    let blog_der = write_pair(&blog.cert, &blog.key, &["*.blog.example"]);
    let (gw, port) = tls_gateway(
        dir.path(),
        &[&shop, &blog],
        &[("CHAT_TLS_RELOAD_CHECK_SECS", "1")],
    );

    assert_eq!(served(port, "shop.example"), shop_v1);
    assert_eq!(served(port, "www.blog.example"), blog_der);
    assert_eq!(served(port, "unknown.example"), shop_v1, "the default");

    // A keep-alive connection opened before the renewal.
    let (mut kept, kept_leaf) = connect(port, "shop.example");
    assert!(get(&mut kept, "/chat/health").contains("200"));

    let shop_v2 = write_pair(&shop.cert, &shop.key, &["shop.example"]);
    wait_until("the renewed certificate is served", &gw, || {
        served(port, "shop.example") == shop_v2
    });
    assert_eq!(kept_leaf, shop_v1);
    assert!(
        get(&mut kept, "/chat/health").contains("200"),
        "the old connection still works"
    );
    assert!(
        metric(
            &gw,
            "chat_config_reloads_total",
            &[("part", "certificates"), ("result", "ok")]
        )
        .await
            >= 1.0
    );

    // A broken replacement is refused and the working certificate stays.
    std::fs::write(&shop.key, "-----BEGIN PRIVATE KEY-----\ngarbage\n").unwrap();
    let refused = || async {
        metric(
            &gw,
            "chat_config_reloads_total",
            &[("part", "certificates"), ("result", "refused")],
        )
        .await
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused().await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no refused reload:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(served(port, "shop.example"), shop_v2);
    assert_eq!(served(port, "www.blog.example"), blog_der);
    assert!(
        gw.log().contains("keeping the old certificates"),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_certificates_and_refuses_a_broken_set() {
    let dir = tempfile::tempdir().unwrap();
    let shop = site(dir.path(), "shop");
    let v1 = write_pair(&shop.cert, &shop.key, &["shop.example"]);
    let (gw, port) = tls_gateway(dir.path(), &[&shop], &[("CHAT_TLS_RELOAD_CHECK_SECS", "0")]);
    let (mut kept, _) = connect(port, "shop.example");
    assert!(get(&mut kept, "/chat/health").contains("200"));

    let v2 = write_pair(&shop.cert, &shop.key, &["shop.example"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        served(port, "shop.example"),
        v1,
        "no watcher: only SIGHUP reloads"
    );
    let hup = || unsafe { libc::kill(gw.pid() as i32, libc::SIGHUP) };
    assert_eq!(hup(), 0);
    wait_until("SIGHUP serves the new certificate", &gw, || {
        served(port, "shop.example") == v2
    });
    assert!(get(&mut kept, "/chat/health").contains("200"));

    // A key that does not fit the certificate: refused, the old pair stays.
    let other = site(dir.path(), "other");
    write_pair(&other.cert, &other.key, &["other.example"]);
    std::fs::copy(&other.key, &shop.key).unwrap();
    assert_eq!(hup(), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(
        &gw,
        "chat_config_reloads_total",
        &[("part", "certificates"), ("result", "refused")],
    )
    .await
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no refused reload:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(served(port, "shop.example"), v2);
}

/// certbot's layout: `archive/<name>/fullchainN.pem` + `privkeyN.pem`, and `live/<name>/`
/// symlinks to the newest; a renewal writes `N+1` and moves the symlinks.
fn certbot_issue(root: &Path, name: &str, n: u32, hosts: &[&str]) -> Vec<u8> {
    let archive = root.join("archive").join(name);
    let live = root.join("live").join(name);
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    let cert = archive.join(format!("fullchain{n}.pem"));
    let key = archive.join(format!("privkey{n}.pem"));
    let der = write_pair(&cert, &key, hosts);
    for (link, target) in [("fullchain.pem", &cert), ("privkey.pem", &key)] {
        let tmp = live.join(format!("{link}.new"));
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        std::fs::rename(&tmp, live.join(link)).unwrap();
    }
    der
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certbot_live_directory_is_followed_through_renewals_and_new_sites() {
    let dir = tempfile::tempdir().unwrap();
    let letsencrypt = dir.path().join("letsencrypt");
    let shop_v1 = certbot_issue(&letsencrypt, "shop.example", 1, &["shop.example"]);
    let tls_port = common::free_port();
    let gw = Gateway::start(
        dir.path(),
        &[
            (
                "CHAT_TLS_CERT_DIR",
                &letsencrypt.join("live").display().to_string(),
            ),
            ("CHAT_TLS_LISTEN", &format!("127.0.0.1:{tls_port}")),
            ("CHAT_TLS_RELOAD_CHECK_SECS", "1"),
        ],
    );
    assert_eq!(served(tls_port, "shop.example"), shop_v1);

    let shop_v2 = certbot_issue(&letsencrypt, "shop.example", 2, &["shop.example"]);
    wait_until("the renewal is served", &gw, || {
        served(tls_port, "shop.example") == shop_v2
    });
    let blog = certbot_issue(&letsencrypt, "blog.example", 1, &["blog.example"]);
    wait_until("a new site's certificate is served", &gw, || {
        served(tls_port, "blog.example") == blog
    });
    assert_eq!(served(tls_port, "shop.example"), shop_v2);
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
        metric(
            &gw,
            "chat_http_requests_total",
            &[("route", "https_redirect"), ("status", "400")]
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &gw,
            "chat_http_requests_total",
            &[("route", "acme_challenge"), ("status", "200")]
        )
        .await,
        1.0
    );

    // Local probes of health stay on plain HTTP.
    let health = plain.get(gw.http("/chat/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().get("strict-transport-security").is_none());

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
