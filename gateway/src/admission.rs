//! The one admission path into a chat session, whatever the transport:
//!
//! client address → connection and rate limits ([`crate::limits`]) → Origin → credentials →
//! tenant scope (the visitor's site) → the session opened.
//!
//! Every refusal is a [`Refusal`], which maps onto each wire form in [`crate::wire_error`]: HTTP
//! status and `{"error": code, "message": ...}` body, `Retry-After`, the Socket.IO
//! CONNECT_ERROR message, the `reason` of `chat_handshake_failures_total`, and one log line
//! (`debug` for the client's faults, `warn` for the gateway's). The admission functions that
//! open sessions count and log their refusals themselves, so an endpoint only writes them.

use crate::client_addr::TrustedProxies;
use crate::http_util::{header, query_param};
use crate::limits::{Limits, Slot};
use crate::wire_error::Refusal;
use chat_core::auth::{AuthError, Authenticator, OriginPolicy, VerifiedAgent};
use chat_core::identity::UserClaim;
use chat_core::model::{Principal, Role};
use chat_core::service::{ChatService, ChatSession, VisitorIntro};
use chat_core::transport::TransportKind;
use pingora::proxy::Session as HttpSession;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// The credentials a session request presents: a token and, for visitors, the site.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Agent JWT, or the visitor token to keep (none: a new visitor).
    pub token: Option<String>,
    /// The visitor's site (tenant); `default` when absent.
    pub site: Option<String>,
    /// The user the main site says the visitor is (`ChatWidgetConfig.user`), if any.
    pub user: Option<UserClaim>,
}

impl Credentials {
    /// A visitor's user fields from query parameters `user_id`, `user_name`, `user_email` and
    /// `user_hash` (raw WebSocket and long-polling; the access log never writes a query).
    pub fn user_from_query(query: Option<&str>) -> Option<UserClaim> {
        Some(UserClaim {
            id: query_param(query, "user_id")?,
            name: query_param(query, "user_name"),
            email: query_param(query, "user_email"),
            hash: query_param(query, "user_hash"),
        })
    }

    /// A visitor's user fields from a JSON object `{id, name, email, hash}` (Socket.IO `auth`).
    pub fn user_from_json(user: Option<&serde_json::Value>) -> Option<UserClaim> {
        let user = user?.as_object()?;
        let text = |name: &str| user.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let id = match user.get("id")? {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(UserClaim {
            id,
            name: text("name"),
            email: text("email"),
            hash: text("hash"),
        })
    }
}

/// What a request is, before its credentials: the role and transport it asks for, where it
/// comes from, and its `Origin`/`Host`.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Visitor or agent path.
    pub role: Role,
    /// The transport the session would run on.
    pub transport: TransportKind,
    /// The client address: the TCP peer, or what a trusted proxy says
    /// ([`crate::client_addr::client_ip`]).
    pub client: Option<IpAddr>,
    /// The `Origin` header.
    pub origin: Option<String>,
    /// The `Host` header.
    pub host: String,
}

impl Attempt {
    /// The attempt an HTTP request makes on `role`'s path over `transport`; the client address
    /// is taken from `X-Forwarded-For` only when the peer is one of `trusted`.
    pub fn of(
        session: &HttpSession,
        trusted: &TrustedProxies,
        role: Role,
        transport: TransportKind,
    ) -> Self {
        Self {
            role,
            transport,
            client: crate::client_addr::client_ip(session, trusted),
            origin: header(session, "origin").map(str::to_owned),
            host: header(session, "host").unwrap_or("").to_owned(),
        }
    }
}

/// An authenticated principal, scoped to its site, not yet a session.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// Who.
    pub principal: Principal,
    /// For visitors, the token the client keeps.
    pub visitor_token: Option<String>,
    /// For agents, the JWT's `exp` (seconds since the Unix epoch).
    pub agent_expires_at: Option<u64>,
    /// For visitors, what the main site said about them.
    pub intro: VisitorIntro,
}

