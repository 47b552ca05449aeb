//! The one conformance suite of [`Store`], run against every implementation: each check is a
//! generic function over a [`Fixture`] (which opens stores of one kind over the same data),
//! and `conformance_suite!` turns each into a `#[tokio::test]` per store.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::model::{
    Agent, Conversation, ConversationId, ConversationStatus, MessageKind, NewMessage, Role, Sender,
    Visitor, VisitorId,
};
use chat_core::store::{Appended, ConversationFilter, Store};
use chat_core::webhook::WebhookOutbox;
use chat_core::StoreError;
use chat_storage::test_support::TestPostgres;
use chat_storage::{BatchSettings, BatchingStore, EmbeddedStore, PostgresStore};
use chrono::Utc;

/// Opens stores of one kind, all over the same data.
#[async_trait]
pub trait Fixture: Send + Sync + Sized + 'static {
    /// The store under test.
    type S: Store;
    /// A fresh, empty, ready-to-use data set.
    async fn new() -> Self;
    /// A new store instance over this fixture's data (as a restarted gateway would open it).
    async fn open(&self) -> Self::S;
    /// [`Fixture::open`], writing the webhook events of the sites `outbox` wants.
    async fn open_with_outbox(&self, outbox: Arc<WebhookOutbox>) -> Self::S;
}

/// A temporary SQLite file.
pub struct EmbeddedFixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

#[async_trait]
impl Fixture for EmbeddedFixture {
    type S = EmbeddedStore;

    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/dir/chat.db");
        Self { _dir: dir, path }
    }

    async fn open(&self) -> EmbeddedStore {
        EmbeddedStore::open_async(self.path.clone())
            .await
            .expect("open embedded store")
    }

    async fn open_with_outbox(&self, outbox: Arc<WebhookOutbox>) -> EmbeddedStore {
        self.open().await.with_webhook_outbox(outbox)
    }
}

/// A fresh, migrated database on the process's shared test server.
pub struct PostgresFixture {
    _server: Arc<TestPostgres>,
    url: String,
}

#[async_trait]
impl Fixture for PostgresFixture {
    type S = PostgresStore;

    async fn new() -> Self {
        let (server, url) = tokio::task::spawn_blocking(|| {
            let server = TestPostgres::shared();
            let url = server.fresh_database();
            (server, url)
        })
        .await
        .expect("start test Postgres");
        let store = PostgresStore::connect(&url, 4).expect("connect");
        store.migrate().await.expect("migrate");
        Self {
            _server: server,
            url,
        }
    }

    async fn open(&self) -> PostgresStore {
        let store = PostgresStore::connect(&self.url, 16).expect("connect");
        store.check_schema().await.expect("schema is current");
        store
    }

    async fn open_with_outbox(&self, outbox: Arc<WebhookOutbox>) -> PostgresStore {
        self.open().await.with_webhook_outbox(outbox)
    }
}

/// Small batches and several writers, so that the concurrency checks cross batch boundaries
/// and writers race each other.
const BATCHING: BatchSettings = BatchSettings {
    max_batch: 8,
    writers: 3,
};

/// [`EmbeddedFixture`] behind the group-commit writer.
pub struct BatchedEmbeddedFixture(EmbeddedFixture);

#[async_trait]
impl Fixture for BatchedEmbeddedFixture {
    type S = BatchingStore<EmbeddedStore>;

    async fn new() -> Self {
        Self(EmbeddedFixture::new().await)
    }

    async fn open(&self) -> Self::S {
        BatchingStore::spawn(self.0.open().await, BATCHING)
    }

    async fn open_with_outbox(&self, outbox: Arc<WebhookOutbox>) -> Self::S {
        BatchingStore::spawn(self.0.open_with_outbox(outbox).await, BATCHING)
    }
}

/// [`PostgresFixture`] behind the group-commit writer.
pub struct BatchedPostgresFixture(PostgresFixture);

#[async_trait]
impl Fixture for BatchedPostgresFixture {
    type S = BatchingStore<PostgresStore>;

    async fn new() -> Self {
        Self(PostgresFixture::new().await)
    }

    async fn open(&self) -> Self::S {
        BatchingStore::spawn(self.0.open().await, BATCHING)
    }

