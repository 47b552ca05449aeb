//! `chat-gateway check`'s certificates section against the real binary: a good pair, an expired
//! one and a key that does not fit, each with its finding and the exit status.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a self-signed pair for `name` valid until `until` (year).
fn pair(dir: &Path, name: &str, until: i32) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    format!("{}:{}", cert_path.display(), key_path.display())
}

fn check(dir: &Path, certs: &str) -> (i32, String) {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let env: HashMap<&str, String> = HashMap::from([
        ("CHAT_DATA_DIR", dir.join("data").display().to_string()),
        ("CHAT_ADMIN_JWT_SECRET", "x".repeat(40)),
        ("CHAT_HTTP_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("CHAT_TLS_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("CHAT_METRICS_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("CHAT_ALLOWED_ORIGINS", "https://www.example.com".into()),
        ("ADMIN_ALLOWED_ORIGINS", "https://admin.example.com".into()),
        ("CHAT_UPSTREAM", upstream.local_addr().unwrap().to_string()),
        ("CHAT_TLS_CERTS", certs.to_string()),
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .env_clear()
        .envs(&env)
        .arg("check")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn finding<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains("certificates:") && l.contains(needle))
        .unwrap_or_else(|| panic!("no certificates finding with {needle:?}:\n{out}"))
}

#[test]
fn good_expired_and_mismatched_certificates_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let good = pair(dir.path(), "good.example", 4000);
    let (code, out) = check(dir.path(), &good);
    assert_eq!(code, 0, "{out}");
    let ok = finding(&out, "good.example");
    assert!(
        ok.starts_with("ok") && ok.contains("key matches") && ok.contains("days left"),
        "{ok}"
    );

    let expired = pair(dir.path(), "old.example", 2021);
    let other = pair(dir.path(), "other.example", 4000);
    let other_key = other.split(':').nth(1).unwrap();
    let good_cert = good.split(':').next().unwrap();
    let mismatched = format!("{good_cert}:{other_key}");
    let (code, out) = check(dir.path(), &format!("{expired},{mismatched}"));
    assert_eq!(code, 1, "{out}");
    let old = finding(&out, "old.example");
    assert!(
        old.starts_with("error") && old.contains("EXPIRED") && old.contains("fix: renew"),
        "{old}"
    );
    let wrong = finding(&out, "does not fit");
    assert!(
        wrong.starts_with("error") && wrong.contains("fix:"),
        "{wrong}"
    );
    assert!(!out.contains("PRIVATE KEY"), "{out}");
}
