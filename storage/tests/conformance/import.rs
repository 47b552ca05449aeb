//! Conformance checks of `Store::import_messages` (`chat-gateway import`), run against every
//! store by `conformance_suite!`.

use super::*;
use chat_core::model::Message;
use chat_core::store::{Imported, ImportedMessage};
use chrono::{DateTime, TimeZone};

fn at(second: i64, micros: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + second, micros * 1000)
        .single()
        .expect("valid time")
}

struct Old {
    site: &'static str,
    conversation: ConversationId,
    visitor: VisitorId,
}

impl Old {
    fn new(site: &'static str) -> Self {
        Self {
            site,
            conversation: ConversationId::new_random(),
            visitor: VisitorId::new_random(),
        }
    }

    fn message(
        &self,
        old_id: &str,
        agent: bool,
        body: &str,
        created_at: DateTime<Utc>,
    ) -> ImportedMessage {
        ImportedMessage {
            site_id: self.site.to_string(),
            conversation_id: self.conversation,
            visitor_id: self.visitor,
            status: ConversationStatus::Closed,
            client_msg_id: format!("import:{old_id}"),
            sender: if agent {
                Sender {
                    role: Role::Agent,
                    id: "old-agent".into(),
                    name: Some("Support".into()),
                }
            } else {
                Sender {
                    role: Role::Visitor,
                    id: self.visitor.to_string(),
                    name: None,
                }
            },
            body: body.to_string(),
            created_at,
        }
    }
}

async fn import<S: Store>(store: &S, messages: &[ImportedMessage]) -> Vec<Imported> {
    store
        .import_messages(messages)
        .await
        .expect("import_messages")
}

fn inserted_message(outcome: &Imported) -> &Message {
    match outcome {
        Imported::Inserted { message, .. } => message,
        other => panic!("expected Inserted, got {other:?}"),
    }
}

async fn all_messages<S: Store>(store: &S, id: ConversationId) -> Vec<Message> {
    store
        .messages_after(id, 0, 500)
        .await
        .expect("messages_after")
}

/// Two conversations interleaved, imported in two calls, then the whole file again: the second
/// run writes nothing and every row stays as it was; sequence numbers follow the timestamps,
/// which are kept; live chat continues after the imported messages.
pub async fn import_twice_gives_the_same_rows<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let a = Old::new("site-a");
    let b = Old::new("site-a");
    let file = vec![
        a.message("a1", false, "Hello?", at(0, 123_456)),
        b.message("b1", false, "Is this thing on", at(1, 0)),
        a.message("a2", true, "Hi, how can I help?", at(5, 0)),
        // Same time as the previous message of the conversation: allowed, kept in file order.
        a.message("a3", false, "My order is late", at(5, 0)),
        b.message("b2", true, "Yes", at(9, 1)),
    ];
    let mut first = import(&store, &file[..2]).await;
    first.extend(import(&store, &file[2..]).await);
    assert_eq!(first.len(), 5);
    let created: Vec<bool> = first
        .iter()
        .map(|o| match o {
            Imported::Inserted {
                conversation_created,
                ..
            } => *conversation_created,
            other => panic!("expected Inserted, got {other:?}"),
        })
        .collect();
    assert_eq!(created, [true, true, false, false, false]);
    let seqs: Vec<i64> = first.iter().map(|o| inserted_message(o).seq).collect();
    assert_eq!(seqs, [1, 1, 2, 3, 2]);

    let messages_a = all_messages(&store, a.conversation).await;
    assert_eq!(messages_a.len(), 3);
    for (stored, original) in messages_a.iter().zip([&file[0], &file[2], &file[3]]) {
        assert_eq!(stored.created_at, original.created_at, "timestamp kept");
        assert_eq!(stored.body, original.body);
        assert_eq!(stored.sender, original.sender);
        assert_eq!(
            stored.client_msg_id.as_deref(),
            Some(original.client_msg_id.as_str())
        );
    }
    let conv_a = get(&store, a.conversation).await;
    assert_eq!(conv_a.visitor_id, a.visitor);
    assert_eq!(conv_a.site_id, "site-a");
    assert_eq!(conv_a.status, ConversationStatus::Closed);
    assert_eq!(conv_a.last_seq, 3);
    assert_eq!(conv_a.created_at, at(0, 123_456));
    assert_eq!(conv_a.updated_at, at(5, 0));
    let messages_b = all_messages(&store, b.conversation).await;
    let conv_b = get(&store, b.conversation).await;

    // Again, from a restarted store: nothing new, the same rows.
    let store = fx.open().await;
    let again = import(&store, &file).await;
    assert_eq!(again.len(), 5);
    for (outcome, before) in again.iter().zip(&first) {
        match outcome {
            Imported::Existing(m) => assert_eq!(m, inserted_message(before)),
            other => panic!("expected Existing, got {other:?}"),
        }
    }
    assert_eq!(all_messages(&store, a.conversation).await, messages_a);
    assert_eq!(all_messages(&store, b.conversation).await, messages_b);
    assert_eq!(get(&store, a.conversation).await, conv_a);
    assert_eq!(get(&store, b.conversation).await, conv_b);

    // Live chat continues the numbering; a later import still finds everything present.
    let live = inserted(
        append(
            &store,
            visitor_message(&conv_a, Some("live-1"), "Any news?"),
        )
        .await,
    );
    assert_eq!(live.seq, 4);
    assert!(live.created_at > at(5, 0));
    let third = import(&store, &file).await;
    assert!(
        third.iter().all(|o| matches!(o, Imported::Existing(_))),
        "{third:?}"
    );
    assert_eq!(get(&store, a.conversation).await.last_seq, 4);
    assert_eq!(all_messages(&store, a.conversation).await.len(), 4);

    // The same message twice in one call: written once.
    let c = Old::new("site-a");
    let twice = c.message("c1", false, "said twice", at(50, 0));
    let outcome = import(&store, &[twice.clone(), twice]).await;
    match &outcome[..] {
        [first @ Imported::Inserted { .. }, Imported::Existing(again)] => {
            assert_eq!(inserted_message(first), again);
            assert_eq!(again.seq, 1);
        }
        other => panic!("expected Inserted then Existing, got {other:?}"),
    }
    assert_eq!(all_messages(&store, c.conversation).await.len(), 1);
}

