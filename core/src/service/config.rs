//! The limits of the chat service, [`ServiceConfig`].

/// Limits of the chat service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Longest accepted message body, in characters (`CHAT_MAX_MESSAGE_CHARS`).
    pub max_message_chars: usize,
    /// Events a session may have queued before it counts as too slow (`CHAT_SESSION_QUEUE`).
    pub session_queue: usize,
    /// Largest answer a command gets, in bytes of JSON (`CHAT_WS_MAX_FRAME_BYTES`): a `history`
    /// page is cut to fit (at least one message), so no answer is larger than what a transport
    /// writes. `resume` replays stream from the store one page at a time instead.
    pub max_answer_bytes: usize,
    /// Which visitors are sent to WebSocket (`CHAT_WS_ROLLOUT_PERCENT`), at start; replaced
    /// while running with [`ChatService::set_rollout`](crate::service::ChatService::set_rollout).
    pub rollout: crate::rollout::Rollout,
    /// Sends per visitor, over all their sessions on this process (`CHAT_SEND_RATE_PER_SEC`,
    /// `CHAT_SEND_BURST`); `None`: no limit. Agents are authenticated staff and are not limited.
    pub visitor_send_rate: Option<crate::rate::RateLimit>,
    /// The uploads accepted (`CHAT_MAX_UPLOAD_BYTES`, `CHAT_UPLOAD_TYPES`).
    pub uploads: crate::attachment::UploadPolicy,
    /// Uploads per user, agents included (`CHAT_UPLOAD_RATE_PER_MIN`, burst
    /// `CHAT_UPLOAD_BURST`); `None`: no limit.
    pub upload_rate: Option<crate::rate::RateLimit>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_message_chars: 4000,
            session_queue: 1024,
            max_answer_bytes: 64 * 1024,
            rollout: crate::rollout::Rollout::default(),
            visitor_send_rate: None,
            uploads: crate::attachment::UploadPolicy::default(),
            upload_rate: None,
        }
    }
}
