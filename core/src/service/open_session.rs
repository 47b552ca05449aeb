//! Opening a [`ChatSession`]: what the main site said about the visitor is stored, the session
//! joins the hub's topics and is counted, and its first event, `welcome`, is queued. The
//! session's `Drop` (in `session.rs`) undoes the joining and the counting.

use crate::error::ChatError;
use crate::hub::{HubEvent, Topic};
use crate::model::{Principal, Role, Visitor, VisitorId};
use crate::protocol::{ServerEvent, Welcome};
use crate::session_end::TransportKind;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use super::chat_service::{ChatService, VisitorIntro};
use super::context::ContextState;
use super::session::{ChatSession, ChatSessionState, RESUME_GRACE};

impl ChatService {
    /// Opens a session for an authenticated principal. For visitors, `visitor_token` is the token
    /// the client will be told to keep (minted or presented). The first event is `welcome`.
    pub async fn open_session(
        &self,
        principal: Principal,
        visitor_token: Option<String>,
        transport: TransportKind,
    ) -> Result<ChatSession, ChatError> {
        self.open_session_with(principal, visitor_token, transport, VisitorIntro::default())
            .await
    }

    /// [`ChatService::open_session`] for a visitor the main site said something about
    /// ([`VisitorIntro`]): a verified user's profile is stored at once, an unverified one once
    /// the visitor has a conversation; an anonymous visitor who logged in hands their open
    /// conversation to the user when the user has none.
    pub async fn open_session_with(
        &self,
        principal: Principal,
        visitor_token: Option<String>,
        transport: TransportKind,
        intro: VisitorIntro,
    ) -> Result<ChatSession, ChatError> {
        if let Principal::Visitor {
            visitor_id,
            site_id,
        } = &principal
        {
            self.introduce(*visitor_id, site_id, &intro).await?;
        }
        if let Principal::Agent { agent, sites } = &principal {
            // Before the session exists: a cancelled open leaves nothing counted.
            self.record_agent(agent, sites).await;
        }
        let hub = &self.inner.hub;
        // No visitor row yet: it is written with the visitor's first conversation (see
        // `send_to_visitor`), so connecting alone leaves nothing in the store.
        // Subscribe before reading state, so nothing committed in between is missed.
        let sub = hub.register(self.inner.config.session_queue);
        let session_id = format!(
            "s-{:x}-{}",
            sub.id,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut session = ChatSession(Box::new(ChatSessionState {
            id: session_id.clone(),
            principal: principal.clone(),
            transport,
            service: self.clone(),
            subscriber: sub.id,
            rx: sub.rx,
            lagged: sub.lagged,
            shutdown: self.inner.shutdown.subscribe(),
            delivered: HashMap::new(),
            live_from: HashMap::new(),
            resume_grace: Some(tokio::time::Instant::now() + RESUME_GRACE),
            held: VecDeque::new(),
            held_ranges: HashMap::new(),
            pending: VecDeque::new(),
            stash: None,
            replay: VecDeque::new(),
            credentials_expired: false,
            expires: None,
            counted_as_agent: false,
            counted: false,
            admission: None,
            known: HashMap::new(),
            open_conversation: None,
            presence_told: None,
            profile: intro.profile,
            context: ContextState::new(false),
            reads: crate::read_receipts::ReadCoalescer::new(std::time::Instant::now()),
            signals: None,
            contact_bucket: None,
        }));
        let welcome = match &principal {
            Principal::Visitor {
                visitor_id,
                site_id,
            } => {
                hub.subscribe(sub.id, Topic::Visitor(*visitor_id));
                hub.subscribe(sub.id, Topic::Visitors);
                let changes = self.inner.conversation_changes.load(Ordering::SeqCst);
                let conversation = self
                    .inner
                    .store
                    .open_conversation_of(site_id, *visitor_id)
                    .await?;
                if let Some(c) = &conversation {
                    session.remember_if_unchanged(c.clone(), changes);
                    session.context = ContextState::new(true);
                }
                let agents_online = self.inner.agents_online().online(site_id);
                session.presence_told = Some(agents_online);
                Welcome {
                    role: Role::Visitor,
                    session_id,
                    visitor_id: Some(*visitor_id),
                    visitor_token,
                    agent: None,
                    status: None,
                    sites: None,
                    conversation,
                    agents_online,
                    preferred_transport: Some(self.rollout().transport_for(site_id, *visitor_id)),
                    uploads: self.upload_limits(),
                }
            }
            Principal::Agent { agent, sites } => {
                match sites.list() {
                    None => hub.subscribe(sub.id, Topic::Agents),
                    Some(list) => {
                        for site in list {
                            hub.subscribe(sub.id, Topic::Site(site.clone()));
                        }
                    }
                }
                session.counted_as_agent = true;
                // Counted in the visitors' presence only when the agent is online (a status
                // set before a reconnect is remembered).
                let (status, change) = self.inner.roster.join(hub, agent, sites);
                self.inner.apply_roster_change(change);
                // After joining: the session is not told of its own arrival (`welcome` says it).
                hub.subscribe(sub.id, Topic::Staff);
                let online = self.inner.agents_online();
                Welcome {
                    role: Role::Agent,
                    session_id,
                    visitor_id: None,
                    visitor_token: None,
                    agent: Some(agent.clone()),
                    status: Some(status),
                    sites: Some(sites.to_claim()),
                    conversation: None,
                    agents_online: online.sessions,
                    preferred_transport: None,
                    uploads: self.upload_limits(),
                }
            }
        };
        session
            .pending
            .push_back(ServerEvent::Welcome(Box::new(welcome)));
        self.count_session(transport, &session.principal, 1);
        session.counted = true;
        Ok(session)
    }

    /// Stores what the main site said about a visitor and carries out a login merge.
    async fn introduce(
        &self,
        visitor_id: VisitorId,
        site_id: &str,
        intro: &VisitorIntro,
    ) -> Result<(), ChatError> {
        let store = &self.inner.store;
        let Some(profile) = &intro.profile else {
            return Ok(());
        };
        let visitor = Visitor {
            id: visitor_id,
            site_id: site_id.to_owned(),
            created_at: chrono::Utc::now(),
            profile: Some(profile.clone()),
        };
        // A verified user is written on connect (the main site vouched for them); anyone can
        // claim unverified fields, so those are written only for a visitor already stored.
        let write = profile.verified
            || store
                .visitor(visitor_id)
                .await?
                .is_some_and(|stored| stored.profile.as_ref() != Some(profile));
        if write {
            store.ensure_visitor(&visitor).await?;
        }
        let Some(anonymous) = intro.merge_from else {
            return Ok(());
        };
        if store
            .open_conversation_of(site_id, visitor_id)
            .await?
            .is_some()
        {
            return Ok(());
        }
        if let Some(open) = store.open_conversation_of(site_id, anonymous).await? {
            let moved = store.move_conversation(open.id, visitor_id).await?;
            tracing::debug!(conversation = %moved.id, "anonymous visitor logged in: conversation moved to the user");
            // The anonymous visitor's sessions hear of it too (the event goes to both topics).
            self.inner.hub.publish(
                &[Topic::Visitor(anonymous)],
                HubEvent::Conversation(moved.clone()),
            );
            self.inner.publish_conversation(&moved);
        }
        Ok(())
    }
}
