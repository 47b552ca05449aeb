//! Visitor context: where a visitor is and what their browser says about them (page, referrer,
//! language, time zone, user agent, the site's own attributes), as the widget reports it with
//! the `context` command; what the gateway adds (client address, country); and the stored
//! record agents read with the `visitor` command and `GET /chat/api/conversations/{id}/visitor`.
//!
//! Every field is bounded ([`MAX_URL_BYTES`] and the rest, documented in `docs/protocol.md`);
//! a report over a bound is refused whole, never truncated, so that what an agent reads is what
//! the browser sent. The widget cuts long values itself before sending.
//!
//! ```
//! use chat_core::visitor_context::ReportedContext;
//! let ok: ReportedContext =
//!     serde_json::from_str(r#"{"url":"https://shop.example/cart","attributes":{"plan":"pro"}}"#).unwrap();
//! assert!(ok.validate().is_ok());
//! let bad: ReportedContext = serde_json::from_str(r#"{"url":"javascript:alert(1)"}"#).unwrap();
//! assert!(bad.validate().is_err());
//! ```

use crate::error::ChatError;
use crate::model::{SiteId, VisitorId};
use crate::rate::RateLimit;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest `url` and `referrer`, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest `title`, in bytes.
pub const MAX_TITLE_BYTES: usize = 256;
/// Longest `language` (a BCP 47 tag), in bytes.
pub const MAX_LANGUAGE_BYTES: usize = 35;
/// Longest `time_zone` (an IANA name), in bytes.
pub const MAX_TIME_ZONE_BYTES: usize = 64;
/// Longest `user_agent`, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// Most custom attributes.
pub const MAX_ATTRIBUTES: usize = 20;
/// Longest attribute key, in bytes (`[A-Za-z0-9_.-]`, at least one).
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 64;
/// Longest attribute value (a string, or a number or boolean as JSON text), in bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 256;
/// `context` reports a session may make: one a second, five at once. A page that navigates
/// faster is refused with `rate_limited` (the widget debounces, so it never is).
pub const CONTEXT_RATE: RateLimit = RateLimit {
    per_sec: 1.0,
    burst: 5,
};

/// What the widget reports: the fields of the `context` command. All optional; a report
/// replaces the previous one whole (latest wins).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedContext {
    /// The page's URL (`http:` or `https:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The page's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `document.referrer` (`http:` or `https:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// `navigator.language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The IANA time zone of the browser (`Intl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// `navigator.userAgent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The site's own attributes (`ChatWidgetConfig.attributes`): strings, numbers, booleans.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl ReportedContext {
    /// Checks every bound; the error says which field and why (`too_large` for a size,
    /// `bad_request` for a shape).
    pub fn validate(&self) -> Result<(), ChatError> {
        bounded("url", &self.url, MAX_URL_BYTES)?;
        web_address("url", &self.url)?;
        bounded("title", &self.title, MAX_TITLE_BYTES)?;
        bounded("referrer", &self.referrer, MAX_URL_BYTES)?;
        web_address("referrer", &self.referrer)?;
        bounded("language", &self.language, MAX_LANGUAGE_BYTES)?;
        bounded("time_zone", &self.time_zone, MAX_TIME_ZONE_BYTES)?;
        bounded("user_agent", &self.user_agent, MAX_USER_AGENT_BYTES)?;
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(ChatError::TooLarge(format!(
                "context has {} attributes; the limit is {MAX_ATTRIBUTES}",
                self.attributes.len()
            )));
        }
        for (key, value) in &self.attributes {
            attribute(key, value)?;
        }
        Ok(())
    }
}

fn bounded(field: &str, value: &Option<String>, max: usize) -> Result<(), ChatError> {
    match value {
        Some(v) if v.len() > max => Err(ChatError::TooLarge(format!(
            "context `{field}` has {} bytes; the limit is {max}",
            v.len()
        ))),
        _ => Ok(()),
    }
}

