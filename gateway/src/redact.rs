//! What a log line may say about a request. Chat URLs carry credentials in their query string
//! (`/ws-admin/?token=<agent JWT>`, `/ws-visitor/poll?sid=…&token=…`, Socket.IO's
//! `?EIO=4&token=…`), and Pingora logs a failed request with its summary: this module builds a
//! summary that never contains a query value of a chat route, nor a credential-like query value
//! or user-info of a proxied one.

use crate::routes::route;
use pingora::proxy::Session;

/// What replaces a hidden value.
pub const REDACTED: &str = "REDACTED";

/// Query parameter names (lower-cased substrings) whose values are hidden on proxied routes.
const SENSITIVE_NAMES: [&str; 11] = [
    "token",
    "key",
    "secret",
    "pass",
    "auth",
    "sig",
    "jwt",
    "session",
    "sid",
    "code",
    "credential",
];

/// Whether a query parameter called `name` may carry a credential.
pub fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE_NAMES.iter().any(|s| lower.contains(s))
}

/// `query` with values hidden: every value when `chat_route`, else those of
/// [sensitive](is_sensitive_name) parameters. Names are kept (they say what was sent).
pub fn redact_query(query: &str, chat_route: bool) -> String {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (pair, None),
            };
            let decoded: String = form_urlencoded::parse(name.as_bytes())
                .map(|(k, _)| k.into_owned())
                .next()
                .unwrap_or_default();
            match value {
                Some(_) if chat_route || is_sensitive_name(&decoded) => {
                    format!("{}={REDACTED}", sanitize(name))
                }
                // A bare word on a chat route could itself be a credential.
                None if chat_route && !pair.is_empty() => REDACTED.to_string(),
                _ => sanitize(pair),
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `path?query` for a log: the query redacted with [`redact_query`].
pub fn redact_path_and_query(path: &str, query: Option<&str>, chat_route: bool) -> String {
    match query {
        Some(q) => format!("{}?{}", sanitize(path), redact_query(q, chat_route)),
        None => sanitize(path),
    }
}

/// Pingora's request summary (method, path, host) without credentials: the path from the
/// parsed URI (an absolute-form target's `user:password@` is never included), the query
/// redacted, chat routes recognised from the path.
pub fn request_summary(session: &Session) -> String {
    let req = session.req_header();
    let path = req.uri.path();
    let chat_route = route(path).metric_name().is_some();
    let host = req
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri.host().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{} {}, Host: {}",
        req.method,
        redact_path_and_query(path, req.uri.query(), chat_route),
        sanitize(strip_userinfo(&host)),
    )
}

/// A URL (or authority) without its `user:password@` part (the scheme goes with it).
pub fn strip_userinfo(url: &str) -> &str {
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => url,
    }
}

/// No control characters in a log line (a newline could forge one).
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";

    #[test]
    fn chat_routes_lose_every_query_value() {
        for (path, query) in [
            ("/ws-admin/", format!("token={JWT}")),
            ("/ws-admin/poll", format!("token={JWT}")),
            ("/ws-visitor/poll", format!("sid=s-1&cursor=3&token={JWT}")),
            ("/ws-admin/", format!("EIO=4&transport=polling&token={JWT}")),
            ("/chat/api/whoami", format!("token={JWT}")),
            (
                "/chat/api/conversations/c1/messages",
                format!("after_seq=0&x={JWT}"),
            ),
            ("/ws-admin/", JWT.to_string()),
        ] {
            let chat = route(path).metric_name().is_some();
            assert!(chat, "{path} is a chat route");
            let out = redact_path_and_query(path, Some(&query), chat);
            assert!(!out.contains(JWT), "{out}");
            assert!(!out.contains("s-1"), "{out}");
            assert!(out.starts_with(path), "{out}");
        }
        assert_eq!(
            redact_query("EIO=4&transport=polling&token=abc", true),
            "EIO=REDACTED&transport=REDACTED&token=REDACTED"
        );
    }

    #[test]
    fn upstream_routes_lose_credential_like_values() {
        assert_eq!(
            redact_query(
                "plan=pro&access_token=a&api_key=b&client_secret=c&password=d&Auth=e&sig=f&page=2",
                false
            ),
            "plan=pro&access_token=REDACTED&api_key=REDACTED&client_secret=REDACTED&\
             password=REDACTED&Auth=REDACTED&sig=REDACTED&page=2"
        );
        // Percent-encoded names are recognised.
        assert_eq!(redact_query("%74oken=x", false), "%74oken=REDACTED");
        assert_eq!(redact_query("q=a%0Ab", false), "q=a%0Ab");
    }

    #[test]
    fn user_info_and_control_characters_never_reach_the_log() {
        assert_eq!(strip_userinfo("http://u:pw@host/x"), "host/x");
        assert_eq!(strip_userinfo("u:pw@host:8080"), "host:8080");
        assert_eq!(strip_userinfo("host:8080"), "host:8080");
        assert_eq!(sanitize("a\r\nb"), "a??b");
    }
}