    async fn open_with_outbox(&self, outbox: Arc<WebhookOutbox>) -> Self::S {
        BatchingStore::spawn(self.0.open_with_outbox(outbox).await, BATCHING)
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn visitor<S: Store>(store: &S, site: &str) -> Visitor {
    store
        .ensure_visitor(&Visitor {
            id: VisitorId::new_random(),
            site_id: site.to_string(),
            created_at: Utc::now(),
            profile: None,
        })
        .await
        .expect("ensure_visitor")
}

async fn conversation<S: Store>(store: &S, site: &str) -> Conversation {
    let v = visitor(store, site).await;
    store
        .create_conversation(site, v.id)
        .await
        .expect("create_conversation")
}

fn visitor_message(c: &Conversation, client_msg_id: Option<&str>, body: &str) -> NewMessage {
    NewMessage {
        attachment: None,
        conversation_id: c.id,
        client_msg_id: client_msg_id.map(str::to_string),
        sender: Sender {
            role: Role::Visitor,
            id: c.visitor_id.to_string(),
            name: None,
        },
        body: body.to_string(),
        kind: MessageKind::Text,
    }
}

fn agent() -> Agent {
    Agent {
        id: "agent-7".into(),
        name: "Ada Agent".into(),
    }
}

fn agent_message(c: &Conversation, client_msg_id: Option<&str>, body: &str) -> NewMessage {
    let a = agent();
    NewMessage {
        attachment: None,
        conversation_id: c.id,
        client_msg_id: client_msg_id.map(str::to_string),
        sender: Sender {
            role: Role::Agent,
            id: a.id,
            name: Some(a.name),
        },
        body: body.to_string(),
        kind: MessageKind::Text,
    }
}

async fn append<S: Store>(store: &S, m: NewMessage) -> Appended {
    store.append_message(m).await.expect("append_message")
}

fn inserted(a: Appended) -> chat_core::model::Message {
    match a {
        Appended::Inserted(m) => m,
        Appended::Duplicate(m) => panic!("expected Inserted, got Duplicate({m:?})"),
    }
}

async fn get<S: Store>(store: &S, id: ConversationId) -> Conversation {
    store
        .conversation(id)
        .await
        .expect("conversation")
        .expect("conversation exists")
}

async fn list<S: Store>(
    store: &S,
    site: &str,
    status: Option<ConversationStatus>,
    limit: u32,
) -> Vec<ConversationId> {
    store
        .list_conversations(&ConversationFilter {
            sites: Some(vec![site.to_string()]),
            status,
            limit,
        })
        .await
        .expect("list_conversations")
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Keeps `updated_at` values of successive writes apart.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

#[path = "conformance/attachments.rs"]
mod attachments;
#[path = "conformance/canned.rs"]
mod canned;
#[path = "conformance/import.rs"]
mod import;
#[path = "conformance/notes_agents.rs"]
mod notes_agents;
#[path = "conformance/read_state.rs"]
mod read_state;
#[path = "conformance/search.rs"]
mod search;
#[path = "conformance/visitor_context.rs"]
mod visitor_context;
#[path = "conformance/visitors.rs"]
mod visitors;
#[path = "conformance/waiting.rs"]
mod waiting;
#[path = "conformance/webhooks.rs"]
mod webhooks;

/// The checks, each generic over the fixture.
mod checks {
    pub use super::attachments::*;
    pub use super::canned::*;
    pub use super::import::*;
    pub use super::notes_agents::*;
    pub use super::read_state::*;
    pub use super::search::*;
    pub use super::visitor_context::*;
    pub use super::visitors::*;
    pub use super::waiting::*;
    pub use super::webhooks::*;
    use super::*;

    pub async fn health_and_kind<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        store.health().await.expect("health");
        assert!(["embedded", "postgres"].contains(&store.kind()));
    }

    pub async fn ensure_visitor_is_idempotent<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        let v = Visitor {
            id: VisitorId::new_random(),
            site_id: "site-a".into(),
            created_at: Utc::now(),
            profile: None,
        };
        let first = store.ensure_visitor(&v).await.expect("ensure_visitor");
        assert_eq!(first.id, v.id);
        assert_eq!(first.site_id, "site-a");
        assert_eq!(
            first.created_at.timestamp_micros(),
            v.created_at.timestamp_micros(),
            "created_at is kept to the microsecond"
        );
        assert_eq!(first.created_at.timestamp_subsec_nanos() % 1000, 0);
        let again = store
            .ensure_visitor(&Visitor {
                id: v.id,
                site_id: "site-b".into(),
                created_at: Utc::now() + chrono::Duration::seconds(10),
                profile: None,
            })
            .await
            .expect("ensure_visitor again");
        assert_eq!(again, first, "an existing visitor is returned unchanged");
    }

    pub async fn create_and_get_conversation<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        let v = visitor(&store, "site-a").await;
        let c = store
            .create_conversation("site-a", v.id)
            .await
            .expect("create_conversation");
        assert_eq!(c.site_id, "site-a");
        assert_eq!(c.visitor_id, v.id);
        assert_eq!(c.status, ConversationStatus::Open);
        assert_eq!(c.assignee, None);
        assert_eq!(c.last_seq, 0);
        assert_eq!(c.created_at, c.updated_at);
        assert_eq!(get(&store, c.id).await, c, "round-trips exactly");
        assert_eq!(
            store
                .conversation(ConversationId::new_random())
                .await
                .expect("conversation"),
            None
        );
        let other = store
            .create_conversation("site-a", v.id)
            .await
            .expect("second conversation");
        assert_ne!(other.id, c.id);
        match store
            .create_conversation("site-a", VisitorId::new_random())
            .await
        {
            Err(StoreError::NotFound(_)) => {}
            other => panic!("unknown visitor: expected NotFound, got {other:?}"),
        }
    }

