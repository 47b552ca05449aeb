//! What a [`ChatSession`](crate::service::ChatSession) tells its client, [`Outbound`]: the answers and
//! replays queued by its commands, then live events from the hub, held back while the client
//! may still `resume`, with gaps filled from the store and duplicates dropped.

use crate::error::ErrorCode;
use crate::hub::HubEvent;
use crate::model::{Message, Principal, Sites};
use crate::protocol::{ErrorEvent, ServerEvent};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::session::{ChatSessionState, HeldRange, ReplayRange};

/// Most events a transport writes in one batch: the one [`ChatSessionState::next_event`] gave,
/// then what [`ChatSessionState::ready_events`] yields, with one flush for all; a bound so that
/// a session with a long backlog still reads its client between batches.
const READY_BATCH: usize = 64;

/// Messages read from the store at a time while a `resume` replay streams: what a session holds
/// in memory for its replay is one page, whatever the replay's length.
const REPLAY_PAGE: u32 = 50;

/// A live message whose predecessors this session has not seen is delivered after them, read
/// from the store; a hole larger than this ends the session instead (the client resumes, which
/// streams in pages).
const MAX_GAP_FILL: i64 = 200;

/// The session boundary: what [`ChatSession::next_event`](ChatSessionState::next_event) yields
/// to its transport, a [`ServerEvent`] to write or the reason to close.
///
/// Not merged with [`ServerEvent`]: the ends are not events a client receives (each transport
/// says them its own way: a close code, an HTTP status, a Socket.IO disconnect). Its three ends
/// are also [`SessionEnd`](crate::session_end::SessionEnd)s; they stay variants here, rather
/// than one `End(SessionEnd)`, so that a transport's match names exactly the ends a session can
/// produce (a `SessionEnd` also has the transport's own: client closed, peer timeout…).
// Events are moved straight to the transport and written; boxing them would add an allocation
// per event to save stack space in a value that never sits in a collection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// Write this event to the client.
    Event(ServerEvent),
    /// The session fell too far behind and was dropped from fan-out: close it with a code that
    /// tells the client to reconnect and resume.
    Lagged,
    /// The gateway is shutting down: close with "going away".
    ShuttingDown,
    /// The agent's token expired and no fresh one came (`auth`): close with 4001
    /// `token_expired`; the client reconnects with a new token and resumes.
    CredentialsExpired,
}

impl ChatSessionState {
    /// The next queued event the client may see ([`crate::visibility::event_for`]): every
    /// event a session gives its client leaves through here, so a note queued for a visitor
    /// (live, replayed or filling a gap; it still counts as delivered, so the next message is
    /// no gap) is dropped here.
    fn pop_visible(&mut self) -> Option<ServerEvent> {
        let role = self.principal.role();
        while let Some(event) = self.pending.pop_front() {
            if let Some(event) = crate::visibility::event_for(role, event) {
                return Some(event);
            }
        }
        None
    }

    /// Reads the next page of the replay into `pending`. Cancel-safe: state changes only once
    /// the page has been read.
    async fn stream_replay(&mut self) {
        let Some(range) = self.replay.front() else {
            return;
        };
        let want = REPLAY_PAGE.min((range.upto - range.after).clamp(0, i64::from(u32::MAX)) as u32);
        let read = self
            .service
            .messages_for(self.principal.role(), range.conversation, range.after, want)
            .await;
        let page = match read {
            Ok(page) => page,
            Err(error) => {
                // A replay cut short would leave a hole: end the session, and the client
                // resumes from what it got.
                tracing::warn!(session = %self.id, %error, "replay read failed; telling the client to resume");
                self.replay.clear();
                self.lagged.store(true, Ordering::Release);
                return;
            }
        };
        let Some(range) = self.replay.front_mut() else {
            return;
        };
        let upto = range.upto;
        let last = page.last().map_or(upto, |m| m.seq);
        for message in page {
            if message.seq > upto
                || range
                    .skip
                    .as_ref()
                    .is_some_and(|s| s.contains(&message.seq))
            {
                continue;
            }
            self.pending.push_back(ServerEvent::Message { message });
        }
        range.after = last;
        if last >= upto {
            self.replay.pop_front();
        }
    }

