//! How the agent console signs in: with a token it fetches from the main site
//! (`CHAT_ADMIN_TOKEN_URL`, sent with the agent's site session cookie), or with a pasted one.
//!
//! The gateway tells the console its settings in `/chat/admin/config.js` (a script of the
//! console's own origin, so its `script-src 'self'` policy needs no exception), and widens the
//! console's `connect-src` to the token URL's origin when that is another origin.

use crate::settings::{ADMIN_LOGIN_URL, ADMIN_TOKEN_URL};

/// A sign-in URL variable that does not parse (the configuration reports it as
/// `ConfigError::Invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?}: {reason}")]
pub struct InvalidSignInUrl {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What was expected.
    pub reason: String,
}

/// The default token URL: the old main site's route, on this origin (proxied to the main site).
pub const DEFAULT_TOKEN_URL: &str = ADMIN_TOKEN_URL.default_value();
/// The default sign-in page of the main site.
pub const DEFAULT_LOGIN_URL: &str = ADMIN_LOGIN_URL.default_value();
/// Longest URL accepted: these end up in a page and a header.
const MAX_URL_LEN: usize = 2048;

/// `CHAT_ADMIN_TOKEN_URL` and `CHAT_ADMIN_LOGIN_URL`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSignIn {
    /// Where the console fetches agent tokens; `None`: pasting only.
    pub token_url: Option<SignInUrl>,
    /// The main site's sign-in page, linked when the token URL answers 401/403.
    pub login_url: Option<SignInUrl>,
}

/// A URL the console may use: a path on the gateway's origin, or an absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInUrl {
    /// The URL as configured.
    pub url: String,
    /// `scheme://host[:port]` for an absolute URL; `None` for a path on this origin.
    pub origin: Option<String>,
}

impl ConsoleSignIn {
    /// Pasting only: no token URL, no sign-in link.
    pub fn paste_only() -> Self {
        Self {
            token_url: None,
            login_url: None,
        }
    }

    /// From the raw variables (`None` = unset: the default; empty or `off`: none).
    pub fn from_vars(
        token_url: Option<String>,
        login_url: Option<String>,
    ) -> Result<Self, InvalidSignInUrl> {
        Ok(Self {
            token_url: SignInUrl::from_var(ADMIN_TOKEN_URL.name, token_url, DEFAULT_TOKEN_URL)?,
            login_url: SignInUrl::from_var(ADMIN_LOGIN_URL.name, login_url, DEFAULT_LOGIN_URL)?,
        })
    }

    /// What the console is told. A token URL that is a path on this origin reaches the main
    /// site only through `CHAT_UPSTREAM`: without one it would answer 502 forever, so the
    /// console is sent straight to pasting instead (the development setup).
    pub fn for_console(&self, has_upstream: bool) -> Self {
        let reachable =
            |u: &Option<SignInUrl>| u.clone().filter(|u| has_upstream || u.origin.is_some());
        Self {
            token_url: reachable(&self.token_url),
            login_url: reachable(&self.login_url),
        }
    }

    /// The body of `/chat/admin/config.js`.
    pub fn config_js(&self) -> String {
        let url = |u: &Option<SignInUrl>| u.as_ref().map(|u| u.url.clone());
        let settings = serde_json::json!({
            "tokenUrl": url(&self.token_url),
            "loginUrl": url(&self.login_url),
        });
        // serde_json escapes quotes and control characters; `<` is escaped too so that the
        // text stays inert wherever it is pasted.
        let json = settings.to_string().replace('<', "\\u003c");
        format!(
            "// Written by chat-gateway from CHAT_ADMIN_TOKEN_URL and CHAT_ADMIN_LOGIN_URL.\n\
             window.ChatConsoleConfig = {json};\n"
        )
    }

    /// The console page's Content-Security-Policy: its own script and style only, chat
    /// sockets, the token URL's origin when it is another one, `blob:` images (attachments are
    /// fetched with the agent's token and shown through object URLs), never framed.
    pub fn console_csp(&self) -> String {
        let extra = self
            .token_url
            .as_ref()
            .and_then(|u| u.origin.as_deref())
            .map(|origin| format!(" {origin}"))
            .unwrap_or_default();
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
             connect-src 'self' ws: wss:{extra}; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'; object-src 'none'"
        )
    }
}

impl SignInUrl {
    fn from_var(
        name: &'static str,
        value: Option<String>,
        default: &str,
    ) -> Result<Option<Self>, InvalidSignInUrl> {
        let value = value.unwrap_or_else(|| default.to_owned());
        let trimmed = value.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        Self::parse(trimmed)
            .map(Some)
            .map_err(|reason| InvalidSignInUrl {
                name,
                value: value.clone(),
                reason,
            })
    }

