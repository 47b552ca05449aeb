//! The gateway on a Postgres that accepts only TLS: `sslmode=verify-full` with
//! `CHAT_DATABASE_CA` migrates, starts and chats; a wrong or missing CA stops it before `DB_OK`
//! with the reason.

mod common;

use chat_storage::test_support::TestPostgres;
use common::{Client, Gateway};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::json;
use std::process::Command;

fn run(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

#[tokio::test]
async fn gateway_on_postgres_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("chat test CA");
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, new_ca("some other CA").pem()).unwrap();

    let pg = TestPostgres::start_throwaway();
    pg.enable_tls(&server_cert.pem(), &server_key.serialize_pem());
    let url = pg.fresh_database().replacen("127.0.0.1", "localhost", 1) + "?sslmode=verify-full";
    let data_dir = dir.path().join("data");
    let data = data_dir.display().to_string();
    let ca = ca_file.display().to_string();
    let other_ca = other_ca_file.display().to_string();
    let listen = format!("127.0.0.1:{}", common::free_port());

    // A CA that did not sign the server's certificate: no DB_OK, the reason, a failed exit.
    let out = run(
        &[
            ("CHAT_DATABASE_URL", &url),
            ("CHAT_DATABASE_CA", &other_ca),
            ("CHAT_DATA_DIR", &data),
            ("CHAT_HTTP_LISTEN", &listen),
        ],
        &[],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("DB_OK"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "certificate is not signed by the CA in {other_ca}"
        )),
        "{stderr}"
    );

    // A CA file that is not there: refused before connecting.
    let out = run(
        &[
            ("CHAT_DATABASE_URL", &url),
            ("CHAT_DATABASE_CA", "/nonexistent/ca.pem"),
            ("CHAT_DATA_DIR", &data),
        ],
        &["migrate"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot use the CA file /nonexistent/ca.pem"),
        "{stderr}"
    );

    // The right CA: migrate, start, and a message is persisted and delivered.
    let env = [
        ("CHAT_DATABASE_URL", url.as_str()),
        ("CHAT_DATABASE_CA", ca.as_str()),
        ("CHAT_DATA_DIR", data.as_str()),
    ];
    let out = run(&env, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("MIGRATE_OK store=postgres"));

    let gw = Gateway::start(&data_dir, &[env[0], env[1]]);
    assert!(gw.log().contains("DB_OK store=postgres"), "{}", gw.log());
    let token = gw.agent_token("alice", "Alice");
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={token}")), &[]).await;
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let ack = visitor
        .request(json!({"type":"send","body":"over TLS"}))
        .await;
    assert_eq!(ack["message"]["seq"], 1, "{ack}");
    let seen = agent.wait_for(|e| e["type"] == "message").await;
    assert_eq!(seen["message"]["body"], "over TLS");
    gw.stop();
}