/// Everything admission decides with. One per process.
pub struct Admission {
    /// The chat service sessions are opened on.
    pub chat: ChatService,
    /// Connection and rate limits.
    pub limits: Limits,
    /// Agent and visitor credentials.
    pub auth: Authenticator,
    /// Who may open sessions of each role; replaced whole on reload ([`Admission::set_origins`]).
    pub origins: RwLock<Origins>,
    /// `CHAT_GEOIP_DB`: the country of visitors' addresses, for their context.
    pub geoip: Option<Arc<crate::geoip::GeoIp>>,
}

/// The `Origin` rules of both roles (`CHAT_ALLOWED_ORIGINS`, `ADMIN_ALLOWED_ORIGINS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins {
    /// Who may open visitor sessions.
    pub visitor: OriginPolicy,
    /// Who may open agent sessions.
    pub admin: OriginPolicy,
}

impl Admission {
    /// Replaces the `Origin` rules (a reload): handshakes from now on are checked against
    /// `origins`; sessions already open stay open.
    pub fn set_origins(&self, origins: Origins) {
        *self
            .origins
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = origins;
    }

    /// Steps 1–2: a place among the open sessions for the client address, and one of its
    /// session opens.
    pub fn limit(&self, client: Option<IpAddr>) -> Result<Slot, Refusal> {
        self.limits.acquire(client).map_err(Refusal::from_limit)
    }

    /// Step 3: the `Origin` rules of `role`.
    pub fn check_origin(
        &self,
        role: Role,
        origin: Option<&str>,
        host: &str,
    ) -> Result<(), Refusal> {
        let origins = self
            .origins
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (policy, variable) = match role {
            Role::Visitor => (&origins.visitor, "CHAT_ALLOWED_ORIGINS"),
            Role::Agent => (&origins.admin, "ADMIN_ALLOWED_ORIGINS"),
        };
        if policy.allows(origin, host) {
            Ok(())
        } else {
            Err(Refusal::ForbiddenOrigin {
                origin: origin.unwrap_or("").to_owned(),
                variable,
            })
        }
    }

    /// Steps 4–5: the credentials, and the tenant they are scoped to (a visitor token is valid
    /// for its own site only; agents are not bound to one site).
    pub fn authenticate(&self, role: Role, credentials: &Credentials) -> Result<Admitted, Refusal> {
        match role {
            Role::Agent => {
                let verified = self.agent(credentials.token.as_deref())?;
                Ok(Admitted {
                    principal: Principal::Agent {
                        agent: verified.agent,
                        sites: verified.sites,
                    },
                    visitor_token: None,
                    agent_expires_at: Some(verified.expires_at),
                    intro: VisitorIntro::default(),
                })
            }
            Role::Visitor => {
                let visitor = self
                    .auth
                    .visitor_as(
                        credentials.token.as_deref(),
                        credentials.site.as_deref(),
                        credentials.user.as_ref(),
                    )
                    .map_err(|e| {
                        Refusal::Unauthorized(match credentials.user {
                            None => format!(
                                "visitor token rejected: {e}; connect without a token to start afresh"
                            ),
                            Some(_) => format!("visitor refused: {e}"),
                        })
                    })?;
                Ok(Admitted {
                    principal: visitor.principal,
                    visitor_token: Some(visitor.token),
                    agent_expires_at: None,
                    intro: VisitorIntro {
                        profile: visitor.profile,
                        merge_from: visitor.merge_from,
                    },
                })
            }
        }
    }

    /// An agent JWT's agent and `exp`, or why it is refused (the HTTP API and `whoami` too).
    pub fn agent(&self, token: Option<&str>) -> Result<VerifiedAgent, Refusal> {
        self.auth
            .agent_tokens()
            .verify_with_expiry(token.unwrap_or(""))
            .map_err(|e| Refusal::Unauthorized(describe(&e)))
    }

