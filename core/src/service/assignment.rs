//! Who a conversation is assigned to (issue 15): taking it, assigning it to another agent of
//! its site, transferring and unassigning it, each change but taking an unassigned
//! conversation for oneself told in the conversation by a `system` message that visitors see
//! too; and the directory of a site's agents that `assign` picks from.

use crate::agent_status::{AgentStatus, AgentStatusView};
use crate::agents::{fits_directory, AgentRecord, MAX_LISTED_AGENTS};
use crate::error::ChatError;
use crate::model::{
    Agent, AgentId, Conversation, ConversationId, MessageKind, NewMessage, Principal,
};
use crate::store::Appended;

use super::chat_service::{not_found, ChatService};

/// Who [`ChatService::assign_to`] gives a conversation to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    /// The calling agent.
    Caller,
    /// This agent of the directory.
    Agent(AgentId),
    /// Nobody: the conversation is left unassigned.
    Nobody,
}

impl Assignee {
    /// `assign`'s `agent_id`: the caller when absent.
    pub fn of(agent_id: Option<AgentId>) -> Self {
        agent_id.map_or(Self::Caller, Self::Agent)
    }
}

/// Longest agent name a system message quotes, in characters.
const MAX_QUOTED_NAME_CHARS: usize = 100;

/// The `system` message telling that `actor` changed the assignee from `before` to `after`;
/// `None` when nothing changed, or when `actor` took an unassigned conversation (as before
/// issue 15, taking one says nothing in it).
pub fn assignment_line(
    actor: &Agent,
    before: Option<&Agent>,
    after: Option<&Agent>,
) -> Option<String> {
    let name = |a: &Agent| {
        a.name
            .chars()
            .take(MAX_QUOTED_NAME_CHARS)
            .collect::<String>()
    };
    match (before, after) {
        (Some(b), Some(a)) if b.id == a.id => None,
        (None, None) => None,
        (None, Some(a)) if a.id == actor.id => None,
        (None, Some(a)) => Some(format!(
            "{} assigned the conversation to {}",
            name(actor),
            name(a)
        )),
        (Some(b), Some(a)) if a.id == actor.id => Some(format!(
            "{} took over the conversation from {}",
            name(actor),
            name(b)
        )),
        (Some(_), Some(a)) => Some(format!(
            "{} transferred the conversation to {}",
            name(actor),
            name(a)
        )),
        (Some(_), None) => Some(format!("{} unassigned the conversation", name(actor))),
    }
}

