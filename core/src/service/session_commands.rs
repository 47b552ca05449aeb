//! What a [`ChatSession`](crate::service::ChatSession) does with its client's commands: each is answered
//! by exactly one `ack` or `error` event; `resume` and a recovery also queue the replay that
//! `session_events.rs` streams.

use crate::error::{ChatError, ErrorCode};
use crate::model::{
    Conversation, ConversationId, ConversationStatus, MessageKind, Principal, Role, SiteId,
};
use crate::protocol::{Ack, ClientCommand, ClientFrame, ErrorEvent, ServerEvent};
use crate::store::Appended;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::assignment::Assignee;
use super::session::{instant_of_unix, ChatSessionState, ReplayRange};

/// What a resume does with a conversation the session may not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unauthorized {
    /// Refuse the whole resume (`forbidden`): the client asked for it by name.
    Refuse,
    /// Leave it out: a recovery's remembered positions.
    Skip,
}

impl ChatSessionState {
    /// Recovers a client that says it has `cursors` and was last sent something at
    /// `since_unix_ms`: like `resume`, and for an agent also every conversation changed since
    /// then, its messages replayed from the start when the client had none of them (a
    /// conversation created while it was away). Answers like [`handle`](Self::handle).
    pub async fn recover(
        &mut self,
        mut cursors: BTreeMap<ConversationId, i64>,
        since_unix_ms: Option<i64>,
    ) -> ServerEvent {
        self.resume_grace = None;
        let since = since_unix_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .filter(|_| self.principal.role() == Role::Agent);
        let mut result = Ok(());
        if let Some(since) = since {
            result = self
                .replay_conversation_changes(None, since, Some(&mut cursors))
                .await;
        }
        let result = match result {
            // A recovering client's positions may name conversations its new credentials no
            // longer cover (an agent whose token now lists fewer sites): those are left out
            // rather than failing the whole recovery.
            Ok(()) => self.resume(cursors, Unauthorized::Skip).await,
            Err(error) => Err(error),
        };
        self.answer(
            None,
            result.map(|replayed| Ack {
                replayed: Some(replayed),
                ..Ack::default()
            }),
        )
    }

    /// Answers one decoded client frame with exactly one `ack` or `error` event. Events that the
    /// command causes (replayed messages) follow through [`next_event`](ChatSessionState::next_event).
    pub async fn handle(&mut self, frame: ClientFrame) -> ServerEvent {
        let id = frame.id;
        if matches!(
            frame.command,
            ClientCommand::Resume { .. } | ClientCommand::Send { .. }
        ) {
            self.resume_grace = None;
        }
        let command = frame.command.type_name();
        let result = self.execute(frame.command).await;
        if let Err(ChatError::RateLimited { .. }) = &result {
            crate::metrics::command_rate_limited(command);
        }
        self.answer(id, result)
    }

    /// The `ack` or `error` event answering command `id`.
    fn answer(&self, id: Option<String>, result: Result<Ack, ChatError>) -> ServerEvent {
        match result {
            Ok(mut ack) => {
                ack.id = id;
                // The same rule as every other event ([`crate::visibility`]); an answer is
                // never dropped, only what it may not show is left out of it.
                let role = self.principal.role();
                crate::visibility::event_for(role, ServerEvent::Ack(Box::new(ack)))
                    .unwrap_or_else(|| ServerEvent::Ack(Box::default()))
            }
            Err(error) => {
                if matches!(error.code(), ErrorCode::Internal | ErrorCode::Unavailable) {
                    tracing::warn!(session = %self.id, %error, "command failed");
                }
                ServerEvent::Error(ErrorEvent {
                    id,
                    code: error.code(),
                    message: error.client_message(),
                    retry_after_ms: error.retry_after().map(|d| d.as_millis() as u64),
                })
            }
        }
    }