    fn parse(url: &str) -> Result<Self, String> {
        const EXPECTED: &str = "expected a path on this origin (`/api/admin/chat/token`), an \
                                http(s) URL, or `off`";
        if url.len() > MAX_URL_LEN {
            return Err(format!("longer than {MAX_URL_LEN} bytes"));
        }
        // Printable ASCII without spaces, quotes or backslashes: the URL lands in a script, an
        // `href` and (its origin) a header.
        if let Some(c) = url
            .chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\'' | '\\' | '<' | '>' | '`'))
        {
            return Err(format!("{c:?} is not allowed; {EXPECTED}"));
        }
        if url.starts_with('/') {
            if url.starts_with("//") {
                return Err(format!("a scheme-relative URL is ambiguous; {EXPECTED}"));
            }
            return Ok(Self {
                url: url.to_owned(),
                origin: None,
            });
        }
        let uri: http::Uri = url.parse().map_err(|e| format!("{e}; {EXPECTED}"))?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "https" && scheme != "http" {
            return Err(EXPECTED.to_owned());
        }
        let Some(authority) = uri.authority() else {
            return Err(EXPECTED.to_owned());
        };
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(format!("no user name or password in the URL; {EXPECTED}"));
        }
        Ok(Self {
            url: url.to_owned(),
            origin: Some(format!(
                "{scheme}://{}",
                authority.as_str().to_ascii_lowercase()
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(token: Option<&str>, login: Option<&str>) -> Result<ConsoleSignIn, InvalidSignInUrl> {
        ConsoleSignIn::from_vars(token.map(str::to_owned), login.map(str::to_owned))
    }

    #[test]
    fn defaults_are_the_old_main_site_routes() {
        let s = vars(None, None).unwrap();
        assert_eq!(s.token_url.as_ref().unwrap().url, "/api/admin/chat/token");
        assert_eq!(s.token_url.as_ref().unwrap().origin, None);
        assert_eq!(s.login_url.as_ref().unwrap().url, "/login");
        // Same origin: the policy stays as strict as before.
        assert!(s.console_csp().contains("connect-src 'self' ws: wss:;"));
    }

    #[test]
    fn empty_or_off_means_pasting_only() {
        for off in ["", "  ", "off", "OFF"] {
            let s = vars(Some(off), Some(off)).unwrap();
            assert_eq!(s, ConsoleSignIn::paste_only(), "{off:?}");
        }
        let js = ConsoleSignIn::paste_only().config_js();
        assert!(
            js.contains(r#"window.ChatConsoleConfig = {"loginUrl":null,"tokenUrl":null};"#),
            "{js}"
        );
    }

    #[test]
    fn another_origin_is_allowed_in_the_console_policy() {
        let s = vars(
            Some("https://WWW.example.com:8443/api/admin/chat/token"),
            Some("https://www.example.com/login?callbackUrl=%2Fchat%2Fadmin%2F"),
        )
        .unwrap();
        let origin = s.token_url.as_ref().unwrap().origin.as_deref();
        assert_eq!(origin, Some("https://www.example.com:8443"));
        assert!(s
            .console_csp()
            .contains("connect-src 'self' ws: wss: https://www.example.com:8443;"));
        assert!(s.config_js().contains(
            r#""loginUrl":"https://www.example.com/login?callbackUrl=%2Fchat%2Fadmin%2F""#
        ));
    }

    #[test]
    fn hostile_or_odd_values_are_refused_with_the_variable_named() {
        for bad in [
            "javascript:alert(1)",
            "//evil.example/token",
            "ftp://example.com/token",
            "https://user:pw@example.com/token",
            "/token\"; alert(1)",
            "/token</script>",
            "/a b",
            "https://example.com/;script-src *",
            "relative/path",
        ] {
            let e = vars(Some(bad), None).unwrap_err().to_string();
            assert!(e.starts_with("CHAT_ADMIN_TOKEN_URL="), "{bad}: {e}");
            let e = vars(None, Some(bad)).unwrap_err().to_string();
            assert!(e.starts_with("CHAT_ADMIN_LOGIN_URL="), "{bad}: {e}");
        }
        let long = format!("/{}", "a".repeat(MAX_URL_LEN));
        assert!(vars(Some(&long), None).is_err());
    }

    #[test]
    fn a_path_needs_the_main_site_behind_the_gateway() {
        let s = vars(None, None).unwrap();
        assert_eq!(s.for_console(true), s);
        assert_eq!(s.for_console(false), ConsoleSignIn::paste_only());
        let elsewhere = vars(Some("https://www.example.com/t"), None).unwrap();
        let told = elsewhere.for_console(false);
        assert_eq!(told.token_url, elsewhere.token_url);
        assert_eq!(told.login_url, None);
    }
}
