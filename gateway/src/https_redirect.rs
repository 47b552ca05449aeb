//! The plain HTTP listener once TLS is configured, as Nginx's port 80 server block did it:
//! everything answers `301` to the same host and path over `https://`, except
//!
//! - `/.well-known/acme-challenge/<token>`: served from `CHAT_ACME_DIR` (certbot's `--webroot`),
//!   or proxied to the main site when that is unset, so that certificates can be renewed;
//! - `/chat/health`, `/chat/health/live`, `/chat/health/ready`: answered in place, for local probes (`curl http://127.0.0.1:8080/...`,
//!   container health checks) that should not need a certificate for `localhost`;
//! - a request from a trusted proxy (`CHAT_TRUSTED_PROXIES`) saying `X-Forwarded-Proto: https`:
//!   a load balancer already terminated TLS, redirecting would loop.
//!
//! The redirect names the request's own `Host` (validated), never another host.

use crate::client_addr::{peer_ip, TrustedProxies};
use crate::http_util::respond;
use bytes::Bytes;
use pingora::proxy::Session;
use pingora::Result;
use std::path::{Path, PathBuf};

/// Where ACME HTTP-01 challenges are asked for.
pub const ACME_PREFIX: &str = "/.well-known/acme-challenge/";
/// A challenge file is a token and a thumbprint, well under this.
const MAX_ACME_FILE_BYTES: u64 = 64 * 1024;
/// The longest host name (RFC 1035).
const MAX_HOST_LEN: usize = 253;

/// What the plain listener does besides routing.
#[derive(Debug, Clone, Default)]
pub struct PlainHttp {
    /// `Some(public TLS port)` when plain requests are redirected (`CHAT_HTTPS_REDIRECT`).
    pub redirect_to_port: Option<u16>,
    /// `CHAT_ACME_DIR`.
    pub acme_dir: Option<PathBuf>,
}

impl PlainHttp {
    /// Answers the request if it is an ACME challenge served from the directory
    /// (`Some("acme_challenge")`) or a request to redirect (`Some("https_redirect")`, also when
    /// its `Host` is refused); `None` lets routing go on. `tls`: the request came over TLS
    /// (only ACME files are served there, nothing is redirected).
    pub async fn answer(
        &self,
        session: &mut Session,
        tls: bool,
        trusted: &TrustedProxies,
    ) -> Result<Option<&'static str>> {
        let path = session.req_header().uri.path();
        if let Some(token) = path.strip_prefix(ACME_PREFIX) {
            return match &self.acme_dir {
                Some(dir) => {
                    serve_acme(session, dir, token.to_owned()).await?;
                    Ok(Some("acme_challenge"))
                }
                // Proxied: the main site (or its own certbot webroot) answers.
                None => Ok(None),
            };
        }
        let Some(port) = self.redirect_to_port else {
            return Ok(None);
        };
        let health = path == "/chat/health" || path.starts_with("/chat/health/");
        if tls || health || behind_tls_proxy(session, trusted) {
            return Ok(None);
        }
        let req = session.req_header();
        let host = req
            .headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri.authority().map(|a| a.to_string()));
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let location = redirect_location(host.as_deref(), target, port);
        match location {
            Some(location) => {
                respond(
                    session,
                    301,
                    "text/plain",
                    &[("Location", &location)],
                    Bytes::from_static(b"Moved to HTTPS\n"),
                )
                .await?;
            }
            None => {
                respond(
                    session,
                    400,
                    "text/plain",
                    &[],
                    Bytes::from_static(b"A valid Host header is required\n"),
                )
                .await?;
            }
        }
        Ok(Some("https_redirect"))
    }
}

/// Whether a trusted proxy says the client spoke TLS to it.
fn behind_tls_proxy(session: &Session, trusted: &TrustedProxies) -> bool {
    let from_trusted = peer_ip(session).is_some_and(|ip| trusted.contains(ip));
    from_trusted
        && session
            .req_header()
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// `https://HOST[:port]TARGET` for a request with `Host: host` and request target `target`;
/// `None` when the host is not a valid host name, IPv4 or bracketed IPv6 address (with an
/// optional port, which is replaced by `port`).
pub fn redirect_location(host: Option<&str>, target: &str, port: u16) -> Option<String> {
    let host = valid_host(host?.trim())?;
    // An absolute-form or `*` target still redirects to this host's root, never elsewhere.
    let target = if target.starts_with('/') { target } else { "/" };
    Some(if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    })
}

/// The host part of a `Host` header, lower case, without its port.
fn valid_host(host: &str) -> Option<String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        (format!("[{inner}]"), after.strip_prefix(':'))
    } else {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        let name_ok = !name.is_empty()
            && name.len() <= MAX_HOST_LEN
            && !name.starts_with(['.', '-'])
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !name_ok {
            return None;
        }
        (name.to_owned(), port)
    };
    if let Some(port) = port {
        port.parse::<u16>().ok()?;
    }
    Some(name.to_ascii_lowercase())
}

/// Serves `CHAT_ACME_DIR/<token>`: a token is base64url (RFC 8555), so nothing else (no `/`,
/// no `..`) ever names a file.
async fn serve_acme(session: &mut Session, dir: &Path, token: String) -> Result<bool> {
    let token_ok = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let file = dir.join(&token);
    let body = if token_ok {
        tokio::task::spawn_blocking(move || read_small_file(&file))
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    match body {
        Some(body) => {
            respond(
                session,
                200,
                "text/plain",
                &[("Cache-Control", "no-store")],
                Bytes::from(body),
            )
            .await
        }
        None => {
            respond(
                session,
                404,
                "text/plain",
                &[],
                Bytes::from_static(b"No such challenge\n"),
            )
            .await
        }
    }
}

/// A regular file of at most `MAX_ACME_FILE_BYTES`.
fn read_small_file(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_ACME_FILE_BYTES {
        return None;
    }
    let body = std::fs::read(path).ok()?;
    (body.len() as u64 <= MAX_ACME_FILE_BYTES).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_to_the_requests_own_host() {
        let at = |host, target, port| redirect_location(Some(host), target, port);
        assert_eq!(
            at("Shop.Example", "/a?b=c", 443).as_deref(),
            Some("https://shop.example/a?b=c")
        );
        assert_eq!(
            at("shop.example:8080", "/", 8443).as_deref(),
            Some("https://shop.example:8443/")
        );
        assert_eq!(
            at("[::1]:80", "/x", 443).as_deref(),
            Some("https://[::1]/x")
        );
        assert_eq!(
            at("127.0.0.1", "http://evil.example/x", 443).as_deref(),
            Some("https://127.0.0.1/")
        );
        assert_eq!(
            at("shop.example", "//evil.example/x", 443).as_deref(),
            Some("https://shop.example//evil.example/x")
        );
        for bad in [
            "",
            "evil.example/x",
            "evil.example@shop",
            "a b",
            "shop.example:99999",
            "[nope]",
            ".example",
            &"a".repeat(300),
        ] {
            assert_eq!(at(bad, "/", 443), None, "{bad:?}");
        }
        assert_eq!(redirect_location(None, "/", 443), None);
    }
}
