//! `chat-gateway check` run as the real binary against good and broken setups: each broken one
//! gives its documented finding (docs/operations.md, "Checking a setup") and exit status
//! (0: no error, 1: an error, 2: the configuration does not parse).

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chat_storage::test_support::TestPostgres;
use common::{free_port, SECRET};
use hmac::{Hmac, Mac};
use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

/// A setup that should pass: embedded store, a long secret, origin lists, a main site that
/// accepts connections, free ports.
struct Setup {
    env: HashMap<String, String>,
    _upstream: TcpListener,
    dir: tempfile::TempDir,
}

impl Setup {
    fn good() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut env = HashMap::new();
        for (k, v) in [
            (
                "CHAT_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
            ("CHAT_ADMIN_JWT_SECRET", SECRET.to_string()),
            ("CHAT_HTTP_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("CHAT_METRICS_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("CHAT_ALLOWED_ORIGINS", "https://www.example.com".into()),
            ("ADMIN_ALLOWED_ORIGINS", "https://admin.example.com".into()),
            ("CHAT_UPSTREAM", upstream.local_addr().unwrap().to_string()),
        ] {
            env.insert(k.to_string(), v);
        }
        Setup {
            env,
            _upstream: upstream,
            dir,
        }
    }

    fn with(mut self, name: &str, value: &str) -> Setup {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Runs `check` with `args` (and `stdin`); returns the exit code and stdout.
    fn check(&self, args: &[&str], stdin: Option<&str>) -> (i32, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
            .env_clear()
            .envs(&self.env)
            .arg("check")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(pipe);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
    }
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

/// An HS256 JWT over `claims`, as a main site would sign it.
fn jwt(claims: serde_json::Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{signature}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn is_empty_or_missing(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn a_good_embedded_setup_passes_and_creates_nothing() {
    let setup = Setup::good();
    let token = jwt(
        serde_json::json!({"sub":"alice","name":"Alice","exp":now()+900,"iat":now()}),
        SECRET,
    );
    // The token from stdin, so it never shows in `ps`.
    let (code, out) = setup.check(&["--token", "-"], Some(&token));
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "ok    store:").contains("does not exist yet"),
        "{out}"
    );
    assert!(line(&out, "ok    secret:").contains("(32 bytes)"), "{out}");
    assert!(
        line(&out, "ok    token:").contains("verifies: agent \"alice\""),
        "{out}"
    );
    line(
        &out,
        "ok    origins: CHAT_ALLOWED_ORIGINS: https://www.example.com",
    );
    line(&out, "ok    upstream: main site");
    assert!(
        line(&out, "ok    ports:").contains("CHAT_HTTP_LISTEN"),
        "{out}"
    );
    line(
        &out,
        "ok    queues: CHAT_SESSION_QUEUE=1024 holds the store's largest burst (512 messages)",
    );
    line(&out, "CHECK OK errors=0 warnings=0");
    assert!(!out.contains(SECRET) && !out.contains(&token), "{out}");
    // Read-only: neither the store nor the development secret was created.
    assert!(is_empty_or_missing(&setup.dir.path().join("data")));

    // An existing embedded store at the binary's version.
    let migrate = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .env_clear()
        .envs(&setup.env)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(migrate.status.success());
    let (code, out) = setup.check(&[], None);
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "ok    store:").contains(&format!(
            "schema at version {}",
            chat_storage::EmbeddedStore::expected_schema_version()
        )),
        "{out}"
    );
}

#[test]
fn a_token_signed_with_another_secret_says_the_secrets_differ() {
    let setup = Setup::good();
    let token = jwt(
        serde_json::json!({"sub":"alice","exp":now()+900}),
        "the-main-site-has-another-secret-0123456789",
    );
    let (code, out) = setup.check(&["--token", &token], None);
    assert_eq!(code, 1, "{out}");
    let finding = line(&out, "error token:");
    assert!(
        finding.contains("secrets differ between the two .env files"),
        "{out}"
    );
    assert!(finding.contains("→ fix: copy the main site's"), "{out}");
    line(&out, "CHECK FAILED errors=1");
    assert!(!out.contains(&token), "{out}");
}

#[test]
fn an_expired_token_says_how_long_ago() {
    let setup = Setup::good();
    let token = jwt(
        serde_json::json!({"sub":"alice","exp":now()-120,"iat":now()-1020}),
        SECRET,
    );
    let (code, out) = setup.check(&["--token", &token], None);
    assert_eq!(code, 1, "{out}");
    let finding = line(&out, "error token:");
    assert!(finding.contains("the token expired 12"), "{out}");
    assert!(finding.contains("take a fresh token"), "{out}");
}

#[test]
fn an_unreachable_store_is_an_error_and_its_password_is_not_printed() {
    let closed = free_port();
    let setup = Setup::good().with(
        "CHAT_DATABASE_URL",
        &format!("postgres://chat:hunter2@127.0.0.1:{closed}/chat"),
    );
    let (code, out) = setup.check(&["--timeout-secs", "3"], None);
    assert_eq!(code, 1, "{out}");
    let finding = line(
        &out,
        "error store: postgres at postgres://chat:***@127.0.0.1:",
    );
    assert!(finding.contains("→ fix: start Postgres"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn an_unmigrated_postgres_says_run_migrate_then_passes() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let setup = Setup::good().with("CHAT_DATABASE_URL", &url);
    let (code, out) = setup.check(&[], None);
    assert_eq!(code, 1, "{out}");
    let finding = line(&out, "error store: postgres");
    assert!(
        finding.contains(&format!(
            "schema at version 0 but this gateway needs {}",
            chat_storage::PostgresStore::expected_schema_version()
        )),
        "{out}"
    );
    assert!(finding.contains("pending: 0001_init"), "{out}");
    assert!(finding.contains("→ fix: run chat-gateway migrate"), "{out}");

    let migrate = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .env_clear()
        .envs(&setup.env)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");
    let (code, out) = setup.check(&[], None);
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "ok    store: postgres").contains(&format!(
            "reachable, schema at version {}",
            chat_storage::PostgresStore::expected_schema_version()
        )),
        "{out}"
    );
}

#[test]
fn origins_that_never_match_are_errors_and_a_trailing_slash_a_warning() {
    let setup = Setup::good().with(
        "CHAT_ALLOWED_ORIGINS",
        "https://www.example.com/shop, https://shop.example.com",
    );
    let (code, out) = setup.check(&[], None);
    assert_eq!(code, 1, "{out}");
    let finding = line(&out, "error origins: CHAT_ALLOWED_ORIGINS:");
    assert!(finding.contains("has a path (/shop)"), "{out}");
    assert!(
        finding.contains("→ fix: write https://www.example.com"),
        "{out}"
    );
    line(
        &out,
        "ok    origins: CHAT_ALLOWED_ORIGINS: https://shop.example.com",
    );

    let setup = Setup::good().with("ADMIN_ALLOWED_ORIGINS", "https://admin.example.com/");
    let (code, out) = setup.check(&[], None);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "warn  origins: ADMIN_ALLOWED_ORIGINS:").contains("ends with a slash"));
    line(&out, "CHECK OK errors=0 warnings=1");
}

