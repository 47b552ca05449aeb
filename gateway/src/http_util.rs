//! Small helpers for HTTP requests and their headers: answering in-process from Pingora's request
//! filter, and reading comma-separated header lists.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Writes a complete response. The connection stays reusable (keep-alive).
pub async fn respond(
    session: &mut Session,
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<bool> {
    let mut resp = ResponseHeader::build(status, Some(4 + headers.len()))?;
    resp.insert_header("Content-Type", content_type)?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header("X-Content-Type-Options", "nosniff")?;
    for (name, value) in headers {
        resp.insert_header(name.to_string(), *value)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(true)
}

/// Answers with a JSON body.
pub async fn respond_json(
    session: &mut Session,
    status: u16,
    value: &serde_json::Value,
) -> Result<bool> {
    respond(
        session,
        status,
        "application/json",
        &[("Cache-Control", "no-store")],
        Bytes::from(value.to_string()),
    )
    .await
}

/// Reads the request body, stopping once it exceeds `limit` bytes. Returns the bytes read (at
/// most `limit + 1`, so callers can tell "over the limit" apart) and whether the body was cut
/// short; a cut-short body leaves unread bytes on the connection, so keep-alive is turned off.
pub async fn read_body_limited(session: &mut Session, limit: usize) -> Result<(Bytes, bool)> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            session.set_keepalive(None);
            return Ok((Bytes::from(body), true));
        }
    }
    Ok((Bytes::from(body), false))
}

/// Credentialed CORS headers for a browser request whose `Origin` has already passed the
/// endpoint's Origin rule: the origin echoed (never `*`), and for a preflight the methods, the
/// requested headers and a max age.
pub fn cors_headers(session: &Session, preflight: bool) -> Vec<(&'static str, String)> {
    let mut cors = Vec::new();
    if let Some(origin) = header(session, "origin") {
        cors.push(("Access-Control-Allow-Origin", origin.to_owned()));
        cors.push(("Access-Control-Allow-Credentials", "true".into()));
        cors.push(("Vary", "Origin".into()));
    }
    if preflight {
        cors.push(("Access-Control-Allow-Methods", "GET, POST, OPTIONS".into()));
        if let Some(requested) = header(session, "access-control-request-headers") {
            cors.push(("Access-Control-Allow-Headers", requested.to_owned()));
        }
        cors.push(("Access-Control-Max-Age", "86400".into()));
    }
    cors
}

/// The value of a query parameter, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A request header as text, if present and valid UTF-8.
pub fn header<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

/// Whether a comma-separated header (like `Connection`) contains `token`, case-insensitively.
pub fn header_has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| {
        list_tokens(std::iter::once(v.as_bytes())).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The tokens of comma-separated header `values` (`Connection`, `Vary`), trimmed, empty ones
/// left out.
pub(crate) fn list_tokens<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The bearer token of an `Authorization` header.
pub fn bearer(value: Option<&str>) -> Option<&str> {
    let value = value?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_and_queries() {
        assert!(header_has_token(Some("keep-alive, Upgrade"), "upgrade"));
        assert!(!header_has_token(Some("keep-alive"), "upgrade"));
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(
            query_param(Some("a=1&token=x%2By"), "token").as_deref(),
            Some("x+y")
        );
        assert_eq!(query_param(None, "token"), None);
    }
}
