//! Conformance checks of attachments (issue 15, item 8, migration 12): their metadata and bytes,
//! binding them to a conversation, and the attachment a message carries through every read,
//! run against every store by `conformance_suite!`.

use super::*;
use chat_core::attachment::{Attachment, AttachmentRef, StoredAttachment};
use chat_core::model::Message;
use chat_core::search::{SearchQuery, SearchText};
use chrono::DateTime;

/// An upload by a new uploader of `role` on `site`, for `conversation` (`None`: not bound yet).
fn upload(site: &str, conversation: Option<ConversationId>, role: Role, name: &str) -> Attachment {
    Attachment {
        id: uuid::Uuid::new_v4(),
        site_id: site.to_string(),
        conversation_id: conversation,
        uploader_role: role,
        uploader_id: unique("uploader"),
        name: name.to_string(),
        content_type: "image/png".into(),
        size: 11,
        visible_to_visitor: false,
        // Nanoseconds: the stores keep microseconds.
        created_at: DateTime::from_timestamp(1_790_000_000, 123_456_789).unwrap(),
    }
}

/// `a` as a store reads it back: its time at microsecond precision.
fn as_stored(a: &Attachment) -> Attachment {
    Attachment {
        created_at: DateTime::from_timestamp_micros(a.created_at.timestamp_micros()).unwrap(),
        ..a.clone()
    }
}

async fn read<S: Store>(store: &S, id: uuid::Uuid) -> Option<StoredAttachment> {
    store.attachment(id).await.expect("attachment")
}

fn with_attachment(m: NewMessage, attachment: &Attachment) -> NewMessage {
    NewMessage {
        attachment: Some(Box::new(attachment.to_ref())),
        ..m
    }
}

fn attachment_of(m: &Message) -> Option<&AttachmentRef> {
    m.attachment.as_deref()
}

pub async fn attachments_keep_their_bytes_and_metadata<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let c = conversation(&store, "site-f").await;
    let bytes = b"\x89PNG\r\n\x1a\n\0\xff\x01";
    let agents = upload("site-f", Some(c.id), Role::Agent, "scan \"1\" – ü.png");
    store
        .put_attachment(&agents, Some(bytes))
        .await
        .expect("put with bytes");
    assert_eq!(
        read(&store, agents.id).await,
        Some(StoredAttachment {
            attachment: as_stored(&agents),
            content: Some(bytes.to_vec()),
        }),
        "bytes and metadata as stored"
    );

    // Bytes kept in CHAT_UPLOAD_DIR: none in the store; a visitor's upload not bound yet.
    let visitors = upload("site-f", None, Role::Visitor, "photo.png");
    store
        .put_attachment(&visitors, None)
        .await
        .expect("put without bytes");
    let stored = read(&store, visitors.id).await.expect("stored");
    assert_eq!(stored.attachment, as_stored(&visitors));
    assert_eq!(stored.content, None);

    assert_eq!(
        read(&store, uuid::Uuid::new_v4()).await,
        None,
        "a missing id"
    );
    assert!(
        store.put_attachment(&visitors, Some(b"x")).await.is_err(),
        "an id is stored once"
    );
    assert_eq!(
        read(&store, visitors.id).await.unwrap().content,
        None,
        "the second put changed nothing"
    );
    let nowhere = upload(
        "site-f",
        Some(ConversationId::new_random()),
        Role::Agent,
        "x",
    );
    assert!(
        matches!(
            store.put_attachment(&nowhere, Some(b"x")).await,
            Err(StoreError::NotFound(_))
        ),
        "an attachment of a conversation that does not exist"
    );
    assert_eq!(read(&store, nowhere.id).await, None);

    // Kept across a restart.
    drop(store);
    let reopened = fx.open().await;
    assert_eq!(
        read(&reopened, agents.id).await.unwrap().content,
        Some(bytes.to_vec())
    );
}