impl ChatService {
    /// Assigns a conversation to the calling agent.
    pub async fn assign(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<Conversation, ChatError> {
        self.assign_to(principal, id, Assignee::Caller).await
    }

    /// Gives conversation `id` to `to`: the change is stored, announced (`conversation`), and
    /// told in the conversation by a `system` message ([`assignment_line`]). Another agent must
    /// be in the directory and work for the conversation's site.
    pub async fn assign_to(
        &self,
        principal: &Principal,
        id: ConversationId,
        to: Assignee,
    ) -> Result<Conversation, ChatError> {
        let Principal::Agent { agent: actor, .. } = principal else {
            return Err(ChatError::Forbidden(
                "only agents can assign conversations".into(),
            ));
        };
        let before = self.authorized_conversation(principal, id).await?;
        let store = &self.inner.store;
        let target = match to {
            Assignee::Caller => Some(actor.clone()),
            Assignee::Agent(agent_id) if agent_id == actor.id => Some(actor.clone()),
            Assignee::Agent(agent_id) => {
                if !fits_directory(&agent_id, "") {
                    return Err(ChatError::BadRequest(
                        "agent_id must be 1..=256 bytes".into(),
                    ));
                }
                let record = store.agent(&agent_id).await?.ok_or_else(|| {
                    ChatError::NotFound(format!(
                        "agent `{}` is not known: agents are listed once they have connected",
                        agent_id.chars().take(70).collect::<String>()
                    ))
                })?;
                if !record.sites.contains(&before.site_id) {
                    return Err(ChatError::Forbidden(format!(
                        "agent `{}` is not an agent of site `{}`",
                        record.id, before.site_id
                    )));
                }
                Some(Agent {
                    id: record.id,
                    name: record.name,
                })
            }
            Assignee::Nobody => None,
        };
        let mut after = store
            .assign(id, target.as_ref())
            .await
            .map_err(not_found(id))?;
        if target.is_some() {
            // Taken by an agent: no longer waiting for one (offline capture, `offline.rs`).
            after = self.set_waiting(after, false).await;
        }
        let line = assignment_line(actor, before.assignee.as_ref(), target.as_ref());
        let Some(body) = line else {
            self.inner.publish_conversation(&after);
            return Ok(after);
        };
        let appended = store
            .append_message(NewMessage {
                attachment: None,
                conversation_id: id,
                client_msg_id: None,
                sender: principal.as_sender(),
                body,
                kind: MessageKind::System,
            })
            .await?;
        let Appended::Inserted(message) = appended else {
            // Without a client_msg_id nothing is a duplicate.
            self.inner.publish_conversation(&after);
            return Ok(after);
        };
        // The conversation as the system message left it: its newest message, seen by all.
        after.last_seq = after.last_seq.max(message.seq);
        after.visitor_last_seq = None;
        after.updated_at = after.updated_at.max(message.created_at);
        self.inner.publish_conversation(&after);
        self.inner.publish_message(&message, &after, true);
        Ok(after)
    }

    /// `list_agents`: the colleagues of the caller, each as an `agent_status` event shows them.
    /// The agents connected now on any gateway process who share a site with the caller (of
    /// `site` only, when given), from the roster (`signals.rs`); and, when the site is known
    /// (`site`, or the caller's only site), the directory's other agents of that site, whom
    /// `assign` can also pick (`connected: false`, status `offline`, `changed_at` = when they last
    /// opened a session). By name, at most [`MAX_LISTED_AGENTS`] and at most the answer budget in
    /// bytes.
    pub async fn list_agents(
        &self,
        principal: &Principal,
        site: Option<String>,
    ) -> Result<Vec<AgentStatusView>, ChatError> {
        let Principal::Agent { sites, .. } = principal else {
            return Err(ChatError::Forbidden("only agents list agents".into()));
        };
        if let Some(site) = &site {
            if !sites.contains(site) {
                return Err(ChatError::Forbidden(format!(
                    "you are not an agent of site `{}`",
                    site.chars().take(70).collect::<String>()
                )));
            }
        }
        let mut views = self.inner.roster().list(sites, site.as_deref());
        let directory_site = match (site, sites.list()) {
            (Some(site), _) => Some(site),
            (None, Some([only])) => Some(only.clone()),
            (None, _) => None,
        };
        if let Some(site) = directory_site {
            let records = self
                .inner
                .store
                .agents_of_site(&site, MAX_LISTED_AGENTS)
                .await?;
            for AgentRecord {
                id,
                name,
                sites,
                last_seen,
            } in records
            {
                if views.iter().any(|view| view.agent.id == id) {
                    continue;
                }
                views.push(AgentStatusView {
                    agent: Agent { id, name },
                    status: AgentStatus::Offline,
                    changed_at: last_seen,
                    sites: sites.to_claim(),
                    connected: false,
                });
            }
            views.sort_by(|a, b| {
                a.agent
                    .name
                    .cmp(&b.agent.name)
                    .then_with(|| a.agent.id.cmp(&b.agent.id))
            });
        }
        let mut budget = self.inner.config.max_answer_bytes.saturating_sub(256);
        let mut listed = Vec::with_capacity(views.len().min(MAX_LISTED_AGENTS as usize));
        for view in views.into_iter().take(MAX_LISTED_AGENTS as usize) {
            let size = serde_json::to_vec(&view).map_or(0, |json| json.len()) + 1;
            if size > budget {
                break;
            }
            budget -= size;
            listed.push(view);
        }
        Ok(listed)
    }

    /// Writes the agent of a session being opened into the directory, unless this process
    /// wrote the same record lately (`recorded_agents.rs`). A failure is logged and does not
    /// refuse the session: the directory only serves assignment.
    pub(super) async fn record_agent(&self, agent: &Agent, sites: &crate::model::Sites) {
        if !fits_directory(&agent.id, &agent.name) {
            return;
        }
        let recorded = &self.inner.recorded_agents;
        if !recorded.claim(&agent.id, &agent.name, sites, std::time::Instant::now()) {
            return;
        }
        let record = AgentRecord {
            id: agent.id.clone(),
            name: agent.name.clone(),
            sites: sites.clone(),
            last_seen: chrono::Utc::now(),
        };
        if let Err(error) = self.inner.store.record_agent(&record).await {
            recorded.forget(&agent.id);
            tracing::warn!(%error, "cannot record the agent in the directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, name: &str) -> Agent {
        Agent {
            id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn every_change_but_taking_an_unassigned_conversation_is_told() {
        let (alice, bob) = (agent("a", "Alice"), agent("b", "Bob"));
        assert_eq!(assignment_line(&alice, None, Some(&alice)), None);
        assert_eq!(assignment_line(&alice, Some(&alice), Some(&alice)), None);
        assert_eq!(assignment_line(&alice, None, None), None);
        assert_eq!(
            assignment_line(&alice, None, Some(&bob)).as_deref(),
            Some("Alice assigned the conversation to Bob")
        );
        assert_eq!(
            assignment_line(&alice, Some(&alice), Some(&bob)).as_deref(),
            Some("Alice transferred the conversation to Bob")
        );
        assert_eq!(
            assignment_line(&alice, Some(&bob), Some(&alice)).as_deref(),
            Some("Alice took over the conversation from Bob")
        );
        assert_eq!(
            assignment_line(&alice, Some(&bob), None).as_deref(),
            Some("Alice unassigned the conversation")
        );
    }
}
