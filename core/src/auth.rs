//! Who may connect: agent JWTs, gateway-signed visitor tokens, and Origin rules.
//!
//! ```
//! use chat_core::auth::{AgentTokens, VisitorTokens};
//! let agents = AgentTokens::new(b"secret-of-at-least-some-length");
//! let jwt = agents.mint("alice", "Alice", std::time::Duration::from_secs(900)).unwrap();
//! assert_eq!(agents.verify(&jwt).unwrap().id, "alice");
//!
//! let visitors = VisitorTokens::new(b"another-secret");
//! let id = chat_core::model::VisitorId::new_random();
//! let token = visitors.mint(id, "default");
//! assert_eq!(visitors.verify(&token, "default").unwrap(), id);
//! assert!(visitors.verify(&token, "other-site").is_err());
//! ```

use crate::identity::{is_user_visitor, user_visitor_id, IdentitySecret, UserClaim};
use crate::model::{is_valid_site_id, Agent, Principal, SiteId, Sites, VisitorId, VisitorProfile};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential was presented where one is required.
    #[error("missing token")]
    Missing,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// Bad signature, wrong algorithm, malformed, or missing required claims.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The claims of an agent JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentClaims {
    /// Agent id.
    pub sub: String,
    /// Display name; defaults to `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before, seconds since the Unix epoch (honoured when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Audience (checked by the validation when `CHAT_ADMIN_JWT_AUDIENCE` is set; minted then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// Issuer (checked by the validation when `CHAT_ADMIN_JWT_ISSUER` is set; minted then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The one site the agent works for (issue 13); `sites` wins when both are present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The sites the agent works for; `["*"]` means every site. Without `site` and `sites`
    /// the agent works for `CHAT_DEFAULT_AGENT_SITES`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<Vec<String>>,
}

/// Most sites one agent token may list.
pub const MAX_AGENT_SITES: usize = 1000;

impl AgentClaims {
    /// The sites these claims grant, or `None` when they name none.
    fn granted_sites(&self) -> Result<Option<Sites>, AuthError> {
        let listed: Vec<&String> = match (&self.sites, &self.site) {
            (Some(sites), _) => sites.iter().collect(),
            (None, Some(site)) => vec![site],
            (None, None) => return Ok(None),
        };
        if listed.len() > MAX_AGENT_SITES {
            return Err(AuthError::Invalid(format!(
                "`sites` lists {} sites; at most {MAX_AGENT_SITES}",
                listed.len()
            )));
        }
        if listed.iter().any(|s| s.as_str() == "*") {
            return Ok(Some(Sites::All));
        }
        if let Some(bad) = listed.iter().find(|s| !is_valid_site_id(s)) {
            return Err(AuthError::Invalid(format!(
                "`{}` in `sites` is not a site id (1..=64 of [A-Za-z0-9_-])",
                bad.chars().take(70).collect::<String>()
            )));
        }
        Sites::only(listed.into_iter().cloned())
            .map(Some)
            .ok_or_else(|| AuthError::Invalid("`sites` lists no site".into()))
    }
}

/// What an agent JWT must satisfy besides its signature and `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTokenRules {
    /// Required `aud` (`CHAT_ADMIN_JWT_AUDIENCE`), when set.
    pub audience: Option<String>,
    /// Required `iss` (`CHAT_ADMIN_JWT_ISSUER`), when set.
    pub issuer: Option<String>,
    /// Longest accepted lifetime, `exp - iat` (or `exp - now` without `iat`)
    /// (`CHAT_ADMIN_JWT_MAX_TTL_SECS`).
    pub max_ttl: Duration,
    /// The sites of an agent whose token names none (`CHAT_DEFAULT_AGENT_SITES`, default
    /// every site).
    pub default_sites: Sites,
}

impl Default for AgentTokenRules {
    fn default() -> Self {
        Self {
            audience: None,
            issuer: None,
            max_ttl: Duration::from_secs(86_400),
            default_sites: Sites::All,
        }
    }
}

/// A verified agent token: who, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAgent {
    /// The agent the token names.
    pub agent: Agent,
    /// The sites the agent works for: the token's `sites` (or `site`), else the default.
    pub sites: Sites,
    /// The token's `exp`, seconds since the Unix epoch: a session opened with it should end
    /// then (or be re-authenticated).
    pub expires_at: u64,
}

