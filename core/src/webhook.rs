//! Webhook events (issue 15, item 10): what a store writes into its durable outbox in the same
//! transaction as the fact it reports, and what the gateway's delivery worker reads back.
//!
//! The outbox is the only way an event is produced: a store given a [`WebhookOutbox`] writes a
//! [`NewWebhookEvent`] row with every conversation creation, message append, close and
//! assignment of a site that has a webhook, inside the transaction that commits it. So a fact
//! is committed with its event or not at all, and a crash between the two is impossible. Sites
//! without a webhook cost nothing: the store checks [`WebhookOutbox::wants`] and writes no row.
//!
//! The payload is built here, once, when the fact commits, and stored as the exact bytes the
//! receiver gets (and the signature covers): a retry hours later sends the same body, with the
//! same event id, describing the conversation as it was when the event happened.
//! `docs/webhooks.md` documents the payloads.

use crate::model::{Conversation, ConversationId, Message, SiteId, Sites, VisitorId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

/// What happened, as the payload's `type` and the `X-Chat-Event` header name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEventKind {
    /// A conversation was created (a visitor's first message, or their first after a close).
    ConversationCreated,
    /// A message was committed.
    MessageCreated,
    /// A conversation was closed.
    ConversationClosed,
    /// A conversation's assignee was set, changed or cleared.
    ConversationAssigned,
}

impl WebhookEventKind {
    /// Every kind, in documentation order.
    pub const ALL: [Self; 4] = [
        Self::ConversationCreated,
        Self::MessageCreated,
        Self::ConversationClosed,
        Self::ConversationAssigned,
    ];

    /// The name on the wire and in the outbox table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConversationCreated => "conversation.created",
            Self::MessageCreated => "message.created",
            Self::ConversationClosed => "conversation.closed",
            Self::ConversationAssigned => "conversation.assigned",
        }
    }

    /// Parses the name on the wire and in the outbox table.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Which sites' facts get outbox rows, shared by a store (which writes them) and the delivery
/// worker (which the store wakes after committing some).
#[derive(Debug)]
pub struct WebhookOutbox {
    sites: Sites,
    wake: Notify,
}

impl WebhookOutbox {
    /// An outbox for the facts of `sites` (those with a configured webhook URL).
    pub fn new(sites: Sites) -> Arc<Self> {
        Arc::new(Self {
            sites,
            wake: Notify::new(),
        })
    }

    /// Whether facts of `site` get an outbox row.
    pub fn wants(&self, site: &str) -> bool {
        self.sites.contains(site)
    }

    /// The sites whose facts get an outbox row.
    pub fn sites(&self) -> &Sites {
        &self.sites
    }

    /// The event of a conversation fact (created, closed, assigned) when its site wants one.
    pub fn conversation_event(
        &self,
        kind: WebhookEventKind,
        conversation: &Conversation,
    ) -> Option<NewWebhookEvent> {
        self.wants(&conversation.site_id)
            .then(|| NewWebhookEvent::conversation(kind, conversation))
    }

    /// Called by a store after it committed outbox rows: the worker of this process looks at
    /// once instead of at its next poll.
    pub fn committed(&self) {
        self.wake.notify_one();
    }

    /// Resolves at the next [`WebhookOutbox::committed`] (or at once if one happened since the
    /// last wait).
    pub async fn wait_committed(&self) {
        self.wake.notified().await;
    }
}

/// An outbox row to write with its fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhookEvent {
    /// The event id: `X-Chat-Event-Id` and the payload's `id`, the same on every attempt.
    pub id: Uuid,
    /// The site whose webhook gets it.
    pub site_id: SiteId,
    /// The conversation it is about (deliveries of one conversation keep their order).
    pub conversation_id: ConversationId,
    /// What happened.
    pub kind: WebhookEventKind,
    /// The JSON body, exactly as sent.
    pub payload: String,
    /// When the fact happened (the store's commit time of it).
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    created_at: DateTime<Utc>,
    site_id: &'a str,
    data: D,
}

#[derive(Serialize)]
struct ConversationData<'a> {
    conversation: &'a Conversation,
}

#[derive(Serialize)]
struct MessageData<'a> {
    visitor_id: VisitorId,
    message: &'a Message,
}

fn envelope<D: Serialize>(
    id: Uuid,
    kind: WebhookEventKind,
    created_at: DateTime<Utc>,
    site_id: &str,
    data: D,
) -> String {
    serde_json::to_string(&Envelope {
        id,
        kind: kind.as_str(),
        created_at,
        site_id,
        data,
    })
    // Serializing plain structs of strings, numbers and timestamps cannot fail.
    .unwrap_or_default()
}

