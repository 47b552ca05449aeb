//! Postgres over TLS, against a throwaway cluster that accepts only TLS: a server certificate
//! for `localhost` signed by a CA made here, `hostssl` trust and `hostnossl` reject. One cluster
//! for the whole file, so the cases run in order in one test.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chat_core::bus::{Bus, BusEvent, Inbound};
use chat_core::store::Store;
use chat_core::StoreError;
use chat_storage::test_support::chat::{visitor_conversation, visitor_text};
use chat_storage::test_support::TestPostgres;
use chat_storage::{PostgresBus, PostgresStore, StorageError, StoreConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA (PEM file) and a server certificate for `localhost` it signed.
struct Pki {
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    server_cert: String,
    server_key: String,
}

fn make_pki(dir: &Path) -> Pki {
    let new_ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let ca = new_ca("chat test CA");
    let other_ca = new_ca("some other CA");
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other_ca_file = dir.join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca.pem()).unwrap();
    Pki {
        ca_file,
        other_ca_file,
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
    }
}

/// `url` (`postgres://postgres@127.0.0.1:PORT/DB`) on `host` with these query parameters.
fn url_on(url: &str, host: &str, params: &str) -> String {
    let url = url.replacen("127.0.0.1", host, 1);
    format!("{url}?{params}")
}

/// The error of the first use of a store on `url`.
async fn health_error(url: &str, ca: Option<&Path>) -> String {
    let store = PostgresStore::connect_with_ca(url, 1, ca).expect("valid settings");
    match store.health().await {
        Err(StoreError::Unavailable(message)) => message,
        Err(other) => panic!("expected Unavailable for {url}, got {other:?}"),
        Ok(()) => panic!("{url} connected but should have been refused"),
    }
}