pub async fn binding_an_attachment_sets_its_conversation_once<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let c1 = conversation(&store, "site-b").await;
    let c2 = conversation(&store, "site-b").await;
    let a = upload("site-b", None, Role::Visitor, "a.png");
    store.put_attachment(&a, Some(b"bytes")).await.unwrap();

    let bound = store
        .bind_attachment(a.id, c1.id, false)
        .await
        .unwrap()
        .expect("an unbound attachment binds");
    assert_eq!(bound.conversation_id, Some(c1.id));
    assert!(!bound.visible_to_visitor, "sent in a note: not visible");
    assert_eq!(read(&store, a.id).await.unwrap().attachment, bound);

    let visible = store
        .bind_attachment(a.id, c1.id, true)
        .await
        .unwrap()
        .expect("the same conversation binds again");
    assert!(visible.visible_to_visitor);
    assert_eq!(
        visible,
        Attachment {
            visible_to_visitor: true,
            ..bound.clone()
        },
        "nothing else changes"
    );

    assert_eq!(
        store.bind_attachment(a.id, c2.id, true).await.unwrap(),
        None,
        "bound to another conversation"
    );
    assert_eq!(read(&store, a.id).await.unwrap().attachment, visible);

    let again = store
        .bind_attachment(a.id, c1.id, false)
        .await
        .unwrap()
        .expect("binds");
    assert!(again.visible_to_visitor, "never goes back to hidden");
    assert!(
        read(&store, a.id)
            .await
            .unwrap()
            .attachment
            .visible_to_visitor
    );

    assert_eq!(
        store
            .bind_attachment(uuid::Uuid::new_v4(), c1.id, true)
            .await
            .unwrap(),
        None,
        "a missing attachment"
    );

    // Uploaded for a conversation: bound to it from the start, to no other.
    let agents = upload("site-b", Some(c2.id), Role::Agent, "b.pdf");
    store.put_attachment(&agents, None).await.unwrap();
    assert_eq!(
        store.bind_attachment(agents.id, c1.id, true).await.unwrap(),
        None
    );
    let stored = read(&store, agents.id).await.unwrap().attachment;
    assert_eq!(stored, as_stored(&agents), "nothing changed");
    let bound = store
        .bind_attachment(agents.id, c2.id, true)
        .await
        .unwrap()
        .expect("its own conversation");
    assert_eq!(
        (bound.conversation_id, bound.visible_to_visitor),
        (Some(c2.id), true)
    );
}

pub async fn concurrent_binds_to_two_conversations_bind_one<F: Fixture>(fx: &F) {
    let store = Arc::new(fx.open().await);
    let c1 = conversation(&*store, "site-r").await;
    let c2 = conversation(&*store, "site-r").await;
    for _ in 0..10 {
        let a = upload("site-r", None, Role::Visitor, "race.png");
        store.put_attachment(&a, Some(b"x")).await.unwrap();
        let (first, second) = tokio::join!(
            store.bind_attachment(a.id, c1.id, true),
            store.bind_attachment(a.id, c2.id, true)
        );
        let won: Vec<ConversationId> = [first.unwrap(), second.unwrap()]
            .into_iter()
            .flatten()
            .map(|bound| bound.conversation_id.expect("bound"))
            .collect();
        assert_eq!(won.len(), 1, "exactly one bind wins: {won:?}");
        assert_eq!(
            read(&*store, a.id)
                .await
                .unwrap()
                .attachment
                .conversation_id,
            Some(won[0])
        );
    }
}

