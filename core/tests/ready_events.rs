//! `ChatSession::next_ready_event`, the batch a transport writes after `next_event` with one
//! flush: it gives what is ready now, in the order `next_event` would, and never what the resume
//! grace holds back. Runs against the real embedded store.

use chat_core::model::{Agent, Principal, Sites, VisitorId};
use chat_core::protocol::{ClientCommand, ClientFrame, ServerEvent};
use chat_core::service::{ChatService, ChatSession, Outbound, ServiceConfig};
use chat_core::transport::TransportKind;
use chat_storage::EmbeddedStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

async fn service() -> (tempfile::TempDir, ChatService) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_async(dir.path().join("chat.sqlite3"))
        .await
        .unwrap();
    (
        dir,
        ChatService::new(Arc::new(store), ServiceConfig::default()),
    )
}

async fn agent(service: &ChatService) -> ChatSession {
    let principal = Principal::Agent {
        agent: Agent {
            id: "a1".into(),
            name: "Ann".into(),
        },
        sites: Sites::All,
    };
    service
        .open_session(principal, None, TransportKind::WebSocket)
        .await
        .unwrap()
}

async fn visitor(service: &ChatService) -> ChatSession {
    let principal = Principal::Visitor {
        visitor_id: VisitorId::new_random(),
        site_id: "default".into(),
    };
    service
        .open_session(principal, None, TransportKind::WebSocket)
        .await
        .unwrap()
}

async fn send(visitor: &mut ChatSession, body: &str) {
    let frame = ClientFrame {
        id: None,
        command: ClientCommand::Send {
            attachment_id: None,
            conversation_id: None,
            client_msg_id: None,
            body: body.into(),
            note: false,
        },
    };
    let answer = visitor.handle(frame).await;
    assert!(matches!(answer, ServerEvent::Ack(_)), "{answer:?}");
}

async fn resume(session: &mut ChatSession) {
    let frame = ClientFrame {
        id: None,
        command: ClientCommand::Resume {
            cursors: BTreeMap::new(),
            conversations_since: None,
            site: None,
        },
    };
    let answer = session.handle(frame).await;
    assert!(matches!(answer, ServerEvent::Ack(_)), "{answer:?}");
}

/// Every event `session` has to say within `wait`: one from `next_event`, then all that
/// `next_ready_event` gives, as a transport's batch; returns the message bodies and the
/// largest batch.
async fn batches(session: &mut ChatSession, wait: Duration) -> (Vec<String>, usize) {
    let mut bodies = Vec::new();
    let mut largest = 0;
    while let Ok(out) = tokio::time::timeout(wait, session.next_event()).await {
        let Outbound::Event(first) = out else {
            panic!("the session ended: {out:?}");
        };
        let mut batch = vec![first];
        while let Some(event) = session.next_ready_event() {
            batch.push(event);
        }
        largest = largest.max(batch.len());
        for event in batch {
            if let ServerEvent::Message { message } = event {
                bodies.push(message.body);
            }
        }
    }
    (bodies, largest)
}

#[tokio::test]
async fn ready_events_come_in_order_and_in_batches() {
    let (_dir, service) = service().await;
    let mut agent = agent(&service).await;
    resume(&mut agent).await;
    let _ = batches(&mut agent, Duration::from_millis(50)).await; // welcome, presence
    let mut visitors = Vec::new();
    for _ in 0..3 {
        visitors.push(visitor(&service).await);
    }
    let mut sent = Vec::new();
    for n in 0..10 {
        for (v, visitor) in visitors.iter_mut().enumerate() {
            let body = format!("v{v} m{n}");
            send(visitor, &body).await;
            sent.push(body);
        }
    }
    let (bodies, largest) = batches(&mut agent, Duration::from_millis(100)).await;
    assert_eq!(bodies, sent, "every message once, in publish order");
    assert!(
        largest > 10,
        "30 messages queued before the agent read: they come in batches (largest {largest})"
    );
}

#[tokio::test]
async fn nothing_held_by_the_resume_grace_is_ready() {
    let (_dir, service) = service().await;
    // An agent that has not sent `resume`: live messages wait for it (or the grace's end).
    let mut agent = agent(&service).await;
    let mut visitor = visitor(&service).await;
    let _ = batches(&mut agent, Duration::from_millis(50)).await;
    send(&mut visitor, "held").await;
    assert!(
        agent.next_ready_event().is_none(),
        "a held message is not ready"
    );
    resume(&mut agent).await;
    let (bodies, _) = batches(&mut agent, Duration::from_millis(200)).await;
    assert_eq!(bodies, vec!["held".to_string()]);
}