    async fn execute(&mut self, command: ClientCommand) -> Result<Ack, ChatError> {
        let service = self.service.clone();
        let principal = &self.principal;
        match command {
            ClientCommand::Send {
                conversation_id,
                client_msg_id,
                body,
                note,
                attachment_id,
            } => {
                if let Err(retry_after) = service.inner.take_visitor_send(principal) {
                    crate::metrics::send_rate_limited(self.transport);
                    return Err(ChatError::RateLimited {
                        what: "sending too fast".into(),
                        retry_after,
                    });
                }
                let known = conversation_id
                    .or(self.open_conversation)
                    .and_then(|id| self.known_conversation(id));
                let known_epoch = known.as_ref().map(|(c, epoch)| (c.id, *epoch));
                let changes = service.inner.conversation_changes.load(Ordering::SeqCst);
                let (appended, conversation) = service
                    .send_to_visitor(
                        principal,
                        conversation_id,
                        super::Draft {
                            client_msg_id,
                            body,
                            kind: if note {
                                MessageKind::Note
                            } else {
                                MessageKind::Text
                            },
                            attachment_id,
                        },
                        known.map(|(c, _)| c),
                        self.profile.as_ref(),
                    )
                    .await?;
                match known_epoch {
                    // Written to the remembered copy, which was current: it still is as far
                    // as this send goes (a reopen it made counts as a change).
                    Some((id, epoch)) if id == conversation.id => {
                        if conversation.status == ConversationStatus::Open
                            && self.principal.role() == Role::Visitor
                        {
                            self.open_conversation = Some(id);
                        }
                        self.remember(conversation, epoch)
                    }
                    _ => self.remember_if_unchanged(conversation, changes),
                }
                let principal = &self.principal;
                let duplicate = matches!(appended, Appended::Duplicate(_));
                if !duplicate {
                    crate::metrics::message_committed(principal.role(), self.transport.as_str());
                }
                let message = match appended {
                    Appended::Inserted(m) | Appended::Duplicate(m) => m,
                };
                self.typing_ended_by_message(message.conversation_id);
                self.context
                    .store_pending(&self.principal, &*self.service.inner.store, &self.id)
                    .await;
                Ok(Ack {
                    message: Some(message),
                    duplicate: Some(duplicate),
                    ..Ack::default()
                })
            }
            ClientCommand::Resume {
                cursors,
                conversations_since,
                site,
            } => {
                if let Some(since) = conversations_since {
                    self.replay_conversation_changes(site, since, None).await?;
                }
                let replayed = self.resume(cursors, Unauthorized::Refuse).await?;
                Ok(Ack {
                    replayed: Some(replayed),
                    ..Ack::default()
                })
            }
            ClientCommand::History {
                conversation_id,
                after_seq,
                limit,
            } => {
                let page = service
                    .history(principal, conversation_id, after_seq, limit)
                    .await?;
                if after_seq <= 0 {
                    // A client loading a conversation from its start learns how far the other
                    // side has read it.
                    self.queue_read_events(&[conversation_id]).await;
                }
                Ok(Ack {
                    messages: Some(page.messages),
                    more: Some(page.more),
                    ..Ack::default()
                })
            }
            ClientCommand::ListConversations {
                site,
                status,
                limit,
            } => self.list_with_read_state(site, status, limit).await,
            ClientCommand::Assign {
                conversation_id,
                agent_id,
            } => Ok(Ack {
                conversation: Some(
                    service
                        .assign_to(principal, conversation_id, Assignee::of(agent_id))
                        .await?,
                ),
                ..Ack::default()
            }),
            ClientCommand::Unassign { conversation_id } => Ok(Ack {
                conversation: Some(
                    service
                        .assign_to(principal, conversation_id, Assignee::Nobody)
                        .await?,
                ),
                ..Ack::default()
            }),
            ClientCommand::ListAgents { site } => Ok(Ack {
                agents: Some(service.list_agents(principal, site).await?),
                ..Ack::default()
            }),
            ClientCommand::Close { conversation_id } => Ok(Ack {
                conversation: Some(service.close(principal, conversation_id).await?),
                ..Ack::default()
            }),
            ClientCommand::Auth { token } => {
                let exp = self.renew(&token)?;
                Ok(Ack {
                    expires_at: Some(exp),
                    ..Ack::default()
                })
            }
            ClientCommand::Context { context } => {
                self.context
                    .report(&self.principal, &*self.service.inner.store, context)
                    .await
            }
            ClientCommand::Read {
                conversation_id,
                seq,
            } => self.read(conversation_id, seq).await,
            ClientCommand::Typing {
                conversation_id,
                typing,
            } => self.typing(conversation_id, typing).await,
            ClientCommand::SetStatus { status } => self.set_status(status),
            ClientCommand::Contact { email } => {
                let now = std::time::Instant::now();
                let bucket = self.contact_bucket.get_or_insert_with(|| {
                    crate::rate::TokenBucket::new(super::offline::CONTACT_RATE, now)
                });
                if let Err(retry_after) = bucket.try_take(now) {
                    return Err(ChatError::RateLimited {
                        what: "leaving a contact email too often (1 every 5 s, 3 at once)".into(),
                        retry_after,
                    });
                }
                let profile = service.contact(principal, &email).await?;
                // The profile this session stores with a first conversation keeps the email.
                if let Some(own) = self.profile.as_mut().filter(|p| !p.verified) {
                    own.email = profile.and_then(|p| p.email);
                }
                Ok(Ack::default())
            }
            ClientCommand::Visitor { conversation_id } => Ok(Ack {
                visitor: Some(Box::new(
                    service.visitor_of(principal, conversation_id).await?,
                )),
                ..Ack::default()
            }),
            ClientCommand::SearchConversations {
                query,
                site,
                status,
                cursor,
                limit,
            } => {
                let request = crate::service::SearchRequest {
                    query,
                    site,
                    status,
                    cursor,
                    limit,
                };
                let page = service.search(principal, request).await?;
                Ok(Ack {
                    results: Some(page.results),
                    next_cursor: page.next_cursor,
                    ..Ack::default()
                })
            }
        }
    }