/// Only web addresses: the console shows them as links, and a `javascript:` one would run.
fn web_address(field: &str, value: &Option<String>) -> Result<(), ChatError> {
    match value.as_deref() {
        None | Some("") => Ok(()),
        Some(v) => {
            let lower = v.get(..8).unwrap_or(v).to_ascii_lowercase();
            if lower.starts_with("http://") || lower.starts_with("https://") {
                Ok(())
            } else {
                Err(ChatError::BadRequest(format!(
                    "context `{field}` must be an http: or https: address"
                )))
            }
        }
    }
}

fn attribute(key: &str, value: &serde_json::Value) -> Result<(), ChatError> {
    let key_ok = !key.is_empty()
        && key.len() <= MAX_ATTRIBUTE_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !key_ok {
        return Err(ChatError::BadRequest(format!(
            "context attribute key `{}` must be 1..={MAX_ATTRIBUTE_KEY_BYTES} bytes of A-Z a-z 0-9 _ . -",
            key.chars().take(MAX_ATTRIBUTE_KEY_BYTES).collect::<String>()
        )));
    }
    let len = match value {
        serde_json::Value::String(s) => s.len(),
        serde_json::Value::Number(n) => n.to_string().len(),
        serde_json::Value::Bool(_) => 0,
        _ => {
            return Err(ChatError::BadRequest(format!(
                "context attribute `{key}` must be a string, a number or a boolean"
            )))
        }
    };
    if len > MAX_ATTRIBUTE_VALUE_BYTES {
        return Err(ChatError::TooLarge(format!(
            "context attribute `{key}` has {len} bytes; the limit is {MAX_ATTRIBUTE_VALUE_BYTES}"
        )));
    }
    Ok(())
}

/// A visitor's latest context as stored: what the widget reported, what the gateway added,
/// when the visitor was first seen reporting one and when the latest came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitorContextRecord {
    /// The visitor.
    pub visitor_id: VisitorId,
    /// The latest report.
    pub context: ReportedContext,
    /// The client address admission determined for the session that reported it (the TCP
    /// peer, or the trusted proxy's `X-Forwarded-For`).
    pub ip: Option<String>,
    /// The ISO 3166 country code of `ip`, when a GeoIP database is configured
    /// (`CHAT_GEOIP_DB`) and knows it.
    pub country: Option<String>,
    /// When the visitor's first stored context was reported (kept across later reports).
    pub first_seen_at: DateTime<Utc>,
    /// When the latest one was.
    pub updated_at: DateTime<Utc>,
}

/// What the gateway knows of a session's client, added to every context it reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client address, as text.
    pub ip: Option<String>,
    /// Its country, when GeoIP knows it.
    pub country: Option<String>,
}

/// The answer of the `visitor` command and of `GET /chat/api/conversations/{id}/visitor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitorView {
    /// The conversation's visitor.
    pub id: VisitorId,
    /// Their site.
    pub site_id: SiteId,
    /// Their latest context, with `ip` and `country` beside the reported fields; `null` when
    /// none was stored yet.
    pub context: Option<serde_json::Value>,
    /// When the visitor was first seen reporting a context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen_at: Option<DateTime<Utc>>,
    /// When the latest context came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Who the main site says the visitor is (`user_id`, `name`, `email`, `verified`): absent
    /// when it said nothing (docs/identity.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::model::VisitorProfile>,
}

