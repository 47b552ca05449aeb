//! Postgres-only behaviour: migrations, schema checks, outages.

use std::time::{Duration, Instant};

use chat_core::model::NewMessage;
use chat_core::store::{Appended, Store};
use chat_core::StoreError;
use chat_storage::test_support::chat::{visitor_conversation, visitor_text};
use chat_storage::test_support::TestPostgres;
use chat_storage::{PostgresStore, StorageError, StoreConfig};

async fn fresh(server: &std::sync::Arc<TestPostgres>) -> String {
    let server = std::sync::Arc::clone(server);
    tokio::task::spawn_blocking(move || server.fresh_database())
        .await
        .expect("fresh database")
}

async fn shared() -> std::sync::Arc<TestPostgres> {
    tokio::task::spawn_blocking(TestPostgres::shared)
        .await
        .expect("test Postgres")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_schema_reports_not_migrated_until_migrated() {
    let server = shared().await;
    let url = fresh(&server).await;
    let store = PostgresStore::connect(&url, 2).expect("connect");
    assert_eq!(store.schema_version().await.unwrap(), 0);
    match store.check_schema().await {
        Err(StoreError::NotMigrated { found, expected }) => {
            assert_eq!(found, 0);
            assert_eq!(expected, PostgresStore::expected_schema_version());
            assert!(expected >= 1);
        }
        other => panic!("expected NotMigrated, got {other:?}"),
    }
    let config = StoreConfig::Postgres {
        url: url.clone(),
        pool_size: 2,
        batch: Default::default(),
        ca: None,
    };
    match chat_storage::open(&config).await {
        Err(e @ StorageError::Store(StoreError::NotMigrated { .. })) => {
            assert!(
                e.to_string().contains("chat-gateway migrate"),
                "the message tells the operator what to do: {e}"
            );
        }
        Err(e) => panic!("expected NotMigrated, got {e:?}"),
        Ok(_) => panic!("opened an unmigrated database"),
    }

    let report = store.migrate().await.expect("migrate");
    // Every migration, in increasing order, up to the one this binary needs (a version may be
    // missing while a branch's migration waits for an earlier one to merge).
    let versions: Vec<i64> = report.applied.iter().map(|m| m.version).collect();
    assert_eq!(versions.first(), Some(&1));
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert_eq!(
        versions.last(),
        Some(&PostgresStore::expected_schema_version())
    );
    assert_eq!(report.applied[0].name, "init");
    assert_eq!(report.version, PostgresStore::expected_schema_version());
    store.check_schema().await.expect("schema is current");
    let opened = chat_storage::open(&config)
        .await
        .expect("open after migrate");
    assert_eq!(opened.kind(), "postgres");
    opened.health().await.expect("health");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_safe_concurrently() {
    let server = shared().await;
    let url = fresh(&server).await;
    let stores: Vec<PostgresStore> = (0..4)
        .map(|_| PostgresStore::connect(&url, 2).expect("connect"))
        .collect();
    let tasks: Vec<_> = stores
        .iter()
        .cloned()
        .map(|s| tokio::spawn(async move { s.migrate().await }))
        .collect();
    let mut applied = 0;
    for t in tasks {
        let r = t.await.unwrap().expect("concurrent migrate succeeds");
        assert_eq!(r.version, PostgresStore::expected_schema_version());
        applied += r.applied.len();
    }
    let alone = PostgresStore::connect(&fresh(&server).await, 1).expect("connect");
    let every = alone.migrate().await.expect("migrate alone").applied.len();
    assert_eq!(applied, every, "each migration applied exactly once");
    let again = stores[0].migrate().await.expect("migrate again");
    assert!(again.applied.is_empty());
    assert_eq!(again.version, PostgresStore::expected_schema_version());
    let via_config = chat_storage::migrate(&StoreConfig::Postgres {
        url,
        pool_size: 1,
        batch: Default::default(),
        ca: None,
    })
    .await
    .expect("migrate via config");
    assert!(via_config.applied.is_empty());
    stores[0].check_schema().await.expect("current");
}

/// Migration 12 (attachments) on a database that already holds messages, as an upgrade from
/// version 11 finds it (made here by undoing 12 to 14 by hand): they apply alone, and the
/// messages read back unchanged, with no attachment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attachments_migration_keeps_existing_messages() {
    let server = shared().await;
    let url = fresh(&server).await;
    let store = PostgresStore::connect(&url, 1).expect("connect");
    store.migrate().await.expect("migrate");
    let (_, conversation) = visitor_conversation(&store).await;
    let before = store
        .append_message(visitor_text(
            &conversation,
            Some("m1"),
            "written before attachments",
        ))
        .await
        .unwrap()
        .message()
        .clone();
    drop(store);

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "ALTER TABLE messages DROP COLUMN attachment; DROP TABLE attachments; \
             ALTER INDEX messages_body_fts_idx RESET (gin_pending_list_limit); \
             DELETE FROM chat_schema_migrations WHERE version IN (12, 13, 14);",
        )
        .await
        .unwrap();

    // A new pool: the old one's prepared statements name the dropped column.
    let store = PostgresStore::connect(&url, 1).expect("connect");
    match store.check_schema().await {
        Err(StoreError::NotMigrated { found, expected }) => {
            assert_eq!((found, expected), (11, 14));
        }
        other => panic!("expected NotMigrated, got {other:?}"),
    }
    let report = store.migrate().await.expect("migrate");
    assert_eq!(
        report.applied,
        vec![
            chat_storage::MigrationInfo {
                version: 12,
                name: "attachments"
            },
            chat_storage::MigrationInfo {
                version: 13,
                name: "search_pending_list"
            },
            chat_storage::MigrationInfo {
                version: 14,
                name: "search_merged_in_background"
            }
        ]
    );
    assert_eq!(
        store.messages_after(conversation.id, 0, 10).await.unwrap(),
        vec![before]
    );
}

