//! The settings each lower crate runs with, built from the gateway's [`Config`]: the store,
//! the chat service and the transports take nothing from the environment themselves.
//!
//! Several of those crates have a `Default` of their own (for their tests and for embedding
//! them without the gateway) that restates the gateway's defaults; the tests below fail when
//! one of them differs from what the settings table's defaults build here.

use super::Config;
use chat_core::service::ServiceConfig;
use chat_transport_polling::PollingSettings;
use chat_transport_socketio::engineio::EngineConfig;
use chat_transport_websocket::WebSocketSettings;
use std::time::Duration;

impl Config {
    /// Which store to open: Postgres when `CHAT_DATABASE_URL` is set, else the embedded file
    /// `CHAT_DATA_DIR/chat.sqlite3`.
    pub fn store_config(&self) -> chat_storage::StoreConfig {
        match &self.database_url {
            Some(url) => chat_storage::StoreConfig::Postgres {
                url: url.clone(),
                pool_size: self.db_pool_size,
                batch: self.write_batch,
                ca: self.database_ca.clone(),
            },
            None => chat_storage::StoreConfig::Embedded {
                path: self.data_dir.join("chat.sqlite3"),
                batch: self.write_batch,
            },
        }
    }

    /// The chat service's limits.
    pub fn service_config(&self) -> ServiceConfig {
        ServiceConfig {
            max_message_chars: self.max_message_chars,
            session_queue: self.session_queue,
            rollout: self.ws_rollout.clone(),
            // No answer is larger than the largest frame a client may send.
            max_answer_bytes: self.ws_max_frame_bytes,
            visitor_send_rate: self.send_rate,
            uploads: self.uploads.policy.clone(),
            upload_rate: self.uploads.rate,
        }
    }

    /// The raw WebSocket transport's limits and timers.
    pub fn websocket_settings(&self) -> WebSocketSettings {
        WebSocketSettings {
            ping_interval: self.ws_ping_interval,
            idle_timeout: self.ws_idle_timeout,
            max_message_bytes: self.ws_max_frame_bytes,
            // A message whose every character is JSON-escaped (`\u0000`: 6 bytes), and its fields.
            max_event_bytes: self.max_message_chars.saturating_mul(6) + 1024,
            ..WebSocketSettings::default()
        }
    }

    /// The Engine.IO engine under Socket.IO. Its `Default` is the reference Engine.IO server's
    /// (a 20 s `pingTimeout`, a 1 MB `maxPayload`), not the gateway's: here the ping timeout
    /// is what is left of `CHAT_WS_IDLE_TIMEOUT_SECS` after a ping interval, and the payload
    /// bound is every transport's frame bound.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            ping_interval: self.ws_ping_interval,
            ping_timeout: self
                .ws_idle_timeout
                .saturating_sub(self.ws_ping_interval)
                .max(Duration::from_secs(5)),
            // Socket.IO's maxPayload: the same bound as every other transport's frames.
            max_payload: self.ws_max_frame_bytes,
            ..EngineConfig::default()
        }
    }

    /// How the Socket.IO endpoint reads and writes an Engine.IO session's WebSocket: the raw
    /// WebSocket's frame bound (`CHAT_WS_MAX_FRAME_BYTES`, also the engine's `maxPayload`),
    /// write buffer and write timeout.
    pub fn socketio_link_settings(&self) -> crate::socketio::LinkSettings {
        let websocket = self.websocket_settings();
        crate::socketio::LinkSettings {
            websocket: chat_transport_upgraded::websocket_config(
                websocket.max_message_bytes,
                websocket.write_buffer_limit(),
            ),
            write_timeout: websocket.write_timeout,
        }
    }

    /// The long-polling transport's limits and timers.
    pub fn polling_settings(&self) -> PollingSettings {
        PollingSettings {
            hold: self.poll_hold,
            ttl: self.poll_session_ttl,
            max_body_bytes: self.ws_max_frame_bytes,
            event_log_capacity: self.session_queue,
            event_log_max_bytes: self.ws_max_frame_bytes.saturating_mul(16),
            max_frames_per_post: self.poll_max_frames_per_post,
            max_answer_bytes: self.ws_max_frame_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration of an empty environment: every setting at the table's default.
    fn table_defaults() -> Config {
        Config::from_lookup(|_| None).expect("the table's defaults parse")
    }

    /// The transports' and the service's settings types are `Debug` but not `PartialEq`;
    /// `Debug` prints every field, a field added later included, so equal output is equal
    /// settings.
    fn debug<T: std::fmt::Debug>(value: &T) -> String {
        format!("{value:?}")
    }

    #[test]
    fn websocket_default_is_what_the_table_builds() {
        assert_eq!(
            debug(&table_defaults().websocket_settings()),
            debug(&WebSocketSettings::default())
        );
    }

    #[test]
    fn polling_default_is_what_the_table_builds() {
        assert_eq!(
            debug(&table_defaults().polling_settings()),
            debug(&PollingSettings::default())
        );
    }

    #[test]
    fn service_default_is_what_the_table_builds_but_the_rates() {
        let built = table_defaults().service_config();
        // The crate's default has no send or upload limit (an embedder, a test); the gateway's
        // are `CHAT_SEND_RATE_PER_SEC`'s and `CHAT_UPLOAD_RATE_PER_MIN`'s.
        assert!(built.visitor_send_rate.is_some());
        assert_eq!(
            built.upload_rate,
            Some(chat_core::rate::RateLimit {
                per_sec: 20.0 / 60.0,
                burst: 5
            })
        );
        let built = ServiceConfig {
            visitor_send_rate: None,
            upload_rate: None,
            ..built
        };
        assert_eq!(debug(&built), debug(&ServiceConfig::default()));
    }

    #[test]
    fn storage_core_and_limits_defaults_are_what_the_table_builds() {
        let config = table_defaults();
        assert_eq!(config.write_batch, chat_storage::BatchSettings::default());
        assert_eq!(
            config.agent_token_rules,
            chat_core::auth::AgentTokenRules::default()
        );
        assert_eq!(config.ws_rollout, chat_core::rollout::Rollout::default());
        assert_eq!(config.limits, crate::limits::LimitsConfig::default());
        assert_eq!(config.timeouts, crate::config::EdgeTimeouts::default());
    }
}
