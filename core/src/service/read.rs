//! Read receipts in the service (see [`crate::read_receipts`]): the `read` command, its fan-out
//! to the conversation's other side (here and, over the bus, on other processes), the
//! agents' list with unread counts, and the read positions a client learns when it resumes or
//! loads a conversation from its start.

use crate::bus::BusEvent;
use crate::error::{ChatError, StoreError};
use crate::hub::{HubEvent, Topic};
use crate::model::{ConversationId, ConversationStatus, Principal, Role, SiteId, VisitorId};
use crate::protocol::{Ack, ServerEvent};
use crate::read_receipts::{AgentListing, MarkedRead, ReadDecision, ReadReceipt, Reader};
use crate::store::ConversationFilter;
use std::collections::BTreeMap;

use super::chat_service::{page_limit, ChatService};
use super::session::ChatSessionState;
use super::shared::Inner;

impl ChatService {
    /// Stores that `principal` read conversation `id` up to `seq` and, when that moved their
    /// position forward, tells the conversation's participants (`read` event).
    pub async fn mark_read(
        &self,
        principal: &Principal,
        id: ConversationId,
        seq: i64,
    ) -> Result<MarkedRead, ChatError> {
        if seq < 0 {
            return Err(ChatError::BadRequest("`seq` must be >= 0".into()));
        }
        let conversation = self.authorized_conversation(principal, id).await?;
        let reader = match principal {
            Principal::Visitor { .. } => Reader::Visitor,
            Principal::Agent { agent, .. } => Reader::Agent(agent.id.clone()),
        };
        let marked = self
            .inner
            .store
            .mark_read(id, &reader, seq)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    ChatError::NotFound(format!("conversation {id} does not exist"))
                }
                other => ChatError::Store(other),
            })?;
        if marked.advanced {
            self.inner.publish_read(
                ReadReceipt {
                    conversation_id: id,
                    reader,
                    seq: marked.seq,
                },
                conversation.visitor_id,
                &conversation.site_id,
            );
        }
        Ok(marked)
    }

    /// [`ChatService::list`] with the calling agent's read state of each conversation (one
    /// store query).
    pub async fn list_for_agent(
        &self,
        principal: &Principal,
        site: Option<SiteId>,
        status: Option<ConversationStatus>,
        limit: Option<u32>,
    ) -> Result<Vec<AgentListing>, ChatError> {
        let Principal::Agent { sites, agent } = principal else {
            return Err(ChatError::Forbidden(
                "only agents can list conversations".into(),
            ));
        };
        let sites = match site {
            Some(site) if sites.contains(&site) => Some(vec![site]),
            Some(site) => {
                return Err(ChatError::Forbidden(format!(
                    "you are not an agent of site `{}`",
                    site.chars().take(70).collect::<String>()
                )))
            }
            None => sites.list().map(<[SiteId]>::to_vec),
        };
        Ok(self
            .inner
            .store
            .list_conversations_for_agent(
                &ConversationFilter {
                    sites,
                    status,
                    limit: page_limit(limit),
                },
                &agent.id,
            )
            .await?)
    }

    /// The `read` events that tell `principal` how far the other side of each of `ids` has
    /// read (one store query; at most one event per conversation): a visitor learns how far
    /// the agents read, an agent how far the visitor did (its own positions come with
    /// `list_conversations`).
    pub(super) async fn read_events(
        &self,
        principal: &Principal,
        ids: &[ConversationId],
    ) -> Result<Vec<ServerEvent>, ChatError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = self.inner.store.read_marks(ids).await?;
        Ok(marks
            .into_iter()
            .filter_map(|m| {
                let (role, seq) = match principal.role() {
                    Role::Visitor => (Role::Agent, m.agent_seq),
                    Role::Agent => (Role::Visitor, m.visitor_seq),
                };
                (seq > 0).then_some(ServerEvent::Read {
                    conversation_id: m.conversation_id,
                    role,
                    agent_id: None,
                    seq,
                })
            })
            .collect())
    }
}

impl Inner {
    /// Fans a new read position out here and on the bus.
    fn publish_read(&self, receipt: ReadReceipt, visitor_id: VisitorId, site: &str) {
        if let Some(bus) = &self.bus {
            bus.publish(BusEvent::Read {
                visitor_id,
                site_id: site.to_owned(),
                conversation_id: receipt.conversation_id,
                agent_id: match &receipt.reader {
                    Reader::Visitor => None,
                    Reader::Agent(id) => Some(id.clone()),
                },
                seq: receipt.seq,
            });
        }
        self.publish_read_locally(receipt, visitor_id, site);
    }