/// Verifies (and, for development, mints) agent JWTs signed HS256 with `CHAT_ADMIN_JWT_SECRET`.
#[derive(Clone)]
pub struct AgentTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    rules: AgentTokenRules,
}

impl AgentTokens {
    /// Uses `secret` as the HS256 key, with the default [`AgentTokenRules`].
    pub fn new(secret: &[u8]) -> Self {
        Self::with_rules(secret, &AgentTokenRules::default())
    }

    /// Uses `secret` as the HS256 key; tokens must also satisfy `rules`.
    pub fn with_rules(secret: &[u8], rules: &AgentTokenRules) -> Self {
        // Pinning the algorithm list to HS256 is what refuses `alg: none` and RS/HS confusion.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        validation.validate_nbf = true;
        match &rules.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.set_required_spec_claims(&["exp", "sub", "aud"]);
            }
            // Without a configured audience, a token carrying `aud` is still accepted.
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &rules.issuer {
            validation.set_issuer(&[iss]);
            let mut required = vec!["exp", "sub", "iss"];
            if rules.audience.is_some() {
                required.push("aud");
            }
            validation.set_required_spec_claims(&required);
        }
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            rules: rules.clone(),
        }
    }

    /// Checks signature, algorithm and expiry; returns the agent the token names.
    pub fn verify(&self, token: &str) -> Result<Agent, AuthError> {
        self.verify_with_expiry(token).map(|v| v.agent)
    }

    /// Checks signature, algorithm, `exp`, `nbf`, `aud`, `iss` and the lifetime; returns the
    /// agent the token names and when the token expires.
    pub fn verify_with_expiry(&self, token: &str) -> Result<VerifiedAgent, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data = jsonwebtoken::decode::<AgentClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => {
                    AuthError::Invalid("not valid yet (`nbf` is in the future)".into())
                }
                ErrorKind::InvalidAudience => AuthError::Invalid(
                    "wrong audience (`aud` must be CHAT_ADMIN_JWT_AUDIENCE)".into(),
                ),
                ErrorKind::InvalidIssuer => {
                    AuthError::Invalid("wrong issuer (`iss` must be CHAT_ADMIN_JWT_ISSUER)".into())
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("missing required claim `{claim}`"))
                }
                other => AuthError::Invalid(format!("{other:?}")),
            })?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > 128 {
            return Err(AuthError::Invalid("`sub` must be 1..=128 bytes".into()));
        }
        let from = claims.iat.unwrap_or_else(now_secs);
        let lifetime = claims.exp.saturating_sub(from);
        if lifetime > self.rules.max_ttl.as_secs() {
            return Err(AuthError::Invalid(format!(
                "lifetime of {lifetime} s (exp - {}) is over the accepted {} s \
                 (CHAT_ADMIN_JWT_MAX_TTL_SECS); mint shorter-lived tokens",
                if claims.iat.is_some() { "iat" } else { "now" },
                self.rules.max_ttl.as_secs()
            )));
        }
        let sites = claims
            .granted_sites()?
            .unwrap_or_else(|| self.rules.default_sites.clone());
        let name = claims
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| claims.sub.clone());
        Ok(VerifiedAgent {
            agent: Agent {
                id: claims.sub,
                name: name.chars().take(80).collect(),
            },
            sites,
            expires_at: claims.exp,
        })
    }

    /// Mints a token valid for `ttl`, as the main site would (with the configured `aud` and
    /// `iss`). A `ttl` over the accepted lifetime is refused: such a token would be.
    pub fn mint(&self, agent_id: &str, name: &str, ttl: Duration) -> Result<String, AuthError> {
        self.mint_for_sites(agent_id, name, None, ttl)
    }

    /// [`AgentTokens::mint`] with a `sites` claim (`None`: none, so the default sites apply).
    pub fn mint_for_sites(
        &self,
        agent_id: &str,
        name: &str,
        sites: Option<&[SiteId]>,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        if ttl > self.rules.max_ttl {
            return Err(AuthError::Invalid(format!(
                "a lifetime of {} s is over the accepted {} s (CHAT_ADMIN_JWT_MAX_TTL_SECS)",
                ttl.as_secs(),
                self.rules.max_ttl.as_secs()
            )));
        }
        let now = now_secs();
        let claims = AgentClaims {
            sub: agent_id.to_owned(),
            name: Some(name.to_owned()),
            exp: now + ttl.as_secs(),
            iat: Some(now),
            nbf: None,
            aud: self.rules.audience.clone().map(serde_json::Value::String),
            iss: self.rules.issuer.clone(),
            site: None,
            sites: sites.map(<[SiteId]>::to_vec),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

type HmacSha256 = Hmac<Sha256>;

/// Mints and verifies visitor tokens: `v1.<visitor id>.<site>.<HMAC-SHA256, base64url>`.
///
/// A token proves the holder is that visitor of that site; it does not expire, like the
/// first-party cookie it replaces.
#[derive(Clone)]
pub struct VisitorTokens {
    key: Vec<u8>,
}

impl VisitorTokens {
    /// Uses `secret` as the HMAC key.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.to_vec(),
        }
    }

    fn signature(&self, payload: &str) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A token for `visitor` on `site`.
    pub fn mint(&self, visitor: VisitorId, site: &str) -> String {
        let payload = format!("v1.{visitor}.{site}");
        let sig = URL_SAFE_NO_PAD.encode(self.signature(&payload));
        format!("{payload}.{sig}")
    }

    /// The visitor a token proves, if it is valid for `site`.
    pub fn verify(&self, token: &str, site: &str) -> Result<VisitorId, AuthError> {
        let (payload, sig) = token
            .rsplit_once('.')
            .ok_or_else(|| AuthError::Invalid("malformed visitor token".into()))?;
        let mut parts = payload.splitn(3, '.');
        let (Some("v1"), Some(id), Some(token_site)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Invalid("malformed visitor token".into()));
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| AuthError::Invalid("malformed visitor token".into()))?;
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| AuthError::Invalid("visitor token signature mismatch".into()))?;
        if token_site != site {
            return Err(AuthError::Invalid(
                "visitor token is for another site".into(),
            ));
        }
        id.parse()
            .map_err(|_| AuthError::Invalid("malformed visitor id".into()))
    }
}