/// Migration 14 and the store's background merge: a store that does not merge leaves new
/// messages' words in the search index's pending list (of 16 MB, so no insert merges it here);
/// one that does empties it within a few seconds of its 256th message, without any insert
/// merging it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_index_pending_list_is_merged_in_the_background() {
    let server = shared().await;
    let url = fresh(&server).await;
    let store = PostgresStore::connect(&url, 2).expect("connect");
    store.migrate().await.expect("migrate");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let options: Vec<String> = client
        .query_one(
            "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE relname = 'messages_body_fts_idx'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(options, vec!["gin_pending_list_limit=16384".to_string()]);

    async fn append_some(store: &PostgresStore, words: &str) {
        let (_, conversation) = visitor_conversation(store).await;
        // More than the 256 messages a store inserts before it merges.
        for i in 0..300 {
            let body = format!("{words} number{i} word{i}x");
            store
                .append_message(visitor_text(&conversation, None, &body))
                .await
                .unwrap();
        }
    }
    /// Merges what is pending now; returns how many pending pages that removed.
    async fn merge(client: &tokio_postgres::Client) -> i64 {
        client
            .query_one(
                "SELECT gin_clean_pending_list('messages_body_fts_idx'::regclass)",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    append_some(&store, "left pending").await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        merge(&client).await > 0,
        "no merge, and yet nothing pending"
    );

    let store = store.clean_search_index_in_background();
    append_some(&store, "merged soon").await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        merge(&client).await,
        0,
        "the background merge left pages pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_while_postgres_is_down_and_recovers() {
    // Always a cluster of our own, even when CHAT_TEST_DATABASE_URL is set: we stop it.
    let server = tokio::task::spawn_blocking(TestPostgres::start_throwaway)
        .await
        .expect("throwaway cluster");
    assert!(server.owns_server());
    let server = std::sync::Arc::new(server);
    let url = fresh(&server).await;
    let store = PostgresStore::connect(&url, 4).expect("connect");
    store.migrate().await.expect("migrate");
    store.health().await.expect("healthy at first");
    let (_, conversation) = visitor_conversation(&store).await;
    let message = |cmid: &str| visitor_text(&conversation, Some(cmid), cmid);
    store.append_message(message("before")).await.unwrap();

    let s = std::sync::Arc::clone(&server);
    tokio::task::spawn_blocking(move || s.stop_server())
        .await
        .unwrap();
    let started = Instant::now();
    match store.health().await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("health while Postgres is down: expected Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "health fails fast ({:?})",
        started.elapsed()
    );
    match store.append_message(message("during")).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("append while Postgres is down: expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // Still unavailable on repeated calls, not hanging.
    for _ in 0..3 {
        assert!(matches!(
            store.health().await,
            Err(StoreError::Unavailable(_))
        ));
    }

    let s = std::sync::Arc::clone(&server);
    tokio::task::spawn_blocking(move || s.start_server())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.health().await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet healthy: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!(
                "the store did not recover within 30 s: {e}\n{}",
                server.server_log()
            ),
        }
    }
    // The same store works again, and nothing was lost or half-written.
    match store.append_message(message("before")).await.unwrap() {
        Appended::Duplicate(m) => assert_eq!(m.seq, 1),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    let after = store.append_message(message("after")).await.unwrap();
    assert_eq!(after.message().seq, 2, "the failed append left no gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_lazy_and_an_unreachable_server_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let store = PostgresStore::connect(&url, 2).expect("connect does no I/O");
    let started = Instant::now();
    match store.health().await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    match store.check_schema().await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    match chat_storage::open(&StoreConfig::Postgres {
        url,
        pool_size: 2,
        batch: Default::default(),
        ca: None,
    })
    .await
    {
        Err(StorageError::Store(StoreError::Unavailable(_))) => {}
        Err(e) => panic!("expected Unavailable, got {e:?}"),
        Ok(_) => panic!("opened an unreachable database"),
    }
}

#[test]
fn invalid_urls_are_rejected() {
    match PostgresStore::connect("postgres://[not a url", 2) {
        Err(StorageError::InvalidUrl(_)) => {}
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
}

#[test]
fn stop_server_is_refused_on_an_external_server() {
    if std::env::var("CHAT_TEST_DATABASE_URL").is_err() {
        // Owned cluster: stop/start are allowed; covered by the outage test.
        return;
    }
    let pg = TestPostgres::start();
    if pg.owns_server() {
        return;
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pg.stop_server()));
    assert!(result.is_err());
}

/// Issue 12: a message's bus notification is sent inside the transaction that commits it, and
/// only when another gateway process listens; with and without the group-commit writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_notified_in_their_commit_and_only_when_a_peer_listens() {
    use chat_core::bus::{Bus, BusEvent, Inbound};
    use chat_storage::BatchSettings;

    let server = shared().await;
    for max_batch in [256, 1] {
        let url = fresh(&server).await;
        PostgresStore::connect(&url, 1)
            .expect("connect")
            .migrate()
            .await
            .expect("migrate");
        let config = StoreConfig::Postgres {
            url: url.clone(),
            pool_size: 2,
            batch: BatchSettings {
                max_batch,
                ..Default::default()
            },
            ca: None,
        };
        let (store, bus) = chat_storage::open_with_bus(&config).await.expect("open");
        let bus = bus.expect("a bus with Postgres");
        assert!(bus.store_publishes_messages());
        let (visitor, conversation) = visitor_conversation(store.as_ref()).await;
        let message = |cmid: &str| visitor_text(&conversation, Some(cmid), cmid);
        // The peer's message carries an attachment, which the notification carries too.
        let with_attachment = |m: NewMessage| NewMessage {
            attachment: Some(Box::new(chat_core::attachment::AttachmentRef {
                id: uuid::Uuid::new_v4(),
                name: "shot.png".into(),
                content_type: "image/png".into(),
                size: 3,
            })),
            ..m
        };

        // A spy listening under this process's own listener's name: not a peer, so it hears
        // only what is sent for peers.
        let mut spy_config: tokio_postgres::Config = url.parse().unwrap();
        spy_config.application_name(format!(
            "{}{}",
            chat_storage::postgres::LISTENER_APP_PREFIX,
            bus.node_id()
        ));
        let (spy, mut connection) = spy_config.connect(tokio_postgres::NoTls).await.unwrap();
        let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(m)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                if let tokio_postgres::AsyncMessage::Notification(n) = m {
                    let _ = heard_tx.send(n.payload().to_string());
                }
            }
        });
        spy.batch_execute("LISTEN chat_events").await.unwrap();

        // Alone: committed, and nothing notified.
        let first = store.append_message(message("alone")).await.unwrap();
        assert!(matches!(first, Appended::Inserted(_)));
        assert!(
            tokio::time::timeout(Duration::from_millis(500), heard.recv())
                .await
                .is_err(),
            "a lone process notified its message (batch {max_batch})"
        );

        // A second process joins: the next message reaches it, notified by the commit. A
        // group commit that did not know of the peer sends the message's position (the peer
        // reads it from the store) and learns that a peer listens.
        let peer = chat_storage::PostgresBus::start(&url).await.expect("peer");
        let mut inbound = peer.take_inbound().expect("inbound");
        let Appended::Inserted(joined) = store.append_message(message("joined")).await.unwrap()
        else {
            panic!("not inserted");
        };
        match tokio::time::timeout(Duration::from_secs(10), inbound.recv()).await {
            Ok(Some(Inbound::Event(BusEvent::MessageRef {
                visitor_id,
                site_id,
                conversation_id,
                seq,
            }))) => {
                assert_eq!((visitor_id, site_id), (visitor.id, visitor.site_id.clone()));
                assert_eq!((conversation_id, seq), (joined.conversation_id, joined.seq));
            }
            Ok(Some(Inbound::Event(BusEvent::Message { message, .. }))) => {
                assert_eq!(message, joined, "batch {max_batch}");
            }
            other => panic!("expected the message on the peer's bus, got {other:?}"),
        }
        let payload = tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("the spy hears the notification")
            .unwrap();
        assert!(
            payload.contains("\"joined\"") || payload.contains("message_ref"),
            "{payload}"
        );
        // Then each message travels whole.
        let Appended::Inserted(second) = store
            .append_message(with_attachment(message("shared")))
            .await
            .unwrap()
        else {
            panic!("not inserted");
        };
        assert!(second.attachment.is_some());
        match tokio::time::timeout(Duration::from_secs(10), inbound.recv()).await {
            Ok(Some(Inbound::Event(BusEvent::Message {
                visitor_id,
                site_id,
                message,
            }))) => {
                assert_eq!(visitor_id, visitor.id);
                assert_eq!(
                    site_id, visitor.site_id,
                    "the site travels for agent routing"
                );
                assert_eq!(message, second, "batch {max_batch}");
            }
            other => panic!("expected the message on the peer's bus, got {other:?}"),
        }
        let payload = tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("the spy hears the notification")
            .unwrap();
        assert!(payload.contains("\"shared\""), "{payload}");
        assert!(
            heard.try_recv().is_err(),
            "one notification per message (batch {max_batch})"
        );
    }
}

