//! Port 443 as Nginx did it: certificates chosen by SNI and replaced without a restart (on a
//! file change and on SIGHUP, a broken replacement refused). Port 80: `edge_port80.rs`.

mod common;

use common::tls_client::{connect, Tls};
use common::{header_value, metric, site, tls_gateway, Gateway};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

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
