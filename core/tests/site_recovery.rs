//! An agent's recovery (Socket.IO connection-state recovery) with remembered positions in a
//! conversation its credentials no longer cover: that conversation is left out, the others are
//! replayed, and an explicit `resume` naming it is still `forbidden`. Runs against the real
//! embedded store.

use chat_core::model::{Agent, ConversationId, Principal, Sites, VisitorId};
use chat_core::protocol::{ClientCommand, ClientFrame, ServerEvent};
use chat_core::service::{ChatService, Outbound, ServiceConfig};
use chat_core::transport::TransportKind;
use chat_storage::EmbeddedStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

async fn conversation_with_message(service: &ChatService, site: &str) -> ConversationId {
    let visitor = Principal::Visitor {
        visitor_id: VisitorId::new_random(),
        site_id: site.into(),
    };
    let appended = service
        .send(&visitor, None, None, format!("hello from {site}"))
        .await
        .unwrap();
    match appended {
        chat_core::store::Appended::Inserted(m) | chat_core::store::Appended::Duplicate(m) => {
            m.conversation_id
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_leaves_out_conversations_of_sites_no_longer_covered() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_async(dir.path().join("chat.sqlite3"))
        .await
        .unwrap();
    let service = ChatService::new(Arc::new(store), ServiceConfig::default());
    let mine = conversation_with_message(&service, "shop1").await;
    let theirs = conversation_with_message(&service, "shop2").await;
    let principal = Principal::Agent {
        agent: Agent {
            id: "ann".into(),
            name: "Ann".into(),
        },
        sites: Sites::parse("shop1").unwrap(),
    };
    let cursors = BTreeMap::from([(mine, 0), (theirs, 0)]);

    let mut session = service
        .open_session(principal.clone(), None, TransportKind::SocketIo)
        .await
        .unwrap();
    let answer = session.recover(cursors.clone(), None).await;
    let ServerEvent::Ack(ack) = answer else {
        panic!("recovery failed: {answer:?}");
    };
    assert_eq!(ack.replayed, Some(1), "only shop1's message");
    let mut replayed = Vec::new();
    while let Ok(Outbound::Event(event)) =
        tokio::time::timeout(Duration::from_millis(300), session.next_event()).await
    {
        if let ServerEvent::Message { message } = event {
            replayed.push(message.conversation_id);
        }
    }
    assert_eq!(replayed, vec![mine]);

    let mut explicit = service
        .open_session(principal, None, TransportKind::SocketIo)
        .await
        .unwrap();
    let answer = explicit
        .handle(ClientFrame {
            id: Some("r1".into()),
            command: ClientCommand::Resume {
                cursors,
                conversations_since: None,
                site: None,
            },
        })
        .await;
    assert!(
        matches!(&answer, ServerEvent::Error(e) if e.code.as_str() == "forbidden"),
        "{answer:?}"
    );
}
