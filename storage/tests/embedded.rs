//! Embedded-only behaviour: the file, its settings and its migrations.

use chat_core::store::Store;
use chat_storage::{EmbeddedStore, StoreConfig};

#[tokio::test]
async fn open_creates_directories_migrates_and_sets_durability() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/chat.db");
    let store = EmbeddedStore::open(&path).expect("open");
    assert!(path.exists());
    assert_eq!(store.path(), path);
    assert_eq!(
        store.schema_version().await.unwrap(),
        EmbeddedStore::expected_schema_version()
    );
    store.health().await.unwrap();
    drop(store);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: Vec<(i64, String)> = conn
        .prepare("SELECT version, name FROM chat_schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions[0], (1, "init".to_string()));
    assert_eq!(
        versions.last().map(|v| v.0),
        Some(EmbeddedStore::expected_schema_version())
    );
    drop(conn);

    // Reopening applies nothing again.
    let report = chat_storage::migrate(&StoreConfig::Embedded {
        path: path.clone(),
        batch: Default::default(),
    })
    .await
    .expect("migrate");
    assert!(report.applied.is_empty());
    assert_eq!(report.version, EmbeddedStore::expected_schema_version());
}

#[tokio::test]
async fn open_via_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::Embedded {
        path: dir.path().join("chat.db"),
        batch: Default::default(),
    };
    let store = chat_storage::open(&config).await.expect("open");
    assert_eq!(store.kind(), "embedded");
    store.health().await.unwrap();
    let report = chat_storage::migrate(&StoreConfig::Embedded {
        path: dir.path().join("other.db"),
        batch: Default::default(),
    })
    .await
    .unwrap();
    assert_eq!(report.applied[0].name, "init");
    assert_eq!(
        report.applied.last().map(|m| m.version),
        Some(EmbeddedStore::expected_schema_version())
    );
}

#[test]
fn open_fails_clearly_on_an_unusable_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    match EmbeddedStore::open(file.join("chat.db")) {
        Err(e) => assert!(
            e.to_string().contains("cannot open the embedded store"),
            "{e}"
        ),
        Ok(_) => panic!("opened a store under a regular file"),
    }
}

#[test]
fn debug_of_config_hides_passwords() {
    let config = StoreConfig::Postgres {
        url: "postgres://chat:hunter2@db/chat".into(),
        pool_size: 4,
        batch: Default::default(),
        ca: None,
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// Migration 12 (attachments) on a file that already holds messages, as an upgrade from
/// version 11 finds it (made here by undoing 12 to 14 by hand): they apply alone, and the
/// messages read back unchanged, with no attachment.
#[tokio::test]
async fn the_attachments_migration_keeps_existing_messages() {
    use chat_storage::test_support::chat::{visitor_conversation, visitor_text};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let store = EmbeddedStore::open(&path).expect("open");
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

    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE messages DROP COLUMN attachment; DROP TABLE attachments; \
         DELETE FROM chat_schema_migrations WHERE version IN (12, 13, 14);",
    )
    .unwrap();
    drop(conn);

    let config = StoreConfig::Embedded {
        path: path.clone(),
        batch: Default::default(),
    };
    // What an upgrade from version 11 applies.
    let upgrade = vec![
        chat_storage::MigrationInfo {
            version: 12,
            name: "attachments",
        },
        chat_storage::MigrationInfo {
            version: 13,
            name: "search_pending_list",
        },
        chat_storage::MigrationInfo {
            version: 14,
            name: "search_merged_in_background",
        },
    ];
    assert_eq!(
        chat_storage::schema_status(&config).await.unwrap().pending,
        upgrade
    );
    let report = chat_storage::migrate(&config).await.expect("migrate");
    assert_eq!(report.applied, upgrade);
    let store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(
        store.messages_after(conversation.id, 0, 10).await.unwrap(),
        vec![before]
    );
}