    /// Checks a fresh agent token for this session and moves its expiry to the token's.
    fn renew(&mut self, token: &str) -> Result<u64, ChatError> {
        let Principal::Agent { agent, sites } = &self.principal else {
            return Err(ChatError::Forbidden(
                "only agent sessions renew credentials; visitor tokens do not expire".into(),
            ));
        };
        let Some(tokens) = self.service.inner.agent_tokens.get() else {
            return Err(ChatError::BadRequest(
                "this gateway does not renew credentials".into(),
            ));
        };
        let verified = tokens.verify_with_expiry(token).map_err(|e| {
            ChatError::Unauthorized(crate::auth::Authenticator::describe_agent_refusal(&e))
        })?;
        let (renewed, exp) = (verified.agent, verified.expires_at);
        if renewed.id != agent.id {
            return Err(ChatError::Forbidden(format!(
                "the token names agent {}, this session is agent {}",
                renewed.id, agent.id
            )));
        }
        // The session's subscriptions follow its sites: a token for other sites needs a new
        // session.
        if verified.sites != *sites {
            return Err(ChatError::Forbidden(format!(
                "the token is for sites `{}`, this session for `{sites}`: reconnect with it",
                verified.sites
            )));
        }
        self.expires = Some(instant_of_unix(exp));
        Ok(exp)
    }

    /// Queues a `conversation` event for each conversation of `site` (default: every site of
    /// the agent) changed after `since`,
    /// oldest first: the list changes an agent missed while disconnected.
    /// With `unseen`, each changed conversation missing from those cursors is added at 0, so
    /// that its messages are replayed too (a recovering client that never saw it).
    pub(super) async fn replay_conversation_changes(
        &mut self,
        site: Option<SiteId>,
        since: chrono::DateTime<chrono::Utc>,
        unseen: Option<&mut BTreeMap<ConversationId, i64>>,
    ) -> Result<(), ChatError> {
        let mut changed: Vec<Conversation> = self
            .service
            .list(&self.principal, site, None, Some(500))
            .await?
            .into_iter()
            .filter(|c| c.updated_at > since)
            .collect();
        changed.reverse();
        if let Some(cursors) = unseen {
            for c in &changed {
                cursors.entry(c.id).or_insert(0);
            }
        }
        self.pending.extend(
            changed
                .into_iter()
                .map(|conversation| ServerEvent::Conversation { conversation }),
        );
        Ok(())
    }