/// A message older than its conversation's newest one is refused (its number would contradict
/// its time), and so is one whose conversation or visitor belongs to someone else; the import
/// stops at the refusal and writes nothing after it.
pub async fn import_refuses_what_would_break_the_order<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let a = Old::new("site-a");
    let done = import(
        &store,
        &[
            a.message("a1", false, "first", at(10, 0)),
            a.message("a2", true, "second", at(20, 0)),
        ],
    )
    .await;
    assert_eq!(done.len(), 2);

    let late = import(
        &store,
        &[
            a.message("a3", false, "in order, before the refusal", at(25, 0)),
            a.message("a0", false, "older than the newest", at(15, 0)),
            a.message("a4", false, "never attempted", at(30, 0)),
        ],
    )
    .await;
    assert_eq!(late.len(), 2, "{late:?}");
    assert_eq!(inserted_message(&late[0]).seq, 3);
    match &late[1] {
        Imported::Refused(why) => assert!(why.contains("sort the export"), "{why}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    let stored = all_messages(&store, a.conversation).await;
    assert_eq!(stored.len(), 3, "what came before the refusal is committed");
    assert_eq!(stored[2].body, "in order, before the refusal");
    assert_eq!(get(&store, a.conversation).await.last_seq, 3);

    // The same conversation id claimed by another visitor, or the visitor on another site.
    let mut other_visitor = a.message("x1", false, "hijack", at(40, 0));
    other_visitor.visitor_id = VisitorId::new_random();
    let mut other_site = Old::new("site-b").message("y1", false, "elsewhere", at(40, 0));
    other_site.visitor_id = a.visitor;
    for wrong in [other_visitor, other_site] {
        let outcome = import(&store, std::slice::from_ref(&wrong)).await;
        assert!(
            matches!(&outcome[..], [Imported::Refused(_)]),
            "{outcome:?}"
        );
        assert!(store
            .conversation(wrong.conversation_id)
            .await
            .unwrap()
            .is_none_or(|c| c.last_seq == 3));
    }
    assert_eq!(all_messages(&store, a.conversation).await.len(), 3);
}
