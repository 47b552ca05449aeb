//! Offline capture (issue 15): a conversation is marked `waiting` when its visitor writes while
//! no agent of the site is online, and unmarked when an agent replies or takes it; a visitor
//! may leave an email address (`contact`) for the agents to answer later.

use crate::error::ChatError;
use crate::model::{Conversation, Principal, Role, Visitor, VisitorProfile};
use crate::rate::RateLimit;

use super::chat_service::ChatService;

/// Longest contact email, in bytes (RFC 5321's path limit).
pub const MAX_CONTACT_EMAIL_BYTES: usize = 254;

/// `contact` commands a session may make: 1 every 5 s, 3 at once (a visitor correcting a typo).
pub(super) const CONTACT_RATE: RateLimit = RateLimit {
    per_sec: 0.2,
    burst: 3,
};

/// Checks a visitor-typed email address: 3..=254 bytes, one `@` with something before it and a
/// dotted domain after it, no whitespace or control characters. Deliberately loose beyond
/// that: the address is shown to agents as text, never used to send mail by the gateway.
pub fn validate_contact_email(email: &str) -> Result<(), ChatError> {
    if email.len() > MAX_CONTACT_EMAIL_BYTES {
        return Err(ChatError::TooLarge(format!(
            "email has {} bytes; the limit is {MAX_CONTACT_EMAIL_BYTES}",
            email.len()
        )));
    }
    let well_formed = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>'))
        }
        None => false,
    };
    if !well_formed {
        return Err(ChatError::BadRequest(
            "email must look like name@example.com".into(),
        ));
    }
    Ok(())
}

impl ChatService {
    /// After a message was committed in `conversation`: a visitor's message while no agent of
    /// the site is online marks it waiting, an agent's reply unmarks it (not a note: callers skip
    /// notes, which the visitor never sees). The message is
    /// already committed and acknowledged either way, so a failure here is logged, not returned.
    pub(super) async fn follow_waiting(
        &self,
        principal: &Principal,
        conversation: Conversation,
    ) -> Conversation {
        let waiting = match principal.role() {
            Role::Visitor => {
                conversation.waiting
                    || self.inner.agents_online().online(&conversation.site_id) == 0
            }
            Role::Agent => false,
        };
        self.set_waiting(conversation, waiting).await
    }

    /// Sets the conversation's `waiting` mark when it differs, announcing the change.
    pub(super) async fn set_waiting(
        &self,
        conversation: Conversation,
        waiting: bool,
    ) -> Conversation {
        if conversation.waiting == waiting {
            return conversation;
        }
        match self.inner.store.set_waiting(conversation.id, waiting).await {
            Ok(changed) => {
                self.inner.publish_conversation(&changed);
                changed
            }
            Err(error) => {
                tracing::warn!(conversation = %conversation.id, %error, "could not set `waiting`");
                conversation
            }
        }
    }

    /// `contact`: stores the email a visitor typed on their profile, unverified, keeping what
    /// else the profile holds. A verified profile (the main site vouched for it) is left as it
    /// is: the store never replaces a verified profile with an unverified one. Creates the
    /// visitor's row when they have none yet. Returns the profile the visitor has now.
    pub async fn contact(
        &self,
        principal: &Principal,
        email: &str,
    ) -> Result<Option<VisitorProfile>, ChatError> {
        let Principal::Visitor {
            visitor_id,
            site_id,
        } = principal
        else {
            return Err(ChatError::Forbidden(
                "only visitors leave a contact email".into(),
            ));
        };
        validate_contact_email(email)?;
        let store = &self.inner.store;
        let stored = store.visitor(*visitor_id).await?;
        let mut profile = stored
            .as_ref()
            .and_then(|v| v.profile.clone())
            .unwrap_or_default();
        if profile.verified {
            return Ok(Some(profile));
        }
        profile.email = Some(email.to_owned());
        let visitor = store
            .ensure_visitor(&Visitor {
                id: *visitor_id,
                site_id: site_id.clone(),
                created_at: chrono::Utc::now(),
                profile: Some(profile),
            })
            .await?;
        Ok(visitor.profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_emails_are_checked_loosely_and_bounded() {
        for ok in ["ann@example.com", "a.b+c@sub.example.co", "李@例子.中国"] {
            assert!(validate_contact_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann@example.",
            "a@b@example.com",
            "ann @example.com",
            "ann@exa\nmple.com",
            "<ann@example.com>",
        ] {
            assert!(
                matches!(validate_contact_email(bad), Err(ChatError::BadRequest(_))),
                "{bad:?}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(MAX_CONTACT_EMAIL_BYTES));
        assert!(matches!(
            validate_contact_email(&long),
            Err(ChatError::TooLarge(_))
        ));
    }
}
