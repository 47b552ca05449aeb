//! Sending a message, the three ways in: a session's `send` (with the conversation it
//! remembers), the HTTP API's send that reports whether the visitor got it live, and an agent's
//! reply to a known user of the website.

use crate::error::ChatError;
use crate::model::{
    Conversation, ConversationId, ConversationStatus, MessageKind, NewMessage, Principal, Role,
    Visitor, VisitorId, VisitorProfile,
};
use crate::store::Appended;

use super::chat_service::{ChatService, Delivery};

/// What a sender writes: the text, its kind, its idempotency key and the attachment it
/// carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    /// The sender's own id for the message (idempotent retries).
    pub client_msg_id: Option<String>,
    /// The text (may be empty when an attachment is carried).
    pub body: String,
    /// [`MessageKind::Text`] or, for agents only, [`MessageKind::Note`].
    pub kind: MessageKind,
    /// An attachment the sender uploaded (`POST /chat/api/attachments`).
    pub attachment_id: Option<uuid::Uuid>,
}

impl Draft {
    /// A plain text message.
    pub fn text(client_msg_id: Option<String>, body: String) -> Self {
        Self {
            client_msg_id,
            body,
            ..Self::default()
        }
    }
}

/// A retried send younger than this is fanned out again (see `send_to_visitor`).
const REPUBLISH_DUPLICATES_WITHIN: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

impl ChatService {
    /// Sends a message as `principal`: validates, commits, then fans out. Used by sessions and
    /// by HTTP APIs alike.
    pub async fn send(
        &self,
        principal: &Principal,
        conversation_id: Option<ConversationId>,
        client_msg_id: Option<String>,
        body: String,
    ) -> Result<Appended, ChatError> {
        self.send_to_visitor(
            principal,
            conversation_id,
            Draft::text(client_msg_id, body),
            None,
            None,
        )
        .await
        .map(|(appended, _)| appended)
    }

    /// [`ChatService::send`], also returning the conversation written to (as it is after the
    /// send: a visitor's send reopens a closed one).
    ///
    /// `known` is the conversation as the calling session last saw it, which spares a read of
    /// the store on every send (issue 12): it is used when it is the one named, or, for a
    /// visitor naming none, when it is the visitor's and still open. Its visitor never changes;
    /// its status is kept current by the conversation events the session receives.
    ///
    /// A draft's `attachment_id` must name an upload of the sender for this conversation
    /// ([`ChatService::attach`]); the message then carries it.
    pub(super) async fn send_to_visitor(
        &self,
        principal: &Principal,
        conversation_id: Option<ConversationId>,
        draft: Draft,
        known: Option<Conversation>,
        profile: Option<&VisitorProfile>,
    ) -> Result<(Appended, Conversation), ChatError> {
        let Draft {
            client_msg_id,
            body,
            kind,
            attachment_id,
        } = draft;
        let max = self.inner.config.max_message_chars;
        match (kind, principal.role()) {
            (MessageKind::Text, _) | (MessageKind::Note, Role::Agent) => {}
            (MessageKind::Note, Role::Visitor) => {
                return Err(ChatError::Forbidden(
                    "only agents write internal notes".into(),
                ))
            }
            (MessageKind::System, _) => {
                return Err(ChatError::Forbidden(
                    "system messages are written by the gateway".into(),
                ))
            }
        }
        if body.trim().is_empty() && attachment_id.is_none() {
            return Err(ChatError::BadRequest("message body is empty".into()));
        }
        let chars = body.chars().count();
        if chars > max {
            return Err(ChatError::TooLarge(format!(
                "message body has {chars} characters; the limit is {max}"
            )));
        }
        if let Some(id) = &client_msg_id {
            if id.is_empty() || id.len() > 128 {
                return Err(ChatError::BadRequest(
                    "client_msg_id must be 1..=128 bytes".into(),
                ));
            }
        }
        let store = &self.inner.store;
        let known = known.filter(|k| match principal {
            Principal::Visitor { visitor_id, .. } => {
                k.visitor_id == *visitor_id
                    && match conversation_id {
                        Some(id) => k.id == id,
                        None => k.status == ConversationStatus::Open,
                    }
            }
            Principal::Agent { sites, .. } => {
                conversation_id == Some(k.id) && sites.contains(&k.site_id)
            }
        });
        let conversation = match (principal, conversation_id, known) {
            (Principal::Agent { .. }, None, _) => {
                return Err(ChatError::BadRequest(
                    "agents must name the conversation_id to send to".into(),
                ))
            }
            (_, _, Some(known)) => known,
            (_, Some(id), None) => self.authorized_conversation(principal, id).await?,
            (
                Principal::Visitor {
                    visitor_id,
                    site_id,
                },
                None,
                None,
            ) => match store.open_conversation_of(site_id, *visitor_id).await? {
                Some(c) => c,
                // The visitor's first conversation: the visitor row is written now, not on
                // connect.
                None => {
                    self.start_conversation(site_id, *visitor_id, profile.cloned())
                        .await?
                }
            },
        };
        let mut conversation = conversation;
        if principal.role() == Role::Visitor && conversation.status == ConversationStatus::Closed {
            let reopened = store
                .set_status(conversation.id, ConversationStatus::Open)
                .await?;
            self.inner.publish_conversation(&reopened);
            conversation = reopened;
        }
        let attachment = match attachment_id {
            Some(id) => Some(
                self.attach(principal, &conversation, id, kind == MessageKind::Note)
                    .await
                    .map(Box::new)?,
            ),
            None => None,
        };
        // Promise 1 (persisted before acknowledged, docs/promises.md): fanned out only once the
        // store committed it, and the caller acknowledges the message the store returned.
        // Promise 2 (exactly once, in order): the store gives the seq and deduplicates by
        // `client_msg_id`; a duplicate comes back as the original.
        let appended = store
            .append_message(NewMessage {
                conversation_id: conversation.id,
                client_msg_id,
                sender: principal.as_sender(),
                body,
                kind,
                attachment,
            })
            .await?;
        match &appended {
            Appended::Inserted(message) => {
                self.inner.publish_message(message, &conversation, true);
                // An internal note answers nobody: the visitor is still waiting.
                if message.kind != crate::model::MessageKind::Note {
                    conversation = self.follow_waiting(principal, conversation).await;
                }
            }
            // A recent duplicate is fanned out again: its first attempt may have committed and
            // then lost its fan-out (the process died, or the commit's answer never arrived).
            // Sessions that already have it drop it by its seq.
            Appended::Duplicate(message)
                if chrono::Utc::now() - message.created_at < REPUBLISH_DUPLICATES_WITHIN =>
            {
                self.inner.publish_message(message, &conversation, false)
            }
            Appended::Duplicate(_) => {}
        }
        Ok((appended, conversation))
    }

