//! The `config` part of a reload (`crate::reload`): on SIGHUP the settings are read again
//! (process environment, `CHAT_CONFIG_FILE` over it) and those that can change while running
//! (reloadable in the settings table, `crate::settings`) are applied:
//!
//! - `CHAT_ALLOWED_ORIGINS`, `ADMIN_ALLOWED_ORIGINS`: handshakes from then on are checked
//!   against the new lists; open sessions stay open.
//! - `CHAT_WS_ROLLOUT_PERCENT`: visitors opening a session from then on are told the new
//!   transport (moving 5 % → 50 % of visitors to WebSocket needs no restart).
//!
//! Any other setting that changed is named in the log as waiting for a restart (or a
//! `serve --upgrade`); its value is never logged, since it may be a secret. A file that does
//! not read, or a value that does not parse, changes nothing.

use crate::admission::{Admission, Origins};
use crate::config::{current_settings, Config};
use crate::reload::Reload;
use crate::settings::{is_reloadable, ADMIN_ALLOWED_ORIGINS, ALLOWED_ORIGINS, WS_ROLLOUT_PERCENT};
use chat_core::service::ChatService;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Re-reads the settings and applies the reloadable ones.
pub struct ConfigReload {
    admission: Arc<Admission>,
    chat: ChatService,
    /// The settings as last read, to tell what changed.
    last: Mutex<BTreeMap<String, String>>,
}

impl ConfigReload {
    /// A reload over the running gateway's admission path and chat service; the settings it
    /// compares with are read now (those the gateway started with).
    pub fn new(admission: Arc<Admission>, chat: ChatService) -> Self {
        Self {
            admission,
            chat,
            last: Mutex::new(current_settings().unwrap_or_default()),
        }
    }
}

impl Reload for ConfigReload {
    fn name(&self) -> &'static str {
        "config"
    }

    fn reload(&self) -> Result<String, String> {
        let settings = current_settings().map_err(|e| e.to_string())?;
        // Parsed whole, so a reload never applies half a broken configuration.
        let config =
            Config::from_lookup(|name| settings.get(name).cloned()).map_err(|e| e.to_string())?;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let changed = changed_names(&last, &settings);
        let mut applied = Vec::new();
        let mut waiting = Vec::new();
        for name in changed {
            if is_reloadable(&name) {
                applied.push(name);
            } else {
                waiting.push(name);
            }
        }
        let origins_changed = applied
            .iter()
            .any(|name| name == ALLOWED_ORIGINS.name || name == ADMIN_ALLOWED_ORIGINS.name);
        if origins_changed {
            self.admission.set_origins(Origins {
                visitor: config.visitor_origins,
                admin: config.admin_origins,
            });
        }
        if applied.iter().any(|name| name == WS_ROLLOUT_PERCENT.name) {
            self.chat.set_rollout(config.ws_rollout);
        }
        *last = settings;
        if !waiting.is_empty() {
            tracing::warn!(
                settings = %waiting.join(", "),
                "changed, but they take effect only at the next restart (or `serve --upgrade`)"
            );
        }
        Ok(match (applied.is_empty(), waiting.is_empty()) {
            (true, true) => "no setting changed".to_string(),
            (false, true) => format!("applied {}", applied.join(", ")),
            (true, false) => format!("waiting for a restart: {}", waiting.join(", ")),
            (false, false) => format!(
                "applied {}; waiting for a restart: {}",
                applied.join(", "),
                waiting.join(", ")
            ),
        })
    }
}

/// Names whose value differs between `before` and `after` (set, changed or removed).
fn changed_names(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut names: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|name| before.get(*name) != after.get(*name))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn changes_are_set_changed_or_removed_names() {
        let before = map(&[("A", "1"), ("B", "2"), ("C", "3")]);
        let after = map(&[("A", "1"), ("B", "20"), ("D", "4")]);
        assert_eq!(changed_names(&before, &after), ["B", "C", "D"]);
        assert!(changed_names(&after, &after).is_empty());
    }

    /// Every reloadable setting is a documented one, and this reload applies each of them
    /// (a setting marked reloadable in the table that nothing here applies would be announced
    /// as applied and change nothing).
    #[test]
    fn reloadable_settings_are_in_the_readme_table() {
        let readme = include_str!("../../README.md");
        let reloadable: Vec<&str> = crate::settings::SETTINGS
            .iter()
            .filter(|setting| setting.reloadable)
            .map(|setting| setting.name)
            .collect();
        for name in &reloadable {
            assert!(readme.contains(&format!("| `{name}` |")), "{name}");
        }
        assert_eq!(
            reloadable,
            [
                ALLOWED_ORIGINS.name,
                ADMIN_ALLOWED_ORIGINS.name,
                WS_ROLLOUT_PERCENT.name
            ],
            "ConfigReload::reload applies these three; teach it any other"
        );
    }
}
