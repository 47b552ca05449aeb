//! The `context` and `visitor` commands on a [`ChatSession`](crate::service::ChatSession): a visitor's
//! reports are rate-limited per session, validated, completed with what the gateway knows of the
//! client ([`ChatSessionState::set_client`](crate::service::ChatSessionState::set_client)) and stored as the visitor's latest context; agents read it through
//! [`ChatService::visitor_of`], which goes through [`ChatService::authorized_conversation`].
//!
//! Nothing is stored for a visitor who never wrote (no visitor row: connecting alone leaves
//! nothing in the store). Such a session keeps its latest report and stores it after its first
//! successful `send`.

use crate::error::ChatError;
use crate::model::{ConversationId, Principal, Role};
use crate::protocol::Ack;
use crate::rate::TokenBucket;
use crate::store::Store;
use crate::visitor_context::{
    ClientInfo, ReportedContext, VisitorContextRecord, VisitorView, CONTEXT_RATE,
};
use chrono::{DateTime, Utc};
use std::time::Instant;

use super::chat_service::ChatService;

/// A session's context reporting.
pub(super) struct ContextState {
    /// What the gateway knows of the client, added to every report.
    client: ClientInfo,
    /// Reports allowed ([`CONTEXT_RATE`]), made on the first report.
    bucket: Option<TokenBucket>,
    /// Whether the visitor has a row in the store: `None` until known.
    visitor_stored: Option<bool>,
    /// The latest report, waiting for the visitor's row (boxed: a few hundred bytes that most
    /// sessions never hold, in every session's state).
    pending: Option<Box<VisitorContextRecord>>,
    /// When this session first reported.
    first_seen: Option<DateTime<Utc>>,
}

impl ContextState {
    /// For a session whose visitor is known to have a row (`true`: they have a conversation).
    pub(super) fn new(visitor_stored: bool) -> Self {
        Self {
            client: ClientInfo::default(),
            bucket: None,
            visitor_stored: visitor_stored.then_some(true),
            pending: None,
            first_seen: None,
        }
    }
}

impl ContextState {
    /// What the gateway knows of the client, stored with every report.
    pub(super) fn set_client(&mut self, client: ClientInfo) {
        self.client = client;
    }

    /// `context`: stores the visitor's report as their latest context.
    pub(super) async fn report(
        &mut self,
        principal: &Principal,
        store: &dyn Store,
        reported: ReportedContext,
    ) -> Result<Ack, ChatError> {
        let Principal::Visitor { visitor_id, .. } = principal else {
            return Err(ChatError::Forbidden(
                "only visitors report context; agents read it with `visitor`".into(),
            ));
        };
        let visitor_id = *visitor_id;
        let now = Instant::now();
        let bucket = self
            .bucket
            .get_or_insert_with(|| TokenBucket::new(CONTEXT_RATE, now));
        if let Err(retry_after) = bucket.try_take(now) {
            return Err(ChatError::RateLimited {
                what: "reporting context too often (at most 1 a second, 5 at once)".into(),
                retry_after,
            });
        }
        reported.validate()?;
        let at = Utc::now();
        let record = VisitorContextRecord {
            visitor_id,
            context: reported,
            ip: self.client.ip.clone(),
            country: self.client.country.clone(),
            first_seen_at: *self.first_seen.get_or_insert(at),
            updated_at: at,
        };
        if self.visitor_stored == Some(false) {
            self.pending = Some(Box::new(record));
            return Ok(Ack::default());
        }
        let stored = store.put_visitor_context(&record).await?;
        self.visitor_stored = Some(stored);
        self.pending = (!stored).then(|| Box::new(record));
        Ok(Ack::default())
    }

    /// After a visitor's successful `send` (their row exists now): stores a report that was
    /// waiting for it. A failure is logged; the send stands.
    pub(super) async fn store_pending(
        &mut self,
        principal: &Principal,
        store: &dyn Store,
        session_id: &str,
    ) {
        if principal.role() != Role::Visitor || self.visitor_stored == Some(true) {
            return;
        }
        self.visitor_stored = Some(true);
        let Some(record) = self.pending.take() else {
            return;
        };
        if let Err(error) = store.put_visitor_context(&record).await {
            tracing::warn!(session = %session_id, %error, "could not store the visitor's context");
        }
    }
}

impl ChatService {
    /// The visitor of conversation `id` with their latest context: agents only, for a
    /// conversation they may read ([`ChatService::authorized_conversation`]).
    pub async fn visitor_of(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<VisitorView, ChatError> {
        if principal.role() != Role::Agent {
            return Err(ChatError::Forbidden(
                "only agents read a visitor's context".into(),
            ));
        }
        let conversation = self.authorized_conversation(principal, id).await?;
        let record = self
            .inner
            .store
            .visitor_context(conversation.visitor_id)
            .await?;
        let mut view = VisitorView::of(conversation.visitor_id, conversation.site_id, record);
        view.profile = self
            .inner
            .store
            .visitor(conversation.visitor_id)
            .await?
            .and_then(|visitor| visitor.profile);
        Ok(view)
    }
}