async fn write_and_read(store: &dyn Store) {
    let (_, conversation) = visitor_conversation(store).await;
    store
        .append_message(visitor_text(&conversation, Some("m1"), "over TLS"))
        .await
        .expect("append");
    let read = store
        .messages_after(conversation.id, 0, 10)
        .await
        .expect("read");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].body, "over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let (server_cert, server_key) = (pki.server_cert.clone(), pki.server_key.clone());
    let (server, url) = tokio::task::spawn_blocking(move || {
        let server = TestPostgres::start_throwaway();
        server.enable_tls(&server_cert, &server_key);
        // Made over TLS: the default sslmode=prefer, which test_support uses, tries TLS first.
        let url = server.fresh_database();
        (Arc::new(server), url)
    })
    .await
    .expect("TLS cluster");
    assert!(url.starts_with("postgres://postgres@127.0.0.1:"), "{url}");
    let ca = pki.ca_file.display().to_string();
    let other_ca = pki.other_ca_file.display().to_string();

    // verify-full with the right CA (from the URL): migrate, open, write and read.
    let verify_full = url_on(
        &url,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    PostgresStore::connect(&verify_full, 2)
        .expect("connect")
        .migrate()
        .await
        .expect("migrate over verify-full");
    // ...and with the CA given as CHAT_DATABASE_CA would (StoreConfig's `ca`).
    let config = StoreConfig::Postgres {
        url: url_on(&url, "localhost", "sslmode=verify-full"),
        pool_size: 2,
        batch: Default::default(),
        ca: Some(pki.ca_file.clone()),
    };
    let store = chat_storage::open(&config)
        .await
        .expect("open over verify-full");
    write_and_read(store.as_ref()).await;

    // The bus: one process's event reaches another over two TLS connections each.
    let a = PostgresBus::start(&verify_full).await.expect("bus a");
    let b = PostgresBus::start_with_ca(
        &url_on(&url, "localhost", "sslmode=verify-full"),
        Some(&pki.ca_file),
    )
    .await
    .expect("bus b");
    let mut inbound = b.take_inbound().expect("inbound");
    let event = BusEvent::Presence {
        node: a.node_id().to_string(),
        agents_online: 3,
        sites: None,
    };
    a.publish(event.clone());
    match tokio::time::timeout(Duration::from_secs(10), inbound.recv()).await {
        Ok(Some(Inbound::Event(received))) => assert_eq!(received, event),
        other => panic!("expected the event on the other bus, got {other:?}"),
    }

    // Directly with the public connector: the session is TLS, and SCRAM with channel binding
    // (tls-server-end-point) works, as a managed database's password login does.
    let (config, tls) =
        chat_storage::postgres::tls::configure(&verify_full, None).expect("configure");
    let (client, connection) = config.connect(tls).await.expect("connect");
    tokio::spawn(connection);
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the session is encrypted");
    client
        .batch_execute(
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE chat_scram LOGIN PASSWORD 'scram secret'; \
             GRANT ALL ON SCHEMA public TO chat_scram",
        )
        .await
        .unwrap();
    let scram = url_on(
        &url.replacen("postgres@", "chat_scram:scram%20secret@", 1),
        "localhost",
        "sslmode=verify-full&channel_binding=require",
    );
    PostgresStore::connect_with_ca(&scram, 1, Some(&pki.ca_file))
        .unwrap()
        .health()
        .await
        .expect("SCRAM-SHA-256-PLUS with channel binding over verify-full");
    let wrong_password = scram.replace("scram%20secret", "wrong");
    let message = health_error(&wrong_password, Some(&pki.ca_file)).await;
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );

    // require: encrypted, certificate not checked (libpq).
    let require = url_on(&url, "127.0.0.1", "sslmode=require");
    PostgresStore::connect(&require, 1)
        .unwrap()
        .health()
        .await
        .expect("sslmode=require connects without a CA");

    // verify-ca accepts the certificate for `localhost` on 127.0.0.1: the chain is what counts.
    PostgresStore::connect_with_ca(
        &url_on(&url, "127.0.0.1", "sslmode=verify-ca"),
        1,
        Some(&pki.ca_file),
    )
    .unwrap()
    .health()
    .await
    .expect("verify-ca with the IP");

    // disable: the server refuses plain connections, and the message says so.
    let message = health_error(&url_on(&url, "127.0.0.1", "sslmode=disable"), None).await;
    assert!(
        message.contains("no encryption") && message.contains("sslmode=require"),
        "{message}"
    );

    // A wrong CA is refused, saying which CA the certificate is not signed by...
    let wrong_ca = url_on(
        &url,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    );
    let message = health_error(&wrong_ca, None).await;
    assert!(
        message.contains(&format!(
            "certificate is not signed by the CA in {other_ca}"
        )),
        "{message}"
    );
    // ...also under require, which checks the chain when a CA file is given (libpq).
    let message = health_error(&require, Some(&pki.other_ca_file)).await;
    assert!(message.contains("is not signed by the CA in"), "{message}");
    // ...and opening the store fails with it (the gateway exits before DB_OK).
    let config = StoreConfig::Postgres {
        url: wrong_ca.clone(),
        pool_size: 1,
        batch: Default::default(),
        ca: None,
    };
    match chat_storage::open(&config).await {
        Err(e @ StorageError::Store(StoreError::Unavailable(_))) => {
            assert!(e.to_string().contains("is not signed by the CA"), "{e}")
        }
        Err(e) => panic!("expected Unavailable, got {e:?}"),
        Ok(_) => panic!("opened a store whose server certificate is not from the CA"),
    }
    let bus_error = PostgresBus::start(&wrong_ca)
        .await
        .expect_err("the bus refuses a wrong CA too");
    assert!(
        bus_error.to_string().contains("is not signed by the CA in"),
        "{bus_error}"
    );

    // verify-full on 127.0.0.1 with a certificate for `localhost` only: refused, naming both.
    let message = health_error(
        &url_on(&url, "127.0.0.1", "sslmode=verify-full"),
        Some(&pki.ca_file),
    )
    .await;
    assert!(
        message.contains("server name 127.0.0.1 does not match certificate names [localhost]"),
        "{message}"
    );

    // A server without TLS: sslmode=require fails saying so; prefer falls back to plain.
    let plain = Arc::clone(&server);
    tokio::task::spawn_blocking(move || plain.disable_tls())
        .await
        .unwrap();
    let message = health_error(&require, None).await;
    assert!(
        message.contains("server does not support TLS but sslmode=require"),
        "{message}"
    );
    let message = health_error(&verify_full, None).await;
    assert!(
        message.contains("server does not support TLS but sslmode=verify-full"),
        "{message}"
    );
    PostgresStore::connect(&url, 1)
        .unwrap()
        .health()
        .await
        .expect("sslmode=prefer (the default) falls back to plain");
}