#[test]
fn a_port_taken_is_named_and_a_bad_value_exits_2() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let setup = Setup::good().with("CHAT_METRICS_LISTEN", &addr);
    let (code, out) = setup.check(&[], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "error ports:").starts_with(&format!(
            "error ports: {addr} (CHAT_METRICS_LISTEN) is taken by another process"
        )),
        "{out}"
    );

    let (code, out) = Setup::good()
        .with("CHAT_HTTP_LISTEN", "not-an-address")
        .check(&[], None);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("configuration error: CHAT_HTTP_LISTEN="),
        "{out}"
    );
}

/// A session queue smaller than one commit's burst closes agents who keep up (issue 12's peer
/// benchmark lost its Socket.IO agents that way at 16,000 msg/s with a queue of 256).
#[test]
fn a_session_queue_below_the_writers_burst_is_a_warning() {
    let setup = Setup::good()
        .with("CHAT_SESSION_QUEUE", "256")
        .with("CHAT_DB_WRITE_BATCH", "256");
    let (code, out) = setup.check(&[], None);
    assert_eq!(code, 0, "{out}");
    let finding = line(&out, "warn  queues: CHAT_SESSION_QUEUE=256");
    assert!(finding.contains("2 × CHAT_DB_WRITE_BATCH=256"), "{out}");
    assert!(
        finding.contains("→ fix: set CHAT_SESSION_QUEUE to at least 512"),
        "{out}"
    );
    line(&out, "CHECK OK errors=0 warnings=1");

    // Without batching, a commit publishes one message.
    let setup = Setup::good()
        .with("CHAT_SESSION_QUEUE", "256")
        .with("CHAT_DB_WRITE_BATCH", "1");
    let (code, out) = setup.check(&[], None);
    assert_eq!(code, 0, "{out}");
    line(
        &out,
        "ok    queues: CHAT_SESSION_QUEUE=256 holds the store's largest burst (2 messages)",
    );
}
