//! The WebSocket rollout: which share of a site's visitors is sent to WebSocket and which to
//! HTTP long-polling, chosen by a stable hash of the visitor id so that a visitor always gets the
//! same answer and an operator can move 5 %, 50 %, 100 % and compare the two groups.
//!
//! ```
//! use chat_core::rollout::{PreferredTransport, Rollout};
//! use chat_core::model::VisitorId;
//! let rollout: Rollout = "20,shop=5".parse().unwrap();
//! let visitor = VisitorId::new_random();
//! assert_eq!(rollout.transport_for("default", visitor), rollout.transport_for("default", visitor));
//! assert_eq!(Rollout::default().transport_for("any", visitor), PreferredTransport::WebSocket);
//! ```

use crate::model::VisitorId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::str::FromStr;

/// The transport a visitor should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreferredTransport {
    /// WebSocket (raw protocol or Socket.IO).
    #[serde(rename = "websocket")]
    WebSocket,
    /// HTTP long-polling.
    Polling,
}

/// Share of visitors sent to WebSocket, per site (`CHAT_WS_ROLLOUT_PERCENT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    default_percent: u8,
    per_site: HashMap<String, u8>,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            default_percent: 100,
            per_site: HashMap::new(),
        }
    }
}

/// Why a rollout setting does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a percentage 0..=100, or a list like `50,shop=5`: {0}")]
pub struct RolloutParseError(String);

impl FromStr for Rollout {
    type Err = RolloutParseError;

    /// `50` (every site), or `shop=5,blog=100` with an optional bare default (`20,shop=5`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let percent = |v: &str| {
            v.trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| RolloutParseError(v.trim().to_owned()))
        };
        let mut rollout = Rollout::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((site, value)) => {
                    rollout
                        .per_site
                        .insert(site.trim().to_owned(), percent(value)?);
                }
                None => rollout.default_percent = percent(part)?,
            }
        }
        Ok(rollout)
    }
}

impl Rollout {
    /// The visitor's stable bucket, 0..100.
    pub fn bucket(visitor: VisitorId) -> u8 {
        let digest = Sha256::digest(visitor.0.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % 100) as u8
    }

    /// The share of `site`'s visitors sent to WebSocket.
    pub fn percent_for(&self, site: &str) -> u8 {
        self.per_site
            .get(site)
            .copied()
            .unwrap_or(self.default_percent)
    }

    /// Which transport this visitor of `site` should use.
    pub fn transport_for(&self, site: &str, visitor: VisitorId) -> PreferredTransport {
        if Self::bucket(visitor) < self.percent_for(site) {
            PreferredTransport::WebSocket
        } else {
            PreferredTransport::Polling
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn synthetic_visitors(n: u128) -> Vec<VisitorId> {
        // Deterministic ids, so the test is repeatable; the hash spreads them.
        (0..n)
            .map(|i| {
                VisitorId(Uuid::from_u128(
                    0x5eed_0000_0000_4000_8000_0000_0000_0000 + i,
                ))
            })
            .collect()
    }

    #[test]
    fn shares_match_the_setting_within_a_few_percent_and_are_stable() {
        let visitors = synthetic_visitors(1000);
        for (setting, expected) in [("0", 0.0), ("50", 0.5), ("100", 1.0), ("5", 0.05)] {
            let rollout: Rollout = setting.parse().unwrap();
            let on_ws = visitors
                .iter()
                .filter(|v| rollout.transport_for("default", **v) == PreferredTransport::WebSocket)
                .count() as f64
                / visitors.len() as f64;
            assert!(
                (on_ws - expected).abs() <= 0.04,
                "setting {setting}: {on_ws}"
            );
            for v in &visitors {
                assert_eq!(
                    rollout.transport_for("default", *v),
                    rollout.transport_for("default", *v)
                );
            }
        }
    }

    #[test]
    fn raising_the_share_only_moves_visitors_to_websocket() {
        let visitors = synthetic_visitors(1000);
        let low: Rollout = "10".parse().unwrap();
        let high: Rollout = "60".parse().unwrap();
        for v in visitors {
            if low.transport_for("default", v) == PreferredTransport::WebSocket {
                assert_eq!(
                    high.transport_for("default", v),
                    PreferredTransport::WebSocket
                );
            }
        }
    }

    #[test]
    fn wire_names() {
        assert_eq!(
            serde_json::to_string(&PreferredTransport::WebSocket).unwrap(),
            r#""websocket""#
        );
        assert_eq!(
            serde_json::to_string(&PreferredTransport::Polling).unwrap(),
            r#""polling""#
        );
    }

    #[test]
    fn per_site_settings_and_errors() {
        let r: Rollout = "20, shop=5 ,blog=100".parse().unwrap();
        assert_eq!(r.percent_for("shop"), 5);
        assert_eq!(r.percent_for("blog"), 100);
        assert_eq!(r.percent_for("other"), 20);
        assert_eq!("".parse::<Rollout>().unwrap(), Rollout::default());
        assert!("101".parse::<Rollout>().is_err());
        assert!("shop=x".parse::<Rollout>().is_err());
        assert!("-3".parse::<Rollout>().is_err());
    }
}