/// Turns the credentials a client presents (on any transport) into a [`Principal`].
///
/// ```
/// use chat_core::auth::{AgentTokens, Authenticator, VisitorTokens};
/// let auth = Authenticator::new(AgentTokens::new(b"jwt-secret"), VisitorTokens::new(b"visitor-secret"));
/// // No token: a new visitor, with the token to keep.
/// let (principal, token) = auth.visitor(None, None).unwrap();
/// let (again, _) = auth.visitor(Some(&token), None).unwrap();
/// assert_eq!(principal, again);
/// ```
#[derive(Clone)]
pub struct Authenticator {
    agents: AgentTokens,
    visitors: VisitorTokens,
    identity: Option<IdentitySecret>,
}

/// A visitor let in: who, the token to keep, and what the main site said about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedVisitor {
    /// The visitor (a known user's own id when the main site vouched for them).
    pub principal: Principal,
    /// The visitor token the client should keep.
    pub token: String,
    /// The user fields the widget passed, verified or not.
    pub profile: Option<VisitorProfile>,
    /// The anonymous visitor this browser was before the user logged in: their open
    /// conversation becomes the user's if the user has none (docs/identity.md).
    pub merge_from: Option<VisitorId>,
}

impl Authenticator {
    /// An authenticator over both token kinds.
    pub fn new(agents: AgentTokens, visitors: VisitorTokens) -> Self {
        Self {
            agents,
            visitors,
            identity: None,
        }
    }

    /// Verifies `ChatWidgetConfig.user` hashes with `secret` (`CHAT_IDENTITY_SECRET`).
    pub fn with_identity(mut self, secret: Option<IdentitySecret>) -> Self {
        self.identity = secret;
        self
    }

    /// The agent tokens in use.
    pub fn agent_tokens(&self) -> &AgentTokens {
        &self.agents
    }

    /// A visitor of `site` (default `default`): the one a valid token names, or a new one when
    /// no token is presented. Returns the token the client should keep.
    pub fn visitor(
        &self,
        token: Option<&str>,
        site: Option<&str>,
    ) -> Result<(Principal, String), AuthError> {
        self.visitor_as(token, site, None)
            .map(|admitted| (admitted.principal, admitted.token))
    }

