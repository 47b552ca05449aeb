//! Canned responses (issue 15): per-site saved replies an agent inserts with a `/` shortcut.
//! Managed over the HTTP API (`/chat/api/canned-responses`, docs/http-api.md); the console fills
//! their placeholders (`{{visitor.name}}`…) when inserting one. The bounds here are checked by
//! the chat service before anything reaches a store.

use crate::model::SiteId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest shortcut, in bytes (`[a-z0-9_-]`, so also in characters).
pub const MAX_SHORTCUT_BYTES: usize = 32;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// Most canned responses a site holds: creating one more is refused (`conflict`).
pub const MAX_PER_SITE: u32 = 200;

/// A saved reply of one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannedResponse {
    /// Its id.
    pub id: Uuid,
    /// The site it belongs to.
    pub site_id: SiteId,
    /// What the agent types after `/` to find it: 1..=32 of `[a-z0-9_-]`, unique in its site.
    pub shortcut: String,
    /// A short label shown in the console's list.
    pub title: String,
    /// The text inserted, placeholders included (at most `CHAT_MAX_MESSAGE_CHARS`).
    pub body: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What a create or an update writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannedFields {
    /// See [`CannedResponse::shortcut`].
    pub shortcut: String,
    /// See [`CannedResponse::title`].
    pub title: String,
    /// See [`CannedResponse::body`].
    pub body: String,
}

/// What a store did with a create or an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CannedWrite {
    /// Stored; this is it now.
    Stored(CannedResponse),
    /// Another canned response of the site has this shortcut; nothing was written.
    ShortcutTaken,
    /// The site already holds the most it may (create only); nothing was written.
    LimitReached,
}

/// Whether `shortcut` is 1..=32 of `[a-z0-9_-]`.
pub fn is_valid_shortcut(shortcut: &str) -> bool {
    !shortcut.is_empty()
        && shortcut.len() <= MAX_SHORTCUT_BYTES
        && shortcut
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl CannedFields {
    /// Checks the bounds (the body against `max_body_chars`, the message limit, since it
    /// becomes a message); the error says which field is wrong.
    pub fn validate(&self, max_body_chars: usize) -> Result<(), String> {
        if !is_valid_shortcut(&self.shortcut) {
            return Err(format!(
                "shortcut must be 1..={MAX_SHORTCUT_BYTES} of [a-z0-9_-]"
            ));
        }
        let title = self.title.chars().count();
        if self.title.trim().is_empty() || title > MAX_TITLE_CHARS {
            return Err(format!("title must be 1..={MAX_TITLE_CHARS} characters"));
        }
        if self.body.trim().is_empty() || self.body.chars().count() > max_body_chars {
            return Err(format!("body must be 1..={max_body_chars} characters"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(shortcut: &str, title: &str, body: &str) -> CannedFields {
        CannedFields {
            shortcut: shortcut.into(),
            title: title.into(),
            body: body.into(),
        }
    }

    #[test]
    fn bounds_are_checked() {
        assert!(fields("greet", "Greeting", "Hi {{visitor.name}}")
            .validate(100)
            .is_ok());
        for bad in ["", "Greet", "gr eet", "/greet", &"g".repeat(33), "grüß"] {
            assert!(fields(bad, "t", "b").validate(100).is_err(), "{bad:?}");
        }
        assert!(fields("a", " ", "b").validate(100).is_err());
        assert!(fields("a", &"t".repeat(101), "b").validate(100).is_err());
        assert!(fields("a", "t", "").validate(100).is_err());
        assert!(fields("a", "t", &"b".repeat(101)).validate(100).is_err());
        assert!(fields("a-1_z", "t", &"b".repeat(100)).validate(100).is_ok());
    }
}