/// A group commit whose duplicate check ran before another transaction committed the same
/// `client_msg_id` (a client's retry racing its original) stores nothing twice: it answers
/// with the original. A message beside it is numbered after what the other transaction
/// committed, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_racing_a_commit_of_its_key_answers_the_original() {
    use chat_storage::AppendBatch;

    let server = shared().await;
    let url = fresh(&server).await;
    let store = PostgresStore::connect(&url, 2).expect("connect");
    store.migrate().await.expect("migrate");
    let (_, conversation) = visitor_conversation(&store).await;
    let (_, other) = visitor_conversation(&store).await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);

    // The original, committed by another transaction that holds the conversation's row lock
    // while the batch starts.
    client
        .batch_execute(&format!(
            "BEGIN; UPDATE conversations SET last_seq = last_seq + 1 WHERE id = '{id}'; \
             INSERT INTO messages (conversation_id, seq, client_msg_id, sender_role, sender_id, \
             body, created_at, kind) VALUES ('{id}', 1, 'k', 'visitor', 'v', 'original', now(), \
             'text')",
            id = conversation.id.0
        ))
        .await
        .expect("the original, uncommitted");
    let batch = vec![
        visitor_text(&conversation, Some("k"), "the retry"),
        visitor_text(&other, Some("o"), "beside it"),
    ];
    let appending = tokio::spawn({
        let store = store.clone();
        async move { store.append_batch(batch).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!appending.is_finished(), "the batch waits for the row lock");
    client.batch_execute("COMMIT").await.expect("commit");
    let results = appending.await.expect("joined");
    match &results[0] {
        Ok(Appended::Duplicate(original)) => {
            assert_eq!((original.seq, original.body.as_str()), (1, "original"));
        }
        other => panic!("expected the original, got {other:?}"),
    }
    assert!(matches!(&results[1], Ok(Appended::Inserted(m)) if m.seq == 1));
    let after = store
        .append_message(visitor_text(&conversation, Some("next"), "next"))
        .await
        .expect("append");
    assert!(matches!(after, Appended::Inserted(m) if m.seq == 2));
}