    pub async fn open_conversation_of_returns_the_open_one<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        let v = visitor(&store, "site-a").await;
        let none = store
            .open_conversation_of("site-a", v.id)
            .await
            .expect("open_conversation_of");
        assert_eq!(none, None);
        let c1 = store.create_conversation("site-a", v.id).await.unwrap();
        assert_eq!(
            store.open_conversation_of("site-a", v.id).await.unwrap(),
            Some(c1.clone())
        );
        tick().await;
        let closed = store
            .set_status(c1.id, ConversationStatus::Closed)
            .await
            .unwrap();
        assert_eq!(closed.status, ConversationStatus::Closed);
        assert_eq!(
            store.open_conversation_of("site-a", v.id).await.unwrap(),
            None,
            "a closed conversation is not returned"
        );
        tick().await;
        let c2 = store.create_conversation("site-a", v.id).await.unwrap();
        tick().await;
        let c3 = store.create_conversation("site-a", v.id).await.unwrap();
        assert_eq!(
            store.open_conversation_of("site-a", v.id).await.unwrap(),
            Some(c3.clone()),
            "the most recently updated open conversation"
        );
        tick().await;
        append(&store, visitor_message(&c2, None, "hi")).await;
        let found = store
            .open_conversation_of("site-a", v.id)
            .await
            .unwrap()
            .expect("open conversation");
        assert_eq!(
            found.id, c2.id,
            "a message makes c2 the most recently updated"
        );
        assert_eq!(found.last_seq, 1);
        assert_eq!(
            store.open_conversation_of("site-b", v.id).await.unwrap(),
            None,
            "other sites do not see it"
        );
        let other_visitor = visitor(&store, "site-a").await;
        assert_eq!(
            store
                .open_conversation_of("site-a", other_visitor.id)
                .await
                .unwrap(),
            None
        );
    }

    pub async fn list_orders_filters_limits_and_isolates_sites<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        let site = unique("site");
        let other_site = unique("other");
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(conversation(&store, &site).await.id);
            tick().await;
        }
        let foreign = conversation(&store, &other_site).await;
        let [c1, c2, c3, c4] = [ids[0], ids[1], ids[2], ids[3]];
        assert_eq!(list(&store, &site, None, 10).await, vec![c4, c3, c2, c1]);
        tick().await;
        append(
            &store,
            NewMessage {
                attachment: None,
                conversation_id: c2,
                client_msg_id: None,
                sender: Sender {
                    role: Role::Visitor,
                    id: "v".into(),
                    name: None,
                },
                body: "bump".into(),
                kind: MessageKind::Text,
            },
        )
        .await;
        assert_eq!(list(&store, &site, None, 10).await, vec![c2, c4, c3, c1]);
        tick().await;
        store
            .set_status(c3, ConversationStatus::Closed)
            .await
            .unwrap();
        assert_eq!(list(&store, &site, None, 10).await, vec![c3, c2, c4, c1]);
        assert_eq!(
            list(&store, &site, Some(ConversationStatus::Open), 10).await,
            vec![c2, c4, c1]
        );
        assert_eq!(
            list(&store, &site, Some(ConversationStatus::Closed), 10).await,
            vec![c3]
        );
        assert_eq!(list(&store, &site, None, 2).await, vec![c3, c2]);
        assert_eq!(
            list(&store, &site, Some(ConversationStatus::Open), 1).await,
            vec![c2]
        );
        assert_eq!(list(&store, &site, None, 0).await, Vec::new());
        assert_eq!(list(&store, &other_site, None, 10).await, vec![foreign.id]);
        assert_eq!(list(&store, &unique("empty"), None, 10).await, Vec::new());
        // Listed values are the stored ones.
        let listed = store
            .list_conversations(&ConversationFilter {
                sites: Some(vec![site.clone()]),
                status: None,
                limit: 10,
            })
            .await
            .unwrap();
        for c in listed {
            assert_eq!(get(&store, c.id).await, c);
        }
        // Several sites at once, merged in one order; every site.
        tick().await;
        append(&store, visitor_message(&foreign, None, "newest")).await;
        let both = store
            .list_conversations(&ConversationFilter {
                sites: Some(vec![site.clone(), other_site.clone()]),
                status: None,
                limit: 10,
            })
            .await
            .unwrap();
        let both: Vec<ConversationId> = both.into_iter().map(|c| c.id).collect();
        assert_eq!(both, vec![foreign.id, c3, c2, c4, c1]);
        let every = store
            .list_conversations(&ConversationFilter {
                sites: None,
                status: None,
                limit: 500,
            })
            .await
            .unwrap();
        let every: Vec<ConversationId> = every.into_iter().map(|c| c.id).collect();
        assert_eq!(every[0], foreign.id, "every site, newest first");
        assert!(both.iter().all(|id| every.contains(id)));
    }

    pub async fn assign_sets_and_clears<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        let c = conversation(&store, "site-a").await;
        tick().await;
        let assigned = store.assign(c.id, Some(&agent())).await.expect("assign");
        assert_eq!(assigned.assignee, Some(agent()));
        assert!(
            assigned.updated_at > c.updated_at,
            "assigning updates updated_at"
        );
        assert_eq!(assigned.created_at, c.created_at);
        assert_eq!(get(&store, c.id).await, assigned);
        let cleared = store.assign(c.id, None).await.expect("unassign");
        assert_eq!(cleared.assignee, None);
        assert_eq!(get(&store, c.id).await, cleared);
        match store
            .assign(ConversationId::new_random(), Some(&agent()))
            .await
        {
            Err(StoreError::NotFound(_)) => {}
            other => panic!("assign on a missing conversation: expected NotFound, got {other:?}"),
        }
        match store.assign(ConversationId::new_random(), None).await {
            Err(StoreError::NotFound(_)) => {}
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    pub async fn set_status_changes_status<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        let c = conversation(&store, "site-a").await;
        tick().await;
        let closed = store
            .set_status(c.id, ConversationStatus::Closed)
            .await
            .expect("close");
        assert_eq!(closed.status, ConversationStatus::Closed);
        assert!(closed.updated_at > c.updated_at);
        assert_eq!(get(&store, c.id).await, closed);
        let reopened = store
            .set_status(c.id, ConversationStatus::Open)
            .await
            .expect("reopen");
        assert_eq!(reopened.status, ConversationStatus::Open);
        assert_eq!(get(&store, c.id).await, reopened);
        match store
            .set_status(ConversationId::new_random(), ConversationStatus::Closed)
            .await
        {
            Err(StoreError::NotFound(_)) => {}
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    pub async fn append_numbers_each_conversation_independently<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        let a = conversation(&store, "site-a").await;
        let b = conversation(&store, "site-a").await;
        let a1 = inserted(append(&store, visitor_message(&a, Some("a1"), "a one")).await);
        let b1 = inserted(append(&store, agent_message(&b, None, "b one")).await);
        let a2 = inserted(append(&store, agent_message(&a, Some("a2"), "a two")).await);
        let a3 = inserted(append(&store, visitor_message(&a, None, "a three")).await);
        let b2 = inserted(append(&store, visitor_message(&b, Some("b2"), "b two")).await);
        assert_eq!([a1.seq, a2.seq, a3.seq], [1, 2, 3]);
        assert_eq!([b1.seq, b2.seq], [1, 2]);
        assert_eq!(a2.sender, agent_message(&a, None, "").sender);
        assert_eq!(a2.client_msg_id.as_deref(), Some("a2"));
        assert_eq!(a3.client_msg_id, None);
        assert_eq!(a3.created_at.timestamp_subsec_nanos() % 1000, 0);
        assert!(a1.created_at <= a2.created_at && a2.created_at <= a3.created_at);
        let stored = store.messages_after(a.id, 0, 100).await.unwrap();
        assert_eq!(
            stored,
            vec![a1, a2, a3.clone()],
            "messages round-trip exactly"
        );
        assert_eq!(
            store.messages_after(b.id, 0, 100).await.unwrap(),
            vec![b1, b2.clone()]
        );
        let a_now = get(&store, a.id).await;
        assert_eq!(a_now.last_seq, 3);
        assert_eq!(
            a_now.updated_at, a3.created_at,
            "updated with the last message"
        );
        assert_eq!(get(&store, b.id).await.last_seq, 2);
        assert_eq!(get(&store, b.id).await.updated_at, b2.created_at);
    }

    pub async fn duplicate_client_msg_id_returns_the_original<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        let c = conversation(&store, "site-a").await;
        let original = inserted(append(&store, visitor_message(&c, Some("m-1"), "hello")).await);
        assert_eq!(original.seq, 1);
        let updated_before = get(&store, c.id).await.updated_at;
        tick().await;
        match append(&store, visitor_message(&c, Some("m-1"), "different body")).await {
            Appended::Duplicate(m) => {
                assert_eq!(m, original, "the original, seq and body included");
                assert_eq!(m.body, "hello");
            }
            Appended::Inserted(m) => panic!("duplicate inserted: {m:?}"),
        }
        let after = get(&store, c.id).await;
        assert_eq!(after.last_seq, 1, "no sequence number consumed");
        assert_eq!(after.updated_at, updated_before, "nothing written");
        assert_eq!(
            store.messages_after(c.id, 0, 100).await.unwrap(),
            vec![original.clone()]
        );
        // Scoped per conversation.
        let other = conversation(&store, "site-a").await;
        let elsewhere = inserted(append(&store, visitor_message(&other, Some("m-1"), "x")).await);
        assert_eq!(elsewhere.seq, 1);
        // Messages without a client_msg_id are never duplicates.
        let n1 = inserted(append(&store, visitor_message(&c, None, "same")).await);
        let n2 = inserted(append(&store, visitor_message(&c, None, "same")).await);
        assert_eq!([n1.seq, n2.seq], [2, 3]);
        let next = inserted(append(&store, visitor_message(&c, Some("m-2"), "next")).await);
        assert_eq!(next.seq, 4);
    }

    pub async fn concurrent_appends_have_no_gap<F: Fixture>(fx: &F) {
        let store = Arc::new(fx.open().await);
        let c = conversation(&*store, "site-a").await;
        let other = conversation(&*store, "site-a").await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = Arc::clone(&store);
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let cmid = (i % 2 == 0).then(|| format!("c-{i}"));
                let m = inserted(
                    store
                        .append_message(visitor_message(&c, cmid.as_deref(), &format!("m{i}")))
                        .await
                        .expect("append"),
                );
                (m.seq, m.body)
            }));
        }
        // Appends to another conversation at the same time do not interfere.
        let other_task = {
            let store = Arc::clone(&store);
            let other = other.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let m = inserted(
                        store
                            .append_message(visitor_message(&other, None, &format!("o{i}")))
                            .await
                            .expect("append other"),
                    );
                    assert_eq!(m.seq, i + 1);
                }
            })
        };
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.expect("task"));
        }
        other_task.await.expect("other task");
        let mut numbers: Vec<i64> = seqs.iter().map(|(s, _)| *s).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=50).collect::<Vec<_>>());
        let stored = store.messages_after(c.id, 0, 1000).await.unwrap();
        assert_eq!(
            stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=50).collect::<Vec<_>>()
        );
        for (seq, body) in &seqs {
            assert_eq!(&stored[(*seq - 1) as usize].body, body);
        }
        assert_eq!(get(&*store, c.id).await.last_seq, 50);
        assert_eq!(get(&*store, other.id).await.last_seq, 10);
    }

    pub async fn concurrent_duplicates_write_one_row<F: Fixture>(fx: &F) {
        let store = Arc::new(fx.open().await);
        let c = conversation(&*store, "site-a").await;
        inserted(append(&*store, visitor_message(&c, None, "before")).await);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = Arc::clone(&store);
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .append_message(visitor_message(&c, Some("same-id"), &format!("try {i}")))
                    .await
                    .expect("append never fails on a duplicate")
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("task"));
        }
        let winners: Vec<_> = results
            .iter()
            .filter(|r| matches!(r, Appended::Inserted(_)))
            .collect();
        assert_eq!(winners.len(), 1, "exactly one insert: {results:?}");
        let original = winners[0].message().clone();
        assert_eq!(original.seq, 2);
        for r in &results {
            assert_eq!(r.message(), &original);
        }
        let stored = store.messages_after(c.id, 0, 100).await.unwrap();
        assert_eq!(stored.len(), 2, "one row for the client_msg_id");
        assert_eq!(stored[1], original);
        assert_eq!(get(&*store, c.id).await.last_seq, 2);
        let next = inserted(append(&*store, visitor_message(&c, None, "after")).await);
        assert_eq!(next.seq, 3, "no gap after the race");
    }

    pub async fn a_failing_append_spares_concurrent_ones<F: Fixture>(fx: &F) {
        let store = Arc::new(fx.open().await);
        let c = conversation(&*store, "site-a").await;
        let mut missing = c.clone();
        missing.id = ConversationId::new_random();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = Arc::clone(&store);
            let target = if i % 3 == 0 {
                missing.clone()
            } else {
                c.clone()
            };
            tasks.push(tokio::spawn(async move {
                store
                    .append_message(visitor_message(&target, Some(&format!("f-{i}")), "x"))
                    .await
            }));
        }
        let mut ok = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.expect("task") {
                Ok(Appended::Inserted(_)) if i % 3 != 0 => ok += 1,
                Err(StoreError::NotFound(_)) if i % 3 == 0 => {}
                other => panic!("append {i}: unexpected {other:?}"),
            }
        }
        let stored = store.messages_after(c.id, 0, 100).await.unwrap();
        assert_eq!(stored.len(), ok);
        assert_eq!(
            stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=ok as i64).collect::<Vec<_>>()
        );
    }

    pub async fn messages_after_pages<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        let c = conversation(&store, "site-a").await;
        for i in 1..=25 {
            append(
                &store,
                visitor_message(&c, Some(&format!("p{i}")), &format!("{i}")),
            )
            .await;
        }
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            let page = store.messages_after(c.id, cursor, 10).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 10);
            cursor = page.last().map(|m| m.seq).unwrap();
            seen.extend(page);
        }
        assert_eq!(
            seen.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=25).collect::<Vec<_>>()
        );
        assert!(seen.iter().all(|m| m.body == m.seq.to_string()));
        let tail = store.messages_after(c.id, 20, 10).await.unwrap();
        assert_eq!(
            tail.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![21, 22, 23, 24, 25]
        );
        assert!(store.messages_after(c.id, 25, 10).await.unwrap().is_empty());
        assert!(store.messages_after(c.id, 0, 0).await.unwrap().is_empty());
        assert_eq!(store.messages_after(c.id, -5, 1).await.unwrap()[0].seq, 1);
        assert!(store
            .messages_after(ConversationId::new_random(), 0, 10)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn append_to_missing_conversation_is_not_found<F: Fixture>(fx: &F) {
        let store = fx.open().await;
        let ghost = Conversation {
            id: ConversationId::new_random(),
            site_id: "site-a".into(),
            visitor_id: VisitorId::new_random(),
            status: ConversationStatus::Open,
            assignee: None,
            last_seq: 0,
            visitor_last_seq: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            waiting: false,
        };
        for cmid in [None, Some("x")] {
            match store
                .append_message(visitor_message(&ghost, cmid, "hi"))
                .await
            {
                Err(StoreError::NotFound(_)) => {}
                other => panic!("expected NotFound, got {other:?}"),
            }
        }
        assert!(store
            .messages_after(ghost.id, 0, 10)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn data_survives_reopening<F: Fixture>(fx: &F) {
        let (v, c, messages) = {
            let store = fx.open().await;
            let v = visitor(&store, "site-a").await;
            let c = store.create_conversation("site-a", v.id).await.unwrap();
            let mut messages = Vec::new();
            messages.push(inserted(
                append(&store, visitor_message(&c, Some("r1"), "one")).await,
            ));
            messages.push(inserted(
                append(&store, agent_message(&c, Some("r2"), "two")).await,
            ));
            store.assign(c.id, Some(&agent())).await.unwrap();
            let c = store
                .set_status(c.id, ConversationStatus::Closed)
                .await
                .unwrap();
            (v, c, messages)
        };
        let store = fx.open().await;
        assert_eq!(get(&store, c.id).await, c);
        assert_eq!(store.messages_after(c.id, 0, 10).await.unwrap(), messages);
        assert_eq!(store.ensure_visitor(&v).await.unwrap(), v);
        match store
            .append_message(visitor_message(&c, Some("r1"), "retry after restart"))
            .await
            .unwrap()
        {
            Appended::Duplicate(m) => assert_eq!(m, messages[0]),
            other => panic!("expected Duplicate, got {other:?}"),
        }
        let third = inserted(append(&store, visitor_message(&c, Some("r3"), "three")).await);
        assert_eq!(third.seq, 3);
        let sites: BTreeSet<_> = store
            .list_conversations(&ConversationFilter {
                sites: Some(vec!["site-a".into()]),
                status: None,
                limit: 10,
            })
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert!(sites.contains(&c.id));
    }
}

macro_rules! conformance_suite {
    ($($check:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let fx = EmbeddedFixture::new().await;
                    checks::$check(&fx).await;
                }
            )*
        }

        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let fx = PostgresFixture::new().await;
                    checks::$check(&fx).await;
                }
            )*
        }

        mod embedded_batched {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let fx = BatchedEmbeddedFixture::new().await;
                    checks::$check(&fx).await;
                }
            )*
        }

        mod postgres_batched {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let fx = BatchedPostgresFixture::new().await;
                    checks::$check(&fx).await;
                }
            )*
        }
    };
}

