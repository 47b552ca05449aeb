//! Webhooks (issue 15, item 10; `docs/webhooks.md`): the store writes each event into its
//! outbox in the transaction of the fact it reports (`chat_core::webhook`); the delivery worker
//! here POSTs due events to the site's URL, signed ([`signature`]), and deletes them once the
//! receiver answered `2xx`, or retries them with exponential backoff and jitter
//! ([`retry_delay`]) until `CHAT_WEBHOOK_MAX_ATTEMPTS`, after which they are kept as dead,
//! counted and logged. Every gateway process sharing a Postgres runs a worker; claims never
//! overlap, so an event is sent by one process at a time, and an event whose process died is
//! taken up once its claim's lease ends: delivered at least once.

pub mod signature;
pub mod targets;
mod worker;

pub use targets::WebhookTargets;
pub use worker::start;

use crate::settings::{Setting, WEBHOOK_MAX_ATTEMPTS, WEBHOOK_SECRET};
use std::fmt;
use std::time::Duration;

/// Shortest `CHAT_WEBHOOK_SECRET` accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// The first retry's delay; each next one doubles it, up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// The webhook settings, when `CHAT_WEBHOOK_URLS` names at least one URL.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `CHAT_WEBHOOK_URLS`.
    pub targets: WebhookTargets,
    /// `CHAT_WEBHOOK_SECRET`.
    secret: String,
    /// `CHAT_WEBHOOK_TIMEOUT_SECS`.
    pub timeout: Duration,
    /// `CHAT_WEBHOOK_MAX_ATTEMPTS`.
    pub max_attempts: u32,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("targets", &self.targets)
            .field("secret", &"<hidden>")
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl WebhookConfig {
    /// The settings read together; `None` when no URL is configured. The error names the
    /// setting at fault and why, never a secret or a URL.
    pub fn from_settings(
        urls: Option<&str>,
        secret: Option<&str>,
        timeout: Duration,
        max_attempts: u32,
    ) -> Result<Option<Self>, (&'static Setting, String)> {
        let targets = WebhookTargets::parse(urls.unwrap_or(""))
            .map_err(|why| (&crate::settings::WEBHOOK_URLS, why))?;
        if targets.is_empty() {
            return Ok(None);
        }
        let secret =
            match secret {
                None => return Err((
                    &WEBHOOK_SECRET,
                    "must be set with CHAT_WEBHOOK_URLS: receivers verify every request with it"
                        .into(),
                )),
                Some(secret) if secret.len() < MIN_SECRET_BYTES => {
                    return Err((
                        &WEBHOOK_SECRET,
                        format!(
                            "{} bytes; use at least {MIN_SECRET_BYTES} random bytes",
                            secret.len()
                        ),
                    ))
                }
                Some(secret) => secret.to_owned(),
            };
        if max_attempts == 0 {
            return Err((&WEBHOOK_MAX_ATTEMPTS, "must be at least 1".into()));
        }
        Ok(Some(Self {
            targets,
            secret,
            timeout,
            max_attempts,
        }))
    }

    /// The key requests are signed with.
    pub(crate) fn secret(&self) -> &[u8] {
        self.secret.as_bytes()
    }
}

/// How long to wait after failed attempt number `attempt` (1 for the first): the first delay
/// doubled for each attempt before, at most [`MAX_RETRY_DELAY`], then scaled by `0.5 + jitter /
/// 2` (`jitter` in `[0, 1]`, drawn per retry) so that events that failed together do not come
/// back together.
pub fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    let full = FIRST_RETRY_DELAY
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY);
    full.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "webhook-secret-0123456789abcdef-0123";

    #[test]
    fn the_retry_schedule_doubles_up_to_an_hour_with_jitter() {
        let full: Vec<u64> = (1..=14).map(|n| retry_delay(n, 1.0).as_secs()).collect();
        assert_eq!(
            full,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
        );
        assert_eq!(retry_delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(retry_delay(100, 0.0), Duration::from_secs(1800));
        assert_eq!(retry_delay(u32::MAX, 7.0), MAX_RETRY_DELAY, "clamped");
        // What the README says 20 attempts span: 19 waits.
        let span = |jitter| {
            (1..20)
                .map(|n| retry_delay(n, jitter).as_secs_f64())
                .sum::<f64>()
        };
        assert!((4.0..4.2).contains(&(span(0.0) / 3600.0)));
        assert!((8.0..8.3).contains(&(span(1.0) / 3600.0)));
    }

    #[test]
    fn settings_are_checked_together() {
        let t = Duration::from_secs(10);
        assert!(WebhookConfig::from_settings(None, None, t, 20)
            .unwrap()
            .is_none());
        let config =
            WebhookConfig::from_settings(Some("*:https://h.example/x"), Some(SECRET), t, 20)
                .unwrap()
                .unwrap();
        assert!(!format!("{config:?}").contains(SECRET));
        for (urls, secret, attempts, setting, why) in [
            (
                "*:https://h.example/x",
                None,
                20,
                "CHAT_WEBHOOK_SECRET",
                "must be set",
            ),
            (
                "*:https://h.example/x",
                Some("short"),
                20,
                "CHAT_WEBHOOK_SECRET",
                "5 bytes",
            ),
            (
                "*:https://h.example/x",
                Some(SECRET),
                0,
                "CHAT_WEBHOOK_MAX_ATTEMPTS",
                "at least 1",
            ),
            ("*:nope", Some(SECRET), 20, "CHAT_WEBHOOK_URLS", "not a URL"),
        ] {
            let (at, reason) =
                WebhookConfig::from_settings(Some(urls), secret, t, attempts).unwrap_err();
            assert_eq!(at.name, setting);
            assert!(reason.contains(why), "{reason}");
        }
    }
}