    /// Like [`ChatService::send`], and says whether a session of the conversation's visitor was
    /// connected to this process to get the message live (`None` for a duplicate, which was
    /// delivered when it was first sent).
    pub async fn send_reporting_delivery(
        &self,
        principal: &Principal,
        conversation_id: Option<ConversationId>,
        draft: Draft,
    ) -> Result<(Appended, Option<Delivery>), ChatError> {
        let (appended, conversation) = self
            .send_to_visitor(principal, conversation_id, draft, None, None)
            .await?;
        let visitor_id = conversation.visitor_id;
        let delivery = match appended {
            Appended::Duplicate(_) => None,
            Appended::Inserted(_) if self.visitor_connected(visitor_id) => Some(Delivery::Live),
            Appended::Inserted(_) => Some(Delivery::Stored),
        };
        Ok((appended, delivery))
    }

    /// An agent's message to the known user `user_id` of `site` (the website's own user id,
    /// issue 13): to the user's open conversation, or a new one when there is none (the user's
    /// visitor row is created then, as a verified user). Says whether a session of the user
    /// was connected here to get it live, as [`ChatService::send_reporting_delivery`].
    pub async fn send_to_user(
        &self,
        principal: &Principal,
        site: &str,
        user_id: &str,
        draft: Draft,
    ) -> Result<(Appended, Option<Delivery>), ChatError> {
        let Principal::Agent { sites, .. } = principal else {
            return Err(ChatError::Forbidden("only agents reply to users".into()));
        };
        if !crate::model::is_valid_site_id(site) {
            return Err(ChatError::BadRequest(
                "site must be 1..=64 of [A-Za-z0-9_-]".into(),
            ));
        }
        if !sites.contains(site) {
            return Err(ChatError::Forbidden(format!(
                "you are not an agent of site `{site}`"
            )));
        }
        let claim = crate::identity::UserClaim {
            id: user_id.to_owned(),
            ..Default::default()
        };
        claim.validate().map_err(ChatError::BadRequest)?;
        let visitor_id = crate::identity::user_visitor_id(site, user_id);
        let store = &self.inner.store;
        let conversation = match store.open_conversation_of(site, visitor_id).await? {
            Some(open) => open,
            None => {
                // A stored profile (name, email from the widget) is kept as it is.
                let profile = match store.visitor(visitor_id).await? {
                    Some(_) => None,
                    None => Some(claim.profile(true)),
                };
                self.start_conversation(site, visitor_id, profile).await?
            }
        };
        self.send_reporting_delivery(principal, Some(conversation.id), draft)
            .await
    }

    /// A new open conversation of `visitor_id`, announced. The visitor row is written first
    /// (`ensure_visitor` is idempotent), with `profile` when given.
    pub(super) async fn start_conversation(
        &self,
        site: &str,
        visitor_id: VisitorId,
        profile: Option<VisitorProfile>,
    ) -> Result<Conversation, ChatError> {
        let store = &self.inner.store;
        store
            .ensure_visitor(&Visitor {
                id: visitor_id,
                site_id: site.to_owned(),
                created_at: chrono::Utc::now(),
                profile,
            })
            .await?;
        let created = store.create_conversation(site, visitor_id).await?;
        self.inner.publish_conversation(&created);
        Ok(created)
    }
}
