//! Conformance checks of read receipts: `Store::mark_read`, `Store::read_marks` and
//! `Store::list_conversations_for_agent` (the `read` and `list_conversations` commands), run
//! against every store by `conformance_suite!`.

use super::*;
use chat_core::read_receipts::{AgentListing, MarkedRead, Reader, UNREAD_CAP};

fn alice() -> Reader {
    Reader::Agent("alice".into())
}

async fn mark<S: Store>(store: &S, c: &Conversation, reader: &Reader, seq: i64) -> MarkedRead {
    store.mark_read(c.id, reader, seq).await.expect("mark_read")
}

async fn listed<S: Store>(store: &S, site: &str, agent: &str) -> Vec<AgentListing> {
    store
        .list_conversations_for_agent(
            &ConversationFilter {
                sites: Some(vec![site.to_string()]),
                status: None,
                limit: 100,
            },
            agent,
        )
        .await
        .expect("list_conversations_for_agent")
}

async fn listing_of<S: Store>(store: &S, c: &Conversation, agent: &str) -> AgentListing {
    listed(store, &c.site_id, agent)
        .await
        .into_iter()
        .find(|l| l.conversation.id == c.id)
        .expect("listed")
}

pub async fn read_positions_only_move_forward_and_stop_at_the_last_message<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let c = conversation(&store, "site-a").await;
    // Nothing to read yet: nothing is stored.
    assert_eq!(
        mark(&store, &c, &Reader::Visitor, 5).await,
        MarkedRead {
            seq: 0,
            advanced: false
        }
    );
    for i in 0..4 {
        append(&store, visitor_message(&c, None, &format!("m{i}"))).await;
    }
    assert_eq!(
        mark(&store, &c, &Reader::Visitor, 2).await,
        MarkedRead {
            seq: 2,
            advanced: true
        }
    );
    // Backwards or the same: unchanged, not advanced.
    for seq in [2, 1, 0] {
        assert_eq!(
            mark(&store, &c, &Reader::Visitor, seq).await,
            MarkedRead {
                seq: 2,
                advanced: false
            }
        );
    }
    // Past the last message: clamped to it.
    assert_eq!(
        mark(&store, &c, &Reader::Visitor, 1_000).await,
        MarkedRead {
            seq: 4,
            advanced: true
        }
    );
    assert_eq!(
        mark(&store, &c, &Reader::Visitor, 1_000).await,
        MarkedRead {
            seq: 4,
            advanced: false
        }
    );
    // Each agent has its own position, apart from the visitor's.
    assert_eq!(mark(&store, &c, &alice(), 1).await.seq, 1);
    assert_eq!(
        mark(&store, &c, &Reader::Agent("bob".into()), 3).await.seq,
        3
    );
    assert_eq!(mark(&store, &c, &alice(), 0).await.seq, 1);

    let marks = store.read_marks(&[c.id]).await.expect("read_marks");
    assert_eq!(marks.len(), 1);
    assert_eq!(
        (
            marks[0].conversation_id,
            marks[0].visitor_seq,
            marks[0].agent_seq
        ),
        (c.id, 4, 3),
        "the visitor's position and the furthest agent's"
    );
    // Survives reopening (as after a restart).
    let reopened = fx.open().await;
    assert_eq!(
        mark(&reopened, &c, &alice(), 1).await,
        MarkedRead {
            seq: 1,
            advanced: false
        }
    );
}

pub async fn read_marks_of_many_conversations_in_one_call<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let read = conversation(&store, "site-a").await;
    let unread = conversation(&store, "site-a").await;
    append(&store, visitor_message(&read, None, "hi")).await;
    append(&store, agent_message(&read, None, "hello")).await;
    append(&store, visitor_message(&unread, None, "anyone?")).await;
    mark(&store, &read, &alice(), 2).await;
    let marks = store
        .read_marks(&[read.id, unread.id, ConversationId::new_random()])
        .await
        .expect("read_marks");
    assert_eq!(
        marks.len(),
        1,
        "only conversations with a position: {marks:?}"
    );
    assert_eq!((marks[0].visitor_seq, marks[0].agent_seq), (0, 2));
    assert!(store.read_marks(&[]).await.expect("empty").is_empty());
}

pub async fn marking_a_missing_conversation_is_not_found<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    match store
        .mark_read(ConversationId::new_random(), &Reader::Visitor, 1)
        .await
    {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

pub async fn unread_counts_visitor_messages_after_the_agents_position<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let site = unique("site");
    let c = conversation(&store, &site).await;
    let quiet = conversation(&store, &site).await;
    append(&store, visitor_message(&c, None, "one")).await; // 1
    append(&store, visitor_message(&c, None, "two")).await; // 2
    append(&store, agent_message(&c, None, "reply")).await; // 3: agents' messages never count
    append(&store, visitor_message(&c, None, "three")).await; // 4

    let before = listing_of(&store, &c, "alice").await;
    assert_eq!(before.conversation, get(&store, c.id).await);
    assert_eq!(
        (
            before.read.unread,
            before.read.read_seq,
            before.read.visitor_read_seq
        ),
        (3, 0, 0)
    );
    let q = listing_of(&store, &quiet, "alice").await;
    assert_eq!(q.read.unread, 0);

    mark(&store, &c, &alice(), 2).await;
    mark(&store, &c, &Reader::Visitor, 3).await;
    let after = listing_of(&store, &c, "alice").await;
    assert_eq!(
        (
            after.read.unread,
            after.read.read_seq,
            after.read.visitor_read_seq
        ),
        (1, 2, 3)
    );
    // Another agent's position is its own: bob has read nothing.
    assert_eq!(listing_of(&store, &c, "bob").await.read.unread, 3);
    mark(&store, &c, &alice(), 4).await;
    assert_eq!(listing_of(&store, &c, "alice").await.read.unread, 0);
    assert_eq!(listing_of(&store, &c, "bob").await.read.unread, 3);

    // The same order and filter as `list_conversations`.
    let plain: Vec<ConversationId> = list(&store, &site, None, 100).await;
    let with_reads: Vec<ConversationId> = listed(&store, &site, "alice")
        .await
        .into_iter()
        .map(|l| l.conversation.id)
        .collect();
    assert_eq!(plain, with_reads);
    let every_site = store
        .list_conversations_for_agent(
            &ConversationFilter {
                sites: None,
                status: Some(ConversationStatus::Open),
                limit: 500,
            },
            "alice",
        )
        .await
        .expect("every site");
    assert!(every_site.iter().any(|l| l.conversation.id == c.id));
    let one = store
        .list_conversations_for_agent(
            &ConversationFilter {
                sites: Some(vec![site.clone()]),
                status: None,
                limit: 1,
            },
            "alice",
        )
        .await
        .expect("limit 1");
    assert_eq!(one.len(), 1);
}

pub async fn unread_counts_stop_at_the_cap<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let c = conversation(&store, &unique("site")).await;
    for i in 0..(UNREAD_CAP + 5) {
        append(&store, visitor_message(&c, None, &format!("m{i}"))).await;
    }
    assert_eq!(
        listing_of(&store, &c, "alice").await.read.unread,
        UNREAD_CAP
    );
    // Under the cap, the exact count.
    mark(&store, &c, &alice(), 10).await;
    assert_eq!(
        listing_of(&store, &c, "alice").await.read.unread,
        UNREAD_CAP + 5 - 10
    );
}