impl VisitorView {
    /// The view of `visitor_id` on `site_id` with its stored record, if any.
    pub fn of(
        visitor_id: VisitorId,
        site_id: SiteId,
        record: Option<VisitorContextRecord>,
    ) -> Self {
        let Some(record) = record else {
            return Self {
                id: visitor_id,
                site_id,
                context: None,
                first_seen_at: None,
                updated_at: None,
                profile: None,
            };
        };
        let mut context = serde_json::to_value(&record.context)
            .unwrap_or_else(|_| serde_json::Value::Object(Default::default()));
        if let Some(object) = context.as_object_mut() {
            object.insert("ip".into(), record.ip.into());
            object.insert("country".into(), record.country.into());
        }
        Self {
            id: visitor_id,
            site_id,
            context: Some(context),
            first_seen_at: Some(record.first_seen_at),
            updated_at: Some(record.updated_at),
            profile: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn parse(json: &str) -> ReportedContext {
        serde_json::from_str(json).unwrap()
    }

    fn code(json: &str) -> ErrorCode {
        parse(json).validate().unwrap_err().code()
    }

    #[test]
    fn a_full_report_within_bounds_passes() {
        let c = parse(
            r#"{"url":"https://a.example/x?y=1","title":"Cart","referrer":"","language":"fr-CA",
                "time_zone":"Europe/Paris","user_agent":"Mozilla/5.0",
                "attributes":{"plan":"pro","seats":3,"trial":false,"a.b-c_d":"x"}}"#,
        );
        c.validate().unwrap();
    }

    #[test]
    fn each_bound_is_refused_at_one_over() {
        let at = |field: &str, n: usize| format!(r#"{{"{field}":"{}"}}"#, "a".repeat(n));
        let url = |n: usize| format!(r#"{{"url":"https://{}"}}"#, "a".repeat(n - 8));
        parse(&url(MAX_URL_BYTES)).validate().unwrap();
        assert_eq!(code(&url(MAX_URL_BYTES + 1)), ErrorCode::TooLarge);
        for (field, max) in [
            ("title", MAX_TITLE_BYTES),
            ("language", MAX_LANGUAGE_BYTES),
            ("time_zone", MAX_TIME_ZONE_BYTES),
            ("user_agent", MAX_USER_AGENT_BYTES),
        ] {
            parse(&at(field, max)).validate().unwrap();
            assert_eq!(code(&at(field, max + 1)), ErrorCode::TooLarge, "{field}");
        }
    }

    #[test]
    fn attributes_are_bounded_in_count_key_value_and_type() {
        let many: BTreeMap<String, serde_json::Value> = (0..=MAX_ATTRIBUTES)
            .map(|i| (format!("k{i}"), serde_json::json!(i)))
            .collect();
        let c = ReportedContext {
            attributes: many,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().code(), ErrorCode::TooLarge);
        let long_key = "k".repeat(MAX_ATTRIBUTE_KEY_BYTES + 1);
        assert_eq!(
            code(&format!(r#"{{"attributes":{{"{long_key}":1}}}}"#)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"attributes":{"bad key":1}}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"attributes":{"o":{"x":1}}}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(code(r#"{"attributes":{"n":null}}"#), ErrorCode::BadRequest);
        let long_value = "v".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1);
        assert_eq!(
            code(&format!(r#"{{"attributes":{{"k":"{long_value}"}}}}"#)),
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn only_web_addresses_and_no_unknown_fields() {
        assert_eq!(
            code(r#"{"url":"javascript:alert(1)"}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"referrer":"data:text/html,x"}"#),
            ErrorCode::BadRequest
        );
        parse(r#"{"url":"HTTPS://A.EXAMPLE/"}"#).validate().unwrap();
        assert!(serde_json::from_str::<ReportedContext>(r#"{"ip":"1.2.3.4"}"#).is_err());
    }

    #[test]
    fn the_view_puts_ip_and_country_beside_the_report() {
        let now = Utc::now();
        let id = VisitorId::new_random();
        let view = VisitorView::of(
            id,
            "default".into(),
            Some(VisitorContextRecord {
                visitor_id: id,
                context: parse(r#"{"url":"https://a.example/"}"#),
                ip: Some("203.0.113.9".into()),
                country: None,
                first_seen_at: now,
                updated_at: now,
            }),
        );
        let context = view.context.unwrap();
        assert_eq!(context["url"], "https://a.example/");
        assert_eq!(context["ip"], "203.0.113.9");
        assert!(context["country"].is_null());
        assert!(VisitorView::of(id, "default".into(), None)
            .context
            .is_none());
    }
}
