//! Conformance checks of message kinds, what visitors see of a conversation and the agent
//! directory (issue 15, migration 6), run against every store by `conformance_suite!`.

use super::*;
use chat_core::agents::AgentRecord;
use chat_core::model::{MessageKind, Sites};

fn of_kind(m: NewMessage, kind: MessageKind) -> NewMessage {
    NewMessage { kind, ..m }
}

fn seqs(messages: &[chat_core::model::Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

pub async fn notes_keep_their_kind_and_stay_out_of_visitor_reads<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let c = conversation(&store, "site-n").await;
    inserted(append(&store, visitor_message(&c, Some("t1"), "hello")).await);
    let note = inserted(
        append(
            &store,
            of_kind(agent_message(&c, Some("n1"), "VIP"), MessageKind::Note),
        )
        .await,
    );
    assert_eq!((note.seq, note.kind), (2, MessageKind::Note));
    inserted(
        append(
            &store,
            of_kind(agent_message(&c, None, "call back"), MessageKind::Note),
        )
        .await,
    );
    let now = get(&store, c.id).await;
    assert_eq!((now.last_seq, now.visitor_last_seq), (3, Some(1)));
    let all = store.messages_after(c.id, 0, 10).await.unwrap();
    let kinds: Vec<MessageKind> = all.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        vec![MessageKind::Text, MessageKind::Note, MessageKind::Note]
    );
    assert_eq!(
        seqs(&store.visitor_messages_after(c.id, 0, 10).await.unwrap()),
        vec![1]
    );
    assert_eq!(store.visitor_message_count(c.id, 0, 3).await.unwrap(), 1);
    assert_eq!(store.visitor_message_count(c.id, 1, 3).await.unwrap(), 0);
    // A retried note comes back as the note.
    match append(
        &store,
        of_kind(agent_message(&c, Some("n1"), "VIP"), MessageKind::Note),
    )
    .await
    {
        Appended::Duplicate(m) => assert_eq!(m, note),
        other => panic!("expected the original note, got {other:?}"),
    }
    let system = inserted(
        append(
            &store,
            of_kind(
                agent_message(&c, None, "Ada transferred the conversation to Bob"),
                MessageKind::System,
            ),
        )
        .await,
    );
    assert_eq!((system.seq, system.kind), (4, MessageKind::System));
    let now = get(&store, c.id).await;
    assert_eq!((now.last_seq, now.visitor_last_seq), (4, None));
    inserted(
        append(
            &store,
            of_kind(agent_message(&c, None, "again"), MessageKind::Note),
        )
        .await,
    );
    assert_eq!(get(&store, c.id).await.visitor_last_seq, Some(4));
    assert_eq!(
        seqs(&store.visitor_messages_after(c.id, 0, 10).await.unwrap()),
        vec![1, 4]
    );
    assert_eq!(
        seqs(&store.visitor_messages_after(c.id, 1, 1).await.unwrap()),
        vec![4]
    );
    assert_eq!(store.visitor_message_count(c.id, 0, 5).await.unwrap(), 2);
    assert_eq!(store.visitor_message_count(c.id, 2, 4).await.unwrap(), 1);
    // What visitors see of another conversation is its own.
    let other = conversation(&store, "site-n").await;
    assert!(store
        .visitor_messages_after(other.id, 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.visitor_message_count(other.id, 0, 9).await.unwrap(),
        0
    );
    // Kinds and the visitors' end survive reopening.
    drop(store);
    let store = fx.open().await;
    assert_eq!(get(&store, c.id).await.visitor_last_seq, Some(4));
    let kinds: Vec<MessageKind> = store
        .messages_after(c.id, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            MessageKind::Text,
            MessageKind::Note,
            MessageKind::Note,
            MessageKind::System,
            MessageKind::Note
        ]
    );
}

fn record(id: &str, name: &str, sites: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        name: name.into(),
        sites: Sites::parse(sites).unwrap(),
        // Stores keep microseconds.
        last_seen: chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
    }
}

pub async fn agent_directory_keeps_the_latest_and_lists_by_site<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    assert_eq!(store.agent("nobody").await.unwrap(), None);
    let bob = record("a-bob", "Bob", "shop,shop_2");
    let ann = record("a-ann", "Ann", "*");
    let cy = record("a-cy", "Cy", "other");
    for r in [&bob, &ann, &cy] {
        store.record_agent(r).await.unwrap();
    }
    assert_eq!(store.agent("a-bob").await.unwrap(), Some(bob.clone()));
    assert_eq!(store.agent("a-ann").await.unwrap(), Some(ann.clone()));
    let names = |list: Vec<AgentRecord>| list.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        names(store.agents_of_site("shop", 10).await.unwrap()),
        vec!["a-ann", "a-bob"]
    );
    assert_eq!(
        names(store.agents_of_site("shop_2", 10).await.unwrap()),
        vec!["a-ann", "a-bob"]
    );
    // No partial or wildcard match: `_` is a site id character.
    assert_eq!(
        names(store.agents_of_site("shop_", 10).await.unwrap()),
        vec!["a-ann"]
    );
    assert_eq!(
        names(store.agents_of_site("sho", 10).await.unwrap()),
        vec!["a-ann"]
    );
    assert_eq!(
        names(store.agents_of_site("other", 10).await.unwrap()),
        vec!["a-ann", "a-cy"]
    );
    assert_eq!(
        names(store.agents_of_site("shop", 1).await.unwrap()),
        vec!["a-ann"]
    );
    // A later session's token wins: new name, new sites.
    let renamed = AgentRecord {
        name: "Robert".into(),
        sites: Sites::parse("other").unwrap(),
        ..record("a-bob", "", "*")
    };
    store.record_agent(&renamed).await.unwrap();
    assert_eq!(store.agent("a-bob").await.unwrap(), Some(renamed));
    assert_eq!(
        names(store.agents_of_site("shop", 10).await.unwrap()),
        vec!["a-ann"]
    );
    assert_eq!(
        names(store.agents_of_site("other", 10).await.unwrap()),
        vec!["a-ann", "a-cy", "a-bob"]
    );
}