pub async fn messages_carry_their_attachment_through_every_read<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let site = unique("site-m");
    let c = conversation(&store, &site).await;
    let a = upload(&site, Some(c.id), Role::Agent, "invoice.png");
    store.put_attachment(&a, Some(b"bytes")).await.unwrap();
    let expected = a.to_ref();

    let plain = inserted(append(&store, visitor_message(&c, Some("p"), "hello")).await);
    assert_eq!(attachment_of(&plain), None);
    let sent = inserted(
        append(
            &store,
            with_attachment(agent_message(&c, Some("a"), "invoice attached"), &a),
        )
        .await,
    );
    assert_eq!(attachment_of(&sent), Some(&expected));
    let empty_body =
        inserted(append(&store, with_attachment(agent_message(&c, None, ""), &a)).await);
    assert_eq!(attachment_of(&empty_body), Some(&expected));
    let note = inserted(
        append(
            &store,
            NewMessage {
                kind: MessageKind::Note,
                ..with_attachment(agent_message(&c, Some("n"), "for agents"), &a)
            },
        )
        .await,
    );
    assert_eq!(attachment_of(&note), Some(&expected));

    let all = store.messages_after(c.id, 0, 10).await.unwrap();
    assert_eq!(
        all,
        vec![plain.clone(), sent.clone(), empty_body.clone(), note]
    );
    assert_eq!(
        store.visitor_messages_after(c.id, 0, 10).await.unwrap(),
        vec![plain, sent.clone(), empty_body]
    );

    // A retry (without or with another attachment) answers the original, attachment included.
    let other = upload(&site, Some(c.id), Role::Agent, "other.png");
    for retry in [
        agent_message(&c, Some("a"), "invoice attached"),
        with_attachment(agent_message(&c, Some("a"), "invoice attached"), &other),
    ] {
        match append(&store, retry).await {
            Appended::Duplicate(m) => assert_eq!(m, sent),
            other => panic!("expected the original, got {other:?}"),
        }
    }

    let hits = store
        .search_conversations(&SearchQuery {
            sites: Some(vec![site.clone()]),
            status: None,
            text: SearchText::parse("invoice").unwrap(),
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].message.as_ref(),
        Some(&sent),
        "a search hit carries it"
    );

    drop(store);
    let reopened = fx.open().await;
    assert_eq!(
        attachment_of(&reopened.messages_after(c.id, 1, 1).await.unwrap()[0]),
        Some(&expected)
    );
}

/// Many appends at once, some with attachments: through the batching store they share
/// commits (Postgres's `unnest` insert with NULLs among the values), and a retry within the
/// same burst is answered with the original.
pub async fn concurrent_appends_keep_each_messages_attachment<F: Fixture>(fx: &F) {
    let store = Arc::new(fx.open().await);
    let site = unique("site-c");
    let c = conversation(&*store, &site).await;
    let mut uploads = Vec::new();
    for i in 0..6 {
        let a = upload(&site, Some(c.id), Role::Agent, &format!("f{i}.png"));
        store.put_attachment(&a, None).await.unwrap();
        uploads.push(a);
    }
    let mut tasks = Vec::new();
    for i in 0..24_usize {
        let store = Arc::clone(&store);
        let m = agent_message(&c, Some(&format!("k{}", i % 12)), &format!("m{i}"));
        let m = match i % 12 {
            n if n.is_multiple_of(2) => with_attachment(m, &uploads[n / 2]),
            _ => m,
        };
        tasks.push(tokio::spawn(async move { store.append_message(m).await }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().expect("append"));
    }
    let stored = store.messages_after(c.id, 0, 100).await.unwrap();
    assert_eq!(stored.len(), 12, "one row per client_msg_id");
    for message in &stored {
        let key: usize = message.client_msg_id.as_deref().unwrap()[1..]
            .parse()
            .unwrap();
        let expected = key.is_multiple_of(2).then(|| uploads[key / 2].to_ref());
        assert_eq!(attachment_of(message), expected.as_ref(), "{message:?}");
    }
    for result in results {
        let message = result.message();
        assert!(stored.contains(message), "{message:?} is as stored");
    }
}

/// `upload` made `age` ago.
fn uploaded_ago(site: &str, conversation: Option<ConversationId>, age: Duration) -> Attachment {
    Attachment {
        created_at: Utc::now() - age,
        ..upload(site, conversation, Role::Visitor, "old.png")
    }
}

const HOUR: Duration = Duration::from_secs(3600);

pub async fn unsent_uploads_are_deleted_once_old_and_sent_ones_kept<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let c = conversation(&store, "site-u").await;
    let unbound = uploaded_ago("site-u", None, 3 * HOUR);
    let for_conversation = uploaded_ago("site-u", Some(c.id), 3 * HOUR);
    let in_a_note = uploaded_ago("site-u", None, 3 * HOUR);
    let sent = uploaded_ago("site-u", Some(c.id), 3 * HOUR);
    let recent = uploaded_ago("site-u", None, Duration::ZERO);
    for a in [&unbound, &for_conversation, &in_a_note, &sent, &recent] {
        store.put_attachment(a, Some(b"x")).await.unwrap();
    }
    store
        .bind_attachment(in_a_note.id, c.id, false)
        .await
        .unwrap()
        .unwrap();
    store
        .bind_attachment(sent.id, c.id, true)
        .await
        .unwrap()
        .unwrap();

    let cutoff = Utc::now() - HOUR;
    let deleted: BTreeSet<uuid::Uuid> = store
        .delete_unsent_attachments(cutoff, 100)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from([unbound.id, for_conversation.id]),
        "old and never carried by a message, bound to a conversation at upload or not"
    );
    assert_eq!(read(&store, unbound.id).await, None);
    assert_eq!(read(&store, for_conversation.id).await, None);
    for kept in [&in_a_note, &sent, &recent] {
        assert!(read(&store, kept.id).await.is_some(), "{kept:?} kept");
    }
    assert_eq!(
        store.bind_attachment(unbound.id, c.id, true).await.unwrap(),
        None,
        "sending a deleted upload finds nothing"
    );
    assert!(store
        .delete_unsent_attachments(cutoff, 100)
        .await
        .unwrap()
        .is_empty());

    // Pages of `limit`, oldest first.
    let olds: Vec<Attachment> = (0..3)
        .map(|i| uploaded_ago("site-u", None, (10 - i) * HOUR))
        .collect();
    for a in &olds {
        store.put_attachment(a, None).await.unwrap();
    }
    let first = store.delete_unsent_attachments(cutoff, 2).await.unwrap();
    assert_eq!(
        first.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([olds[0].id, olds[1].id])
    );
    assert_eq!(
        store.delete_unsent_attachments(cutoff, 2).await.unwrap(),
        vec![olds[2].id]
    );
}