    /// [`Authenticator::visitor`], with the user the main site says is logged in
    /// (`ChatWidgetConfig.user`). With a valid `hash` the visitor is that user's own (the same
    /// on every device); a wrong hash is refused; without one, the fields are kept as
    /// unverified and the visitor is the token's or a new one, as without a user. A known
    /// user's token is accepted only with that user's valid hash, so a token left in a
    /// browser after logging out opens nothing.
    pub fn visitor_as(
        &self,
        token: Option<&str>,
        site: Option<&str>,
        user: Option<&UserClaim>,
    ) -> Result<AdmittedVisitor, AuthError> {
        let site = site.filter(|s| !s.is_empty()).unwrap_or("default");
        if !is_valid_site_id(site) {
            return Err(AuthError::Invalid(
                "site must be 1..=64 of [A-Za-z0-9_-]".into(),
            ));
        }
        let presented = match token.filter(|t| !t.is_empty()) {
            Some(token) => Some(self.visitors.verify(token, site)?),
            None => None,
        };
        let verified =
            match (user, &self.identity) {
                (None, _) => false,
                (Some(claim), identity) => {
                    claim.validate().map_err(AuthError::Invalid)?;
                    match (claim.hash.is_some(), identity) {
                        (false, _) => false,
                        (true, None) => return Err(AuthError::Invalid(
                            "a user hash was given but the gateway has no CHAT_IDENTITY_SECRET \
                             to check it with"
                                .into(),
                        )),
                        (true, Some(secret)) => secret.check(claim).map_err(AuthError::Invalid)?,
                    }
                }
            };
        let admitted = |visitor_id: VisitorId, profile, merge_from| AdmittedVisitor {
            principal: Principal::Visitor {
                visitor_id,
                site_id: site.to_owned(),
            },
            token: self.visitors.mint(visitor_id, site),
            profile,
            merge_from,
        };
        match (user, verified) {
            (Some(claim), true) => {
                let id = user_visitor_id(site, &claim.id);
                // Only an anonymous visitor's conversation moves to the user, never another
                // user's (two people on one browser).
                let merge_from = presented.filter(|p| *p != id && !is_user_visitor(*p));
                Ok(admitted(id, Some(claim.profile(true)), merge_from))
            }
            (user, _) => {
                let profile = user.map(|claim| claim.profile(false));
                match presented {
                    Some(id) if is_user_visitor(id) => Err(AuthError::Invalid(
                        "this visitor token belongs to a signed-in user: pass \
                         ChatWidgetConfig.user with its hash, or connect without the token"
                            .into(),
                    )),
                    Some(id) => Ok(admitted(id, profile, None)),
                    None => Ok(admitted(VisitorId::new_random(), profile, None)),
                }
            }
        }
    }

    /// A human-readable reason for a refused agent token, naming the fix.
    pub fn describe_agent_refusal(error: &AuthError) -> String {
        match error {
            AuthError::Missing => {
                "agent token missing: pass ?token= or Authorization: Bearer".to_string()
            }
            AuthError::Expired => {
                "agent token expired: get a new one from the main site".to_string()
            }
            AuthError::Invalid(why) => format!("agent token invalid ({why})"),
        }
    }
}

/// Which browser origins may open sessions of one kind (visitor or agent).
///
/// Same-origin requests are always allowed; requests without `Origin` (non-browser clients) are
/// not subject to the rule. With no list configured, loopback origins (`localhost`, `127.0.0.1`,
/// `[::1]`, any port and scheme) are allowed for local development.
///
/// ```
/// use chat_core::auth::OriginPolicy;
/// let p = OriginPolicy::from_list("https://shop.example, https://www.shop.example");
/// assert!(p.allows(Some("https://shop.example"), "chat.example"));
/// assert!(!p.allows(Some("https://evil.example"), "chat.example"));
/// assert!(p.allows(Some("https://chat.example"), "chat.example")); // same origin
/// assert!(p.allows(None, "chat.example"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// `*`: any origin.
    Any,
    /// Unset: same-origin and loopback origins only.
    LocalDevelopment,
    /// These exact origins (`scheme://host[:port]`, lowercase, no trailing slash).
    List(Vec<String>),
}

impl OriginPolicy {
    /// Parses a comma-separated list as in `CHAT_ALLOWED_ORIGINS`; empty means
    /// [`OriginPolicy::LocalDevelopment`].
    pub fn from_list(list: &str) -> Self {
        let origins: Vec<String> = list
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        if origins.iter().any(|o| o == "*") {
            Self::Any
        } else if origins.is_empty() {
            Self::LocalDevelopment
        } else {
            Self::List(origins)
        }
    }