    /// Promise 3 (nothing missed, docs/promises.md): replays what the client missed, then lets
    /// live events through with no gap and no duplicate: the session is already subscribed, so
    /// anything committed after the reads below arrives live, and live events at or below the
    /// replayed position are dropped.
    ///
    /// The replay streams: each conversation's end is fixed now (its `last_seq`), and
    /// [`next_event`](ChatSessionState::next_event) reads the messages from the store one page
    /// at a time as the client takes them, before any live event. Returns how many messages
    /// will be replayed.
    pub(super) async fn resume(
        &mut self,
        cursors: BTreeMap<ConversationId, i64>,
        unauthorized: Unauthorized,
    ) -> Result<u64, ChatError> {
        if cursors.len() > 500 {
            return Err(ChatError::BadRequest(
                "resume at most 500 conversations at once".into(),
            ));
        }
        let mut ranges = Vec::with_capacity(cursors.len());
        let mut count = 0u64;
        for (conversation_id, cursor) in cursors {
            if cursor < 0 {
                return Err(ChatError::BadRequest("cursors must be >= 0".into()));
            }
            let conversation = match self
                .service
                .authorized_conversation(&self.principal, conversation_id)
                .await
            {
                Ok(conversation) => conversation,
                Err(ChatError::Forbidden(_)) if unauthorized == Unauthorized::Skip => continue,
                Err(error) => return Err(error),
            };
            // What this session already handed over for the conversation is not sent again:
            // everything up to `delivered` when an earlier resume set it, or from `live_from`
            // up to `delivered` when it was first delivered live.
            let skip = self.delivered.get(&conversation_id).map(|&upto| {
                let from = self.live_from.get(&conversation_id).copied().unwrap_or(1);
                from..=upto
            });
            // Sequence numbers have no holes, so the count is known without reading, except
            // for a visitor when notes (which a visitor is not sent) may be among them.
            let upto = conversation.last_seq;
            let overlap = skip
                .as_ref()
                .map(|skip| ((*skip.start()).max(cursor + 1), (*skip.end()).min(upto)));
            let mut missing = (upto - cursor).max(0);
            if let Some((from, to)) = overlap {
                missing -= (to - from + 1).max(0);
            }
            if missing > 0 && self.principal.role() == Role::Visitor {
                // A visitor is sent no note: count what it is sent (one indexed count, only
                // when something was missed).
                let store = &self.service.inner.store;
                let mut visible = store
                    .visitor_message_count(conversation_id, cursor, upto)
                    .await?;
                if let Some((from, to)) = overlap.filter(|(from, to)| from <= to) {
                    visible = visible.saturating_sub(
                        store
                            .visitor_message_count(conversation_id, from - 1, to)
                            .await?,
                    );
                }
                missing = visible as i64;
            }
            count += missing as u64;
            ranges.push(ReplayRange {
                conversation: conversation_id,
                after: cursor,
                upto,
                skip,
            });
        }
        // Only now, with every read done, change state: a failed resume leaves nothing half-done.
        crate::metrics::replayed(self.transport, count);
        // How far the other side has read each resumed conversation: before the replay, one
        // event per conversation at most (so bounded like the cursors).
        let ids: Vec<ConversationId> = ranges.iter().map(|r| r.conversation).collect();
        self.queue_read_events(&ids).await;
        for range in ranges {
            let handed = self
                .delivered
                .get(&range.conversation)
                .copied()
                .unwrap_or(0);
            self.delivered
                .insert(range.conversation, range.upto.max(handed));
            self.live_from.remove(&range.conversation);
            // Every message let go while holding was committed before this resume read the
            // conversation's end, so this replay covers it.
            self.held_ranges.remove(&range.conversation);
            if range.after < range.upto {
                self.replay.push_back(range);
            }
        }
        Ok(count)
    }
}