/// Sweepers (one per gateway process) racing each other and the `send`s that bind: every old
/// upload is either sent (bound, kept) or deleted (its bind finds nothing), never both, and
/// each is deleted by one sweeper only.
pub async fn sweeping_races_sending_and_other_sweepers_safely<F: Fixture>(fx: &F) {
    let store = Arc::new(fx.open().await);
    let c = conversation(&*store, "site-w").await;
    let uploads: Vec<Attachment> = (0..40)
        .map(|_| uploaded_ago("site-w", None, 2 * HOUR))
        .collect();
    for a in &uploads {
        store.put_attachment(a, None).await.unwrap();
    }
    let cutoff = Utc::now() - HOUR;
    let sweepers: Vec<_> = (0..3)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut deleted = Vec::new();
                loop {
                    let page = store.delete_unsent_attachments(cutoff, 4).await.unwrap();
                    if page.is_empty() {
                        return deleted;
                    }
                    deleted.extend(page);
                }
            })
        })
        .collect();
    let binds: Vec<_> = uploads
        .iter()
        .map(|a| {
            let (store, id) = (Arc::clone(&store), a.id);
            tokio::spawn(async move { (id, store.bind_attachment(id, c.id, true).await.unwrap()) })
        })
        .collect();
    let mut deleted = Vec::new();
    for sweeper in sweepers {
        deleted.extend(sweeper.await.unwrap());
    }
    let deleted_set: BTreeSet<uuid::Uuid> = deleted.iter().copied().collect();
    assert_eq!(deleted.len(), deleted_set.len(), "each deleted once");
    for bind in binds {
        let (id, bound) = bind.await.unwrap();
        let stored = read(&*store, id).await;
        match bound {
            Some(_) => {
                assert!(!deleted_set.contains(&id), "{id} sent and deleted");
                assert!(stored.is_some(), "{id} sent but gone");
            }
            None => {
                assert!(deleted_set.contains(&id), "{id} neither sent nor deleted");
                assert!(stored.is_none());
            }
        }
    }
}