    /// Whether a request with this `Origin` header, arriving with this `Host` header, may proceed.
    pub fn allows(&self, origin: Option<&str>, host: &str) -> bool {
        let Some(origin) = origin else { return true };
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
        if !origin_host.is_empty() && origin_host == host.to_ascii_lowercase() {
            return true;
        }
        match self {
            Self::Any => true,
            Self::List(list) => list.contains(&origin),
            Self::LocalDevelopment => {
                let hostname = origin_host
                    .rsplit_once(':')
                    .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
                    .map(|(h, _)| h)
                    .unwrap_or(origin_host);
                matches!(hostname, "localhost" | "127.0.0.1" | "[::1]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_expired_wrong_key_and_alg_none() {
        let tokens = AgentTokens::new(b"k1");
        let now = now_secs();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &AgentClaims {
                sub: "a".into(),
                name: None,
                exp: now - 3600,
                iat: None,
                nbf: None,
                aud: None,
                iss: None,
                site: None,
                sites: None,
            },
            &EncodingKey::from_secret(b"k1"),
        )
        .unwrap();
        assert_eq!(tokens.verify(&expired).unwrap_err(), AuthError::Expired);

        let other = AgentTokens::new(b"k2")
            .mint("a", "A", Duration::from_secs(60))
            .unwrap();
        assert!(matches!(tokens.verify(&other), Err(AuthError::Invalid(_))));

        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"a","exp":{}}}"#, now + 600));
        assert!(matches!(
            tokens.verify(&format!("{header}.{body}.")),
            Err(AuthError::Invalid(_))
        ));

        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &AgentClaims {
                sub: "a".into(),
                name: None,
                exp: now + 600,
                iat: None,
                nbf: None,
                aud: None,
                iss: None,
                site: None,
                sites: None,
            },
            &EncodingKey::from_secret(b"k1"),
        )
        .unwrap();
        assert!(matches!(tokens.verify(&hs384), Err(AuthError::Invalid(_))));
        assert_eq!(tokens.verify("").unwrap_err(), AuthError::Missing);
    }

    #[test]
    fn requires_exp_and_defaults_name_to_sub() {
        let tokens = AgentTokens::new(b"k1");
        #[derive(Serialize)]
        struct NoExp {
            sub: String,
        }
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &NoExp { sub: "a".into() },
            &EncodingKey::from_secret(b"k1"),
        )
        .unwrap();
        assert!(matches!(tokens.verify(&no_exp), Err(AuthError::Invalid(_))));
        let ok = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &AgentClaims {
                sub: "bob".into(),
                name: None,
                exp: now_secs() + 60,
                iat: None,
                nbf: None,
                aud: None,
                iss: None,
                site: None,
                sites: None,
            },
            &EncodingKey::from_secret(b"k1"),
        )
        .unwrap();
        assert_eq!(
            tokens.verify(&ok).unwrap(),
            Agent {
                id: "bob".into(),
                name: "bob".into()
            }
        );
    }

    #[test]
    fn sites_come_from_the_token_else_the_default() {
        let now = now_secs();
        let rules = AgentTokenRules {
            default_sites: Sites::parse("shop1").unwrap(),
            ..AgentTokenRules::default()
        };
        let tokens = AgentTokens::with_rules(b"k1", &rules);
        let sites_of = |claims: serde_json::Value| {
            tokens
                .verify_with_expiry(&sign(&claims, b"k1"))
                .map(|v| v.sites.to_string())
        };
        let base = serde_json::json!({"sub":"a","exp":now+600});
        assert_eq!(sites_of(base.clone()).unwrap(), "shop1", "default");
        let mut one = base.clone();
        one["site"] = "shop2".into();
        assert_eq!(sites_of(one.clone()).unwrap(), "shop2");
        let mut both = one.clone();
        both["sites"] = serde_json::json!(["shop3", "shop2", "shop3"]);
        assert_eq!(sites_of(both).unwrap(), "shop2,shop3", "`sites` wins");
        let mut every = base.clone();
        every["sites"] = serde_json::json!(["*"]);
        assert_eq!(sites_of(every).unwrap(), "*");
        for bad in [serde_json::json!([]), serde_json::json!(["a b"])] {
            let mut claims = base.clone();
            claims["sites"] = bad;
            assert!(matches!(sites_of(claims), Err(AuthError::Invalid(_))));
        }
        let minted = tokens
            .mint_for_sites("a", "A", Some(&["x".into()]), Duration::from_secs(60))
            .unwrap();
        assert!(tokens
            .verify_with_expiry(&minted)
            .unwrap()
            .sites
            .contains("x"));
        assert!(!tokens
            .verify_with_expiry(&minted)
            .unwrap()
            .sites
            .contains("shop1"));
    }

    fn sign(claims: &serde_json::Value, key: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    }

    #[test]
    fn audience_issuer_nbf_and_lifetime_rules() {
        let now = now_secs();
        let rules = AgentTokenRules {
            audience: Some("chat".into()),
            issuer: Some("https://shop.example".into()),
            max_ttl: Duration::from_secs(3600),
            default_sites: Sites::All,
        };
        let tokens = AgentTokens::with_rules(b"k1", &rules);
        let good = serde_json::json!({"sub":"a","exp":now+600,"iat":now,"aud":"chat","iss":"https://shop.example"});
        let verified = tokens.verify_with_expiry(&sign(&good, b"k1")).unwrap();
        assert_eq!(verified.expires_at, now + 600);
        let refusal = |claims: serde_json::Value| match tokens.verify(&sign(&claims, b"k1")) {
            Err(AuthError::Invalid(why)) => why,
            other => panic!("{claims}: {other:?}"),
        };
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = "other".into();
        assert!(refusal(wrong_aud).contains("audience"));
        let mut no_aud = good.clone();
        no_aud.as_object_mut().unwrap().remove("aud");
        assert!(refusal(no_aud).contains("aud"));
        let mut wrong_iss = good.clone();
        wrong_iss["iss"] = "https://evil.example".into();
        assert!(refusal(wrong_iss).contains("issuer"));
        let mut future = good.clone();
        future["nbf"] = (now + 600).into();
        assert!(refusal(future).contains("nbf"));
        let mut long = good.clone();
        long["exp"] = (now + 7200).into();
        assert!(refusal(long).contains("CHAT_ADMIN_JWT_MAX_TTL_SECS"));
        let mut long_no_iat = good.clone();
        long_no_iat.as_object_mut().unwrap().remove("iat");
        long_no_iat["exp"] = (now + 7200).into();
        assert!(refusal(long_no_iat).contains("exp - now"));
        // Minted tokens carry the configured audience and issuer, and respect the lifetime.
        let minted = tokens.mint("bob", "Bob", Duration::from_secs(600)).unwrap();
        assert_eq!(tokens.verify(&minted).unwrap().id, "bob");
        assert!(tokens
            .mint("bob", "Bob", Duration::from_secs(7200))
            .is_err());
        // Without rules, `aud` and `iss` are not required and any value passes.
        let lax = AgentTokens::new(b"k1");
        assert!(lax.verify(&sign(&good, b"k1")).is_ok());
        let mut long_day = good.clone();
        long_day["exp"] = (now + 2 * 86_400).into();
        assert!(lax.verify(&sign(&long_day, b"k1")).is_err());
    }

    #[test]
    fn visitor_tokens_are_bound_to_visitor_and_site() {
        let t = VisitorTokens::new(b"s");
        let id = VisitorId::new_random();
        let token = t.mint(id, "default");
        assert_eq!(t.verify(&token, "default").unwrap(), id);
        let forged = token.replace(&id.to_string(), &VisitorId::new_random().to_string());
        assert!(t.verify(&forged, "default").is_err());
        assert!(VisitorTokens::new(b"other")
            .verify(&token, "default")
            .is_err());
        assert!(t.verify("garbage", "default").is_err());
        assert!(t.verify("v1.x.default.%%%", "default").is_err());
    }

    #[test]
    fn origin_policy_rules() {
        let dev = OriginPolicy::from_list("");
        assert!(dev.allows(Some("http://localhost:3000"), "127.0.0.1:8080"));
        assert!(dev.allows(Some("http://127.0.0.1:5173"), "127.0.0.1:8080"));
        assert!(!dev.allows(Some("https://evil.example"), "127.0.0.1:8080"));
        assert!(!dev.allows(Some("http://localhost.evil.example"), "127.0.0.1:8080"));
        assert!(dev.allows(Some("https://chat.example"), "chat.example"));
        let list = OriginPolicy::from_list("https://A.example/ , https://b.example");
        assert!(list.allows(Some("https://a.example"), "x"));
        assert!(!list.allows(Some("http://a.example"), "x"));
        assert!(!list.allows(Some("null"), "x"));
        assert!(OriginPolicy::from_list("*").allows(Some("https://any.example"), "x"));
    }
}