conformance_suite!(
    health_and_kind,
    ensure_visitor_is_idempotent,
    create_and_get_conversation,
    open_conversation_of_returns_the_open_one,
    list_orders_filters_limits_and_isolates_sites,
    assign_sets_and_clears,
    set_status_changes_status,
    append_numbers_each_conversation_independently,
    duplicate_client_msg_id_returns_the_original,
    concurrent_appends_have_no_gap,
    concurrent_duplicates_write_one_row,
    messages_after_pages,
    a_failing_append_spares_concurrent_ones,
    append_to_missing_conversation_is_not_found,
    data_survives_reopening,
    import_twice_gives_the_same_rows,
    import_refuses_what_would_break_the_order,
    visitor_profiles_are_stored_and_never_downgraded,
    move_conversation_hands_it_to_a_visitor_of_the_same_site,
    visitor_context_latest_wins_and_keeps_first_seen,
    visitor_context_of_an_unknown_visitor_is_not_stored,
    read_positions_only_move_forward_and_stop_at_the_last_message,
    read_marks_of_many_conversations_in_one_call,
    marking_a_missing_conversation_is_not_found,
    unread_counts_visitor_messages_after_the_agents_position,
    unread_counts_stop_at_the_cap,
    notes_keep_their_kind_and_stay_out_of_visitor_reads,
    agent_directory_keeps_the_latest_and_lists_by_site,
    webhook_events_are_written_with_their_facts,
    webhook_events_of_batched_appends_are_written_with_them,
    webhook_events_are_leased_retried_finished_and_given_up,
    concurrent_webhook_claims_never_share_an_event,
    a_store_without_an_outbox_writes_no_webhook_event,
    canned_responses_crud_per_site,
    canned_responses_stop_at_the_site_limit,
    search_finds_text_people_and_status_within_sites,
    search_pages_with_a_cursor,
    search_treats_hostile_queries_as_plain_words,
    waiting_is_set_kept_and_cleared,
    attachments_keep_their_bytes_and_metadata,
    binding_an_attachment_sets_its_conversation_once,
    concurrent_binds_to_two_conversations_bind_one,
    messages_carry_their_attachment_through_every_read,
    concurrent_appends_keep_each_messages_attachment,
    unsent_uploads_are_deleted_once_old_and_sent_ones_kept,
    sweeping_races_sending_and_other_sweepers_safely,
);