    /// The next thing to tell the client. Cancel-safe: an event taken from the queue is kept
    /// until it has been fully processed.
    ///
    /// Promise 3 (nothing missed, docs/promises.md): answers and replays before live events,
    /// live messages held while the client may still `resume`, gaps filled from the store,
    /// what was already handed over dropped. Promise 4 (bounded): what is held is bounded
    /// (`RESUME_GRACE` in `session.rs`), and a session whose hub queue filled
    /// ends with [`Outbound::Lagged`].
    pub async fn next_event(&mut self) -> Outbound {
        loop {
            if self
                .expires
                .is_some_and(|at| tokio::time::Instant::now() >= at)
            {
                self.expires = None;
                self.pending.clear();
                self.replay.clear();
                self.credentials_expired = true;
                return Outbound::Event(ServerEvent::Error(ErrorEvent {
                    id: None,
                    code: ErrorCode::TokenExpired,
                    retry_after_ms: None,
                    message: "agent token expired: reconnect with a fresh token, or send `auth` \
                              with one before the old token expires"
                        .into(),
                }));
            }
            if self.credentials_expired {
                return Outbound::CredentialsExpired;
            }
            if let Some(event) = self.pop_visible() {
                return Outbound::Event(event);
            }
            if !self.replay.is_empty() {
                // Boxed here and for `absorb` below: both read the store, and inline their
                // futures would make every idle session's task (which holds this one) as large
                // as the largest store call (issue-12 heap profile).
                Box::pin(self.stream_replay()).await;
                continue;
            }
            if *self.shutdown.borrow() {
                return Outbound::ShuttingDown;
            }
            if self.lagged.load(Ordering::Acquire) {
                return Outbound::Lagged;
            }
            let now = tokio::time::Instant::now();
            let grace_until = self.resume_grace.filter(|until| now < *until);
            if grace_until.is_none() {
                self.resume_grace = None;
            }
            if grace_until.is_none() && !self.held_ranges.is_empty() {
                self.release_held_ranges();
                continue;
            }
            // Held messages go first once the grace is over.
            let ready = match self.stash.take() {
                Some(event) => Some(event),
                None if grace_until.is_none() => self.held.pop_front(),
                None => None,
            };
            let event = match ready {
                Some(event) => event,
                None => {
                    // One timer for both deadlines (each is handled at the top of the loop): a
                    // timer is 112 bytes of every idle session's task.
                    let wake_at = match (self.expires, grace_until) {
                        (Some(expires), Some(grace)) => Some(expires.min(grace)),
                        (expires, grace) => expires.or(grace),
                    };
                    tokio::select! {
                        event = self.rx.recv() => match event {
                            Some(event) => event,
                            None => return Outbound::Lagged,
                        },
                        _ = self.shutdown.changed() => continue,
                        _ = tokio::time::sleep_until(wake_at.unwrap_or(now)), if wake_at.is_some() => continue,
                    }
                }
            };
            if let (Some(_), HubEvent::Message(message)) = (grace_until, &*event) {
                // Conversation and presence changes go through at once; messages wait for the
                // resume that decides where the client's replay ends.
                self.hold_message(message, event.clone());
                continue;
            }
            if self.absorb_ready(&event) {
                continue;
            }
            // A gap to fill from the store first: kept in `stash` while the read is under way,
            // so that a cancelled `next_event` takes it up again.
            self.stash = Some(event.clone());
            Box::pin(self.absorb_after_gap(&event)).await;
            self.stash = None;
        }
    }