    /// Fans a read position out to this process's sessions: the visitor's and the site's agents'.
    pub(super) fn publish_read_locally(
        &self,
        receipt: ReadReceipt,
        visitor_id: VisitorId,
        site: &str,
    ) {
        self.hub.publish(
            &[
                Topic::Visitor(visitor_id),
                Topic::Agents,
                Topic::Site(site.to_owned()),
            ],
            HubEvent::Read(receipt),
        );
    }
}

impl ChatSessionState {
    /// The `read` command: through the session's [`ReadCoalescer`](crate::read_receipts::ReadCoalescer)
    /// (rate limit, no write for a position already stored), then to the store.
    pub(super) async fn read(
        &mut self,
        conversation_id: Option<ConversationId>,
        seq: i64,
    ) -> Result<Ack, ChatError> {
        let id = match (conversation_id, &self.principal) {
            (Some(id), _) => id,
            (None, Principal::Visitor { .. }) => self.open_conversation.ok_or_else(|| {
                ChatError::BadRequest("no open conversation: name `conversation_id`".into())
            })?,
            (None, Principal::Agent { .. }) => {
                return Err(ChatError::BadRequest(
                    "agents name the conversation: `conversation_id`".into(),
                ))
            }
        };
        if seq < 0 {
            return Err(ChatError::BadRequest("`seq` must be >= 0".into()));
        }
        let stored = match self.reads.decide(id, seq, std::time::Instant::now()) {
            ReadDecision::Limited(retry_after) => {
                return Err(ChatError::RateLimited {
                    what: "marking read too often".into(),
                    retry_after,
                })
            }
            ReadDecision::Unchanged(stored) => stored,
            ReadDecision::Write => {
                let marked = self.service.mark_read(&self.principal, id, seq).await?;
                self.reads.stored(id, marked.seq);
                marked.seq
            }
        };
        Ok(Ack {
            read_seq: Some(stored),
            ..Ack::default()
        })
    }

    /// The `list_conversations` command for agents: the conversations and, beside them, the
    /// asking agent's read state of each (entries of all zeros left out).
    pub(super) async fn list_with_read_state(
        &self,
        site: Option<SiteId>,
        status: Option<ConversationStatus>,
        limit: Option<u32>,
    ) -> Result<Ack, ChatError> {
        let listed = self
            .service
            .list_for_agent(&self.principal, site, status, limit)
            .await?;
        let mut read_state = BTreeMap::new();
        let mut conversations = Vec::with_capacity(listed.len());
        for AgentListing { conversation, read } in listed {
            if !read.is_empty() {
                read_state.insert(conversation.id, read);
            }
            conversations.push(conversation);
        }
        Ok(Ack {
            conversations: Some(conversations),
            read_state: Some(read_state),
            ..Ack::default()
        })
    }

    /// Queues the `read` events of `ids` (after a `resume`, or a `history` from the start). A
    /// failure to read them is logged, not the command's: positions are a nicety next to the
    /// messages.
    pub(super) async fn queue_read_events(&mut self, ids: &[ConversationId]) {
        match self.service.read_events(&self.principal, ids).await {
            Ok(events) => self.pending.extend(events),
            Err(error) => {
                tracing::warn!(session = %self.id, %error, "could not read read positions")
            }
        }
    }

    /// What this session's client is told of a read position stored by anyone (its own other
    /// sessions included): agents learn which agent read, visitors only that an agent did.
    pub(super) fn absorb_read(&mut self, receipt: &ReadReceipt) {
        let (role, agent_id) = match (&receipt.reader, &self.principal) {
            (Reader::Visitor, _) => (Role::Visitor, None),
            (Reader::Agent(_), Principal::Visitor { .. }) => (Role::Agent, None),
            (Reader::Agent(id), Principal::Agent { .. }) => (Role::Agent, Some(id.clone())),
        };
        self.pending.push_back(ServerEvent::Read {
            conversation_id: receipt.conversation_id,
            role,
            agent_id,
            seq: receipt.seq,
        });
    }
}