    /// Step 6: the session, holding `slot` for its life.
    pub async fn open(
        &self,
        admitted: Admitted,
        transport: TransportKind,
        slot: Option<Slot>,
    ) -> Result<ChatSession, Refusal> {
        let mut session = self
            .chat
            .open_session_with(
                admitted.principal,
                admitted.visitor_token,
                transport,
                admitted.intro,
            )
            .await
            .map_err(|e| Refusal::from_open(&e))?;
        crate::metrics::session_opened(transport, session.principal().role());
        if let Some(slot) = slot {
            session.hold(slot);
        }
        // An agent session lasts as long as its token, unless renewed with `auth`.
        if let Some(exp) = admitted.agent_expires_at {
            session.expire_at(exp);
        }
        Ok(session)
    }

    /// Tells a visitor session its client address (the one admitted) and, with
    /// `CHAT_GEOIP_DB`, its country: both are stored with the contexts it reports.
    fn describe_client(&self, session: &mut ChatSession, client: Option<IpAddr>) {
        if session.principal().role() == Role::Visitor {
            session.set_client(crate::geoip::client_info(client, self.geoip.as_deref()));
        }
    }

    /// The whole path for a request that opens a session at once (raw WebSocket, long-polling
    /// open). Refusals are counted and logged here.
    pub async fn admit(
        &self,
        attempt: &Attempt,
        credentials: &Credentials,
    ) -> Result<ChatSession, Refusal> {
        let result = async {
            let slot = self.limit(attempt.client)?;
            self.check_origin(attempt.role, attempt.origin.as_deref(), &attempt.host)?;
            let admitted = self.authenticate(attempt.role, credentials)?;
            let mut session = self.open(admitted, attempt.transport, Some(slot)).await?;
            self.describe_client(&mut session, attempt.client);
            Ok::<_, Refusal>(session)
        }
        .await;
        if let Err(refusal) = &result {
            refusal.record(attempt.transport, attempt.role);
        }
        result
    }

    /// Steps 1–3 for a connection whose credentials come later (an Engine.IO handshake: the
    /// Socket.IO CONNECT carries them, see [`Admission::connect`]). The slot is held for the
    /// life of the Engine.IO session. Refusals are counted and logged here.
    pub fn admit_connection(&self, attempt: &Attempt) -> Result<Slot, Refusal> {
        let result = self.limit(attempt.client).and_then(|slot| {
            self.check_origin(attempt.role, attempt.origin.as_deref(), &attempt.host)
                .map(|()| slot)
        });
        if let Err(refusal) = &result {
            refusal.record(attempt.transport, attempt.role);
        }
        result
    }

    /// Step 3 alone, for the later requests of an admitted connection (Engine.IO and
    /// long-polling requests carrying a `sid`). Refusals are counted and logged here.
    pub fn admit_request(&self, attempt: &Attempt) -> Result<(), Refusal> {
        let result = self.check_origin(attempt.role, attempt.origin.as_deref(), &attempt.host);
        if let Err(refusal) = &result {
            refusal.record(attempt.transport, attempt.role);
        }
        result
    }

    /// Steps 4–6 for a Socket.IO CONNECT on a connection [`Admission::admit_connection`]
    /// admitted. Refusals are counted and logged here.
    pub async fn connect(
        &self,
        role: Role,
        transport: TransportKind,
        credentials: &Credentials,
        client: Option<IpAddr>,
    ) -> Result<(ChatSession, Admitted), Refusal> {
        let result = match self.authenticate(role, credentials) {
            Ok(admitted) => {
                self.open(admitted.clone(), transport, None)
                    .await
                    .map(|mut session| {
                        self.describe_client(&mut session, client);
                        (session, admitted)
                    })
            }
            Err(refusal) => Err(refusal),
        };
        if let Err(refusal) = &result {
            refusal.record(transport, role);
        }
        result
    }
}

fn describe(error: &AuthError) -> String {
    Authenticator::describe_agent_refusal(error)
}
