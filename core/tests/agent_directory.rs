//! The agent directory is written when an agent session opens, but not again for the same
//! record while this process wrote it lately: a second open with the same name and sites leaves
//! the stored record as it was (its `last_seen` too); a changed name or sites writes at once.
//! Runs against the real embedded store.

use chat_core::agents::AgentRecord;
use chat_core::model::{Agent, Principal, Sites};
use chat_core::service::{ChatService, ChatSession, ServiceConfig};
use chat_core::store::Store;
use chat_core::transport::TransportKind;
use chat_storage::EmbeddedStore;
use std::sync::Arc;
use std::time::Duration;

async fn open(service: &ChatService, name: &str, sites: Sites) -> ChatSession {
    service
        .open_session(
            Principal::Agent {
                agent: Agent {
                    id: "alice".into(),
                    name: name.into(),
                },
                sites,
            },
            None,
            TransportKind::WebSocket,
        )
        .await
        .expect("agent session")
}

async fn stored(store: &dyn Store) -> AgentRecord {
    store
        .agent("alice")
        .await
        .expect("read the directory")
        .expect("alice is in the directory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_record_is_written_once_and_a_change_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open_async(dir.path().join("chat.sqlite3"))
            .await
            .unwrap(),
    );
    let service = ChatService::new(store.clone(), ServiceConfig::default());

    let _first = open(&service, "Alice", Sites::All).await;
    let written = stored(store.as_ref()).await;
    assert_eq!(written.name, "Alice");
    // Later opens would move `last_seen` forward if they wrote (it is kept to the microsecond).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _second = open(&service, "Alice", Sites::All).await;
    assert_eq!(
        stored(store.as_ref()).await,
        written,
        "a second open with the same name and sites wrote again"
    );

    let _renamed = open(&service, "Alice B.", Sites::All).await;
    let renamed = stored(store.as_ref()).await;
    assert_eq!(renamed.name, "Alice B.");
    assert!(renamed.last_seen > written.last_seen);

    tokio::time::sleep(Duration::from_millis(20)).await;
    let shop = Sites::only(["shop".to_string()]).unwrap();
    let _moved = open(&service, "Alice B.", shop.clone()).await;
    let moved = stored(store.as_ref()).await;
    assert_eq!(moved.sites, shop);
    assert!(moved.last_seen > renamed.last_seen);
}
