//! The rules both stores apply to [`Store::import_messages`](chat_core::store::Store): what an
//! imported message must agree with before it is written. Each store reads the state, asks
//! [`check`], and writes in its own SQL.

use chat_core::model::{ConversationId, VisitorId};
use chat_core::store::ImportedMessage;
use chrono::{DateTime, Utc};

/// What the store holds about an imported message's conversation, read inside the import's
/// transaction (the conversation row locked where the database can).
pub(crate) struct ExistingConversation {
    pub site_id: String,
    pub visitor_id: VisitorId,
    pub last_seq: i64,
    /// The `created_at` of the message at `last_seq`; `None` when there is none.
    pub last_created_at: Option<DateTime<Utc>>,
}

/// Why `message` cannot be written, if it cannot: its visitor belongs to another site, its
/// conversation to another visitor or site, or it is older than the conversation's newest
/// message (its sequence number would then contradict its time).
pub(crate) fn check(
    message: &ImportedMessage,
    visitor_site: Option<&str>,
    conversation: Option<&ExistingConversation>,
) -> Result<(), String> {
    if let Some(site) = visitor_site {
        if site != message.site_id {
            return Err(format!(
                "visitor {} exists on site {site:?}, not {:?}",
                message.visitor_id, message.site_id
            ));
        }
    }
    let Some(existing) = conversation else {
        return Ok(());
    };
    if existing.site_id != message.site_id || existing.visitor_id != message.visitor_id {
        return Err(format!(
            "conversation {} exists for visitor {} on site {:?}, not visitor {} on site {:?}",
            message.conversation_id,
            existing.visitor_id,
            existing.site_id,
            message.visitor_id,
            message.site_id
        ));
    }
    if let Some(last) = existing.last_created_at {
        if message.created_at < last {
            return Err(out_of_order(
                message.conversation_id,
                message.created_at,
                existing.last_seq,
                last,
            ));
        }
    }
    Ok(())
}

fn out_of_order(
    conversation: ConversationId,
    at: DateTime<Utc>,
    last_seq: i64,
    last: DateTime<Utc>,
) -> String {
    format!(
        "created_at {} is before the newest message of conversation {conversation} \
         (seq {last_seq} at {}): sort the export by created_at within each conversation",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        last.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}