    /// The events to write in the same batch as the one [`next_event`](Self::next_event) just
    /// gave: [`next_ready_event`](Self::next_ready_event) until it has nothing, at most
    /// `READY_BATCH` − 1 of them (64 in a batch with the first).
    pub fn ready_events(&mut self) -> impl Iterator<Item = ServerEvent> + '_ {
        std::iter::from_fn(|| self.next_ready_event()).take(READY_BATCH - 1)
    }

    /// The next event that is ready now, without waiting, a timer or a store read: what a
    /// transport writes in the same batch (one flush, one system call) as the event
    /// [`next_event`](Self::next_event) just gave it. `None` when nothing is ready that way:
    /// the caller awaits `next_event` again, which also gives every ending and every event
    /// that needs the store (a replay page, a gap fill) or a timer (the resume grace, token
    /// expiry). Never loses an event: what it takes from the hub and cannot absorb on the spot
    /// waits in `stash` for `next_event`.
    pub fn next_ready_event(&mut self) -> Option<ServerEvent> {
        loop {
            let expired = self
                .expires
                .is_some_and(|at| tokio::time::Instant::now() >= at);
            if expired || self.credentials_expired {
                // The expiry's error and close are `next_event`'s to give.
                return None;
            }
            if let Some(event) = self.pop_visible() {
                return Some(event);
            }
            if !self.replay.is_empty()
                || self.stash.is_some()
                || self.resume_grace.is_some()
                || !self.held.is_empty()
                || !self.held_ranges.is_empty()
                || *self.shutdown.borrow()
                || self.lagged.load(Ordering::Acquire)
            {
                return None;
            }
            let event = self.rx.try_recv()?;
            if !self.absorb_ready(&event) {
                self.stash = Some(event);
                return None;
            }
        }
    }

    /// Holds `message` (the hub's `event`) back during the resume grace, in memory while fewer
    /// than `session_queue` are held, as a range to replay from the store after that (see
    /// [`RESUME_GRACE`]). Never ends the session.
    fn hold_message(&mut self, message: &Message, event: Arc<HubEvent>) {
        let limit = self.service.inner.config.session_queue.max(1);
        if self.held_ranges.is_empty() && self.held.len() < limit {
            self.held.push_back(event);
            return;
        }
        if !self.held.is_empty() {
            crate::metrics::held_spilled(self.transport);
            tracing::debug!(session = %self.id, held = self.held.len(), "held messages let go; they will be replayed from the store");
        }
        for held in std::mem::take(&mut self.held) {
            if let HubEvent::Message(m) = &*held {
                self.held_ranges
                    .entry(m.conversation_id)
                    .and_modify(|r| r.widen(m.seq))
                    .or_insert_with(|| HeldRange::of(m.seq));
            }
        }
        self.held_ranges
            .entry(message.conversation_id)
            .and_modify(|r| r.widen(message.seq))
            .or_insert_with(|| HeldRange::of(message.seq));
        if self.held_ranges.len() >= limit {
            // As many conversations as a session may queue events: stop holding rather than
            // grow; the ranges are replayed now and what follows is live.
            self.resume_grace = None;
        }
    }

    /// The grace is over: queues the replay of every range let go while holding, after any
    /// replay a `resume` queued, and counts those messages as handed over so that their live
    /// copies (and anything older) are dropped.
    fn release_held_ranges(&mut self) {
        let mut ranges: Vec<_> = self.held_ranges.drain().collect();
        ranges.sort_by_key(|(conversation, _)| *conversation);
        for (conversation, held) in ranges {
            let handed = self.delivered.get(&conversation).copied();
            let after = handed.map_or(held.after, |h| h.max(held.after));
            if after >= held.upto {
                continue;
            }
            if handed.is_none() {
                self.live_from.insert(conversation, after + 1);
            }
            self.delivered.insert(conversation, held.upto);
            crate::metrics::replayed(self.transport, (held.upto - after) as u64);
            self.replay.push_back(ReplayRange {
                conversation,
                after,
                upto: held.upto,
                skip: None,
            });
        }
    }

    /// Turns a hub event into what this client should see, queued in `pending`, when that needs
    /// no store read: `false` (and nothing changed) for a message after a gap, which
    /// [`absorb_after_gap`](Self::absorb_after_gap) fills from the store. Drops what was already
    /// delivered.
    fn absorb_ready(&mut self, event: &HubEvent) -> bool {
        match event {
            HubEvent::Message(message) => {
                let conversation = message.conversation_id;
                let seen = self.delivered.get(&conversation).copied();
                match seen {
                    Some(seen) if message.seq <= seen => return true,
                    Some(seen) if message.seq > seen + 1 + MAX_GAP_FILL => {
                        tracing::debug!(session = %self.id, seen, seq = message.seq, "gap too large to fill live; telling the client to resume");
                        self.lagged.store(true, Ordering::Release);
                        return true;
                    }
                    Some(seen) if message.seq > seen + 1 => return false,
                    _ => {}
                }
                self.deliver_live(message);
            }
            HubEvent::Conversation(conversation) => {
                self.pending.push_back(ServerEvent::Conversation {
                    conversation: conversation.clone(),
                });
            }
            HubEvent::Presence(presence) => match &self.principal {
                Principal::Visitor { site_id, .. } => {
                    let online = presence.online(site_id);
                    if self.presence_told != Some(online) {
                        self.presence_told = Some(online);
                        self.pending.push_back(ServerEvent::Presence {
                            agents_online: online,
                        });
                    }
                }
                Principal::Agent { .. } => {}
            },
            HubEvent::Read(receipt) => self.absorb_read(receipt),
            HubEvent::Typing(typing) => {
                // Not one's own typing back (an agent's goes to their site's agents too).
                let own = self.principal.as_sender();
                if typing.sender.role != own.role || typing.sender.id != own.id {
                    self.pending.push_back(ServerEvent::Typing(typing.clone()));
                }
            }
            HubEvent::AgentStatus(view) => {
                if let Principal::Agent { sites, .. } = &self.principal {
                    let theirs = Sites::parse(&view.sites.join(","));
                    if theirs.is_ok_and(|theirs| crate::agent_status::sites_overlap(sites, &theirs))
                    {
                        self.pending
                            .push_back(ServerEvent::AgentStatus(view.clone()));
                    }
                }
            }
        }
        true
    }

    /// Queues a live `message` as delivered: the next in its conversation for this session.
    fn deliver_live(&mut self, message: &Message) {
        let conversation = message.conversation_id;
        if !self.delivered.contains_key(&conversation) {
            self.live_from.insert(conversation, message.seq);
        }
        self.delivered.insert(conversation, message.seq);
        crate::metrics::observe_delivery(message, self.principal.role(), self.transport);
        self.pending.push_back(ServerEvent::Message {
            message: message.clone(),
        });
    }

    /// A live message whose predecessors this session has not seen (what
    /// [`absorb_ready`](Self::absorb_ready) refused): the missing ones read from the store, then
    /// the message itself. A failed read ends the session (the client resumes from its cursor).
    async fn absorb_after_gap(&mut self, event: &HubEvent) {
        let HubEvent::Message(message) = event else {
            return;
        };
        let conversation = message.conversation_id;
        let Some(seen) = self.delivered.get(&conversation).copied() else {
            return;
        };
        let read = self
            .service
            .messages_for(
                self.principal.role(),
                conversation,
                seen,
                (message.seq - seen - 1) as u32,
            )
            .await;
        match read {
            Ok(missing) => self.pending.extend(
                missing
                    .into_iter()
                    .filter(|m| m.seq < message.seq)
                    .map(|message| ServerEvent::Message { message }),
            ),
            Err(error) => {
                // Delivering past a hole would break "no gap": end the session instead, and
                // the client resumes from its cursor.
                tracing::warn!(session = %self.id, %error, "gap fill failed; telling the client to resume");
                self.lagged.store(true, Ordering::Release);
                return;
            }
        }
        self.deliver_live(message);
    }
}