impl NewWebhookEvent {
    /// `conversation.created`, `conversation.closed` or `conversation.assigned`: the
    /// conversation as the fact left it, at its `updated_at`.
    pub fn conversation(kind: WebhookEventKind, conversation: &Conversation) -> Self {
        let id = Uuid::new_v4();
        let at = conversation.updated_at;
        Self {
            id,
            site_id: conversation.site_id.clone(),
            conversation_id: conversation.id,
            kind,
            payload: envelope(
                id,
                kind,
                at,
                &conversation.site_id,
                ConversationData { conversation },
            ),
            created_at: at,
        }
    }

    /// `message.created`: the committed message and the conversation's visitor.
    pub fn message(message: &Message, site_id: &str, visitor_id: VisitorId) -> Self {
        let id = Uuid::new_v4();
        let kind = WebhookEventKind::MessageCreated;
        Self {
            id,
            site_id: site_id.to_owned(),
            conversation_id: message.conversation_id,
            kind,
            payload: envelope(
                id,
                kind,
                message.created_at,
                site_id,
                MessageData {
                    visitor_id,
                    message,
                },
            ),
            created_at: message.created_at,
        }
    }
}

/// An outbox row claimed for delivery ([`crate::store::Store::claim_webhook_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The event id.
    pub id: Uuid,
    /// The site whose webhook gets it.
    pub site_id: SiteId,
    /// The conversation it is about.
    pub conversation_id: ConversationId,
    /// What happened; `None` for a name this binary does not know (a newer gateway's).
    pub kind: Option<WebhookEventKind>,
    /// The JSON body, exactly as stored.
    pub payload: String,
    /// Attempts so far, this one included (1 on the first claim).
    pub attempts: u32,
    /// When the fact happened.
    pub created_at: DateTime<Utc>,
}

/// Longest failure reason an outbox row keeps, in bytes.
pub const MAX_ERROR_BYTES: usize = 512;

/// `error` cut to at most [`MAX_ERROR_BYTES`], on a character boundary.
pub fn bounded_error(error: &str) -> &str {
    if error.len() <= MAX_ERROR_BYTES {
        return error;
    }
    let mut end = MAX_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

/// Rows in the outbox, by state (the `chat_webhook_outbox_events` gauge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// Waiting for a first attempt or a retry (claimed ones included).
    pub pending: u64,
    /// Given up on (attempts exhausted, or no URL for the site any more); kept for inspection.
    pub dead: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Agent, ConversationStatus, MessageKind, Role, Sender};

    fn conversation(site: &str) -> Conversation {
        let at = Utc::now();
        Conversation {
            id: ConversationId::new_random(),
            site_id: site.into(),
            visitor_id: VisitorId::new_random(),
            status: ConversationStatus::Open,
            assignee: Some(Agent {
                id: "a1".into(),
                name: "Ada".into(),
            }),
            last_seq: 0,
            visitor_last_seq: None,
            created_at: at,
            updated_at: at,
            waiting: false,
        }
    }

    #[test]
    fn errors_are_bounded_on_a_character_boundary() {
        assert_eq!(bounded_error("short"), "short");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = bounded_error(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.len() >= MAX_ERROR_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn kinds_round_trip() {
        for kind in WebhookEventKind::ALL {
            assert_eq!(WebhookEventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(WebhookEventKind::parse("conversation.deleted"), None);
    }

    #[test]
    fn only_wanted_sites_get_events_and_payloads_carry_the_event_id() {
        let outbox = WebhookOutbox::new(Sites::only(["shop1".to_string()]).unwrap());
        assert!(outbox
            .conversation_event(
                WebhookEventKind::ConversationCreated,
                &conversation("shop2")
            )
            .is_none());
        let c = conversation("shop1");
        let event = outbox
            .conversation_event(WebhookEventKind::ConversationAssigned, &c)
            .expect("shop1 wants events");
        let body: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(body["id"], event.id.to_string());
        assert_eq!(body["type"], "conversation.assigned");
        assert_eq!(body["site_id"], "shop1");
        assert_eq!(body["data"]["conversation"]["id"], c.id.to_string());
        assert_eq!(body["data"]["conversation"]["assignee"]["name"], "Ada");

        let message = Message {
            attachment: None,
            conversation_id: c.id,
            seq: 3,
            client_msg_id: Some("k".into()),
            sender: Sender {
                role: Role::Visitor,
                id: c.visitor_id.to_string(),
                name: None,
            },
            body: "hello \"there\"".into(),
            created_at: Utc::now(),
            kind: MessageKind::Text,
        };
        let event = NewWebhookEvent::message(&message, "shop1", c.visitor_id);
        let body: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(body["type"], "message.created");
        assert_eq!(body["data"]["message"]["seq"], 3);
        assert_eq!(body["data"]["message"]["body"], "hello \"there\"");
        assert_eq!(body["data"]["visitor_id"], c.visitor_id.to_string());
        assert_ne!(
            event.id,
            NewWebhookEvent::message(&message, "shop1", c.visitor_id).id,
            "every event has its own id"
        );
    }
}
