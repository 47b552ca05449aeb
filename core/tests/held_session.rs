//! A session that does not send `resume` at once holds live messages (the resume grace). Holding
//! never ends it: past `session_queue` held messages it keeps per-conversation ranges and
//! replays them from the store when the grace ends, each message exactly once, in order.
//! Runs against the real embedded store.

use chat_core::model::{Agent, ConversationId, Principal, Sites, VisitorId};
use chat_core::protocol::{ClientCommand, ClientFrame, ServerEvent};
use chat_core::service::{ChatService, ChatSession, Outbound, ServiceConfig};
use chat_core::transport::TransportKind;
use chat_storage::EmbeddedStore;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

const QUEUE: usize = 8;
const CONVERSATIONS: usize = 3;
const PER_CONVERSATION: i64 = 20;

async fn agent(service: &ChatService, id: &str) -> ChatSession {
    service
        .open_session(
            Principal::Agent {
                agent: Agent {
                    id: id.into(),
                    name: id.into(),
                },
                sites: Sites::All,
            },
            None,
            TransportKind::WebSocket,
        )
        .await
        .unwrap()
}

/// Takes what `session` has to say within `wait`, recording messages per conversation;
/// panics if the session ends.
async fn drain(
    session: &mut ChatSession,
    wait: Duration,
    got: &mut HashMap<ConversationId, Vec<i64>>,
) {
    while let Ok(out) = tokio::time::timeout(wait, session.next_event()).await {
        match out {
            Outbound::Event(ServerEvent::Message { message }) => {
                got.entry(message.conversation_id)
                    .or_default()
                    .push(message.seq);
            }
            Outbound::Event(_) => {}
            other => panic!("a held session ended: {other:?}"),
        }
    }
}

fn assert_exactly_once_in_order(who: &str, got: &HashMap<ConversationId, Vec<i64>>) {
    assert_eq!(got.len(), CONVERSATIONS, "{who}: {got:?}");
    let all: Vec<i64> = (1..=PER_CONVERSATION).collect();
    for (conversation, seqs) in got {
        assert_eq!(seqs, &all, "{who}, conversation {conversation}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_session_outgrowing_its_queue_stays_open_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_async(dir.path().join("chat.sqlite3"))
        .await
        .unwrap();
    let service = ChatService::new(
        Arc::new(store),
        ServiceConfig {
            session_queue: QUEUE,
            ..ServiceConfig::default()
        },
    );
    // Two agents open before any message: one resumes while still holding, one never does.
    let mut resuming = agent(&service, "resuming").await;
    let mut silent = agent(&service, "silent").await;
    let mut visitors = Vec::new();
    for _ in 0..CONVERSATIONS {
        let principal = Principal::Visitor {
            visitor_id: VisitorId::new_random(),
            site_id: "default".into(),
        };
        visitors.push(
            service
                .open_session(principal, None, TransportKind::WebSocket)
                .await
                .unwrap(),
        );
    }
    let mut got_resuming = HashMap::new();
    let mut got_silent = HashMap::new();
    let mut conversations = Vec::new();
    // 60 messages, far more than the 8 a session may hold, interleaved over the conversations.
    for n in 0..PER_CONVERSATION {
        for visitor in visitors.iter_mut() {
            let ack = visitor
                .handle(ClientFrame {
                    id: None,
                    command: ClientCommand::Send {
                        attachment_id: None,
                        conversation_id: None,
                        client_msg_id: None,
                        body: format!("m{n}"),
                        note: false,
                    },
                })
                .await;
            let ServerEvent::Ack(ack) = ack else {
                panic!("send refused: {ack:?}")
            };
            let message = ack.message.unwrap();
            if n == 0 {
                conversations.push(message.conversation_id);
            }
            // Both agents keep reading (their hub queues never fill), but hold every message.
            drain(&mut resuming, Duration::from_millis(2), &mut got_resuming).await;
            drain(&mut silent, Duration::from_millis(2), &mut got_silent).await;
        }
    }
    assert!(
        got_resuming.is_empty(),
        "held, not delivered: {got_resuming:?}"
    );
    assert!(got_silent.is_empty(), "held, not delivered: {got_silent:?}");

    // Resume one conversation from its start; the other two come from the held ranges.
    let cursors: BTreeMap<ConversationId, i64> = [(conversations[0], 0)].into();
    let ack = resuming
        .handle(ClientFrame {
            id: None,
            command: ClientCommand::Resume {
                cursors,
                conversations_since: None,
                site: None,
            },
        })
        .await;
    let ServerEvent::Ack(ack) = ack else {
        panic!("resume refused: {ack:?}")
    };
    assert_eq!(ack.replayed, Some(PER_CONVERSATION as u64));
    drain(&mut resuming, Duration::from_millis(300), &mut got_resuming).await;
    assert_exactly_once_in_order("resuming", &got_resuming);

    // The silent one gets everything when its grace (3 s) ends, without resuming.
    drain(&mut silent, Duration::from_secs(4), &mut got_silent).await;
    assert_exactly_once_in_order("silent", &got_silent);

    // Then live delivery goes on with no gap and no duplicate.
    for visitor in visitors.iter_mut() {
        visitor
            .handle(ClientFrame {
                id: None,
                command: ClientCommand::Send {
                    attachment_id: None,
                    conversation_id: None,
                    client_msg_id: None,
                    body: "after".into(),
                    note: false,
                },
            })
            .await;
    }
    drain(&mut silent, Duration::from_millis(300), &mut got_silent).await;
    for seqs in got_silent.values() {
        let all: Vec<i64> = (1..=PER_CONVERSATION + 1).collect();
        assert_eq!(seqs, &all);
    }
    // A later resume from the start replays nothing the session already handed over.
    let cursors: BTreeMap<ConversationId, i64> = conversations.iter().map(|c| (*c, 0)).collect();
    let ack = silent
        .handle(ClientFrame {
            id: None,
            command: ClientCommand::Resume {
                cursors,
                conversations_since: None,
                site: None,
            },
        })
        .await;
    let ServerEvent::Ack(ack) = ack else {
        panic!("resume refused: {ack:?}")
    };
    assert_eq!(ack.replayed, Some(0), "{ack:?}");
}
