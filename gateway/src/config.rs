//! Configuration from environment variables: each setting is read through its entry in the
//! settings table ([`crate::settings`]), which holds its name and default; README.md's
//! configuration table documents the same settings, and a test holds the two together.

mod crate_settings;

use crate::settings::*;
use chat_core::auth::OriginPolicy;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable is set to something that does not parse.
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// `CHAT_CONFIG_FILE` cannot be read.
    #[error("CHAT_CONFIG_FILE: {0}")]
    File(#[from] crate::config_file::ConfigFileError),
    /// Only one of certificate and key is set.
    #[error("CHAT_TLS_CERT and CHAT_TLS_KEY must be set together")]
    HalfTls,
}

impl From<crate::console_sign_in::InvalidSignInUrl> for ConfigError {
    fn from(e: crate::console_sign_in::InvalidSignInUrl) -> Self {
        ConfigError::Invalid {
            name: e.name,
            value: e.value,
            reason: e.reason,
        }
    }
}

/// TLS listener settings.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Address of the TLS listener (`CHAT_TLS_LISTEN`).
    pub listen: SocketAddr,
    /// The certificates: `CHAT_TLS_CERT` + `CHAT_TLS_KEY`, `CHAT_TLS_CERTS`, `CHAT_TLS_CERT_DIR`
    /// (see [`crate::tls`]).
    pub certs: crate::tls::CertSources,
    /// `CHAT_TLS_RELOAD_CHECK_SECS`: how often the certificate files are checked for a change;
    /// `None` (0) = only on SIGHUP.
    pub reload_check: Option<Duration>,
    /// `CHAT_HTTPS_REDIRECT`: the plain listener answers 301 to `https://` (see
    /// [`crate::https_redirect`]).
    pub https_redirect: bool,
    /// `CHAT_HTTPS_PORT`: the port redirects name (the public TLS port, default the listener's).
    pub https_port: u16,
    /// `CHAT_HSTS_MAX_AGE_SECS`: `Strict-Transport-Security` on TLS responses; 0 = not sent.
    pub hsts_max_age: u64,
    /// `CHAT_HSTS_INCLUDE_SUBDOMAINS`: adds `includeSubDomains` to it.
    pub hsts_include_subdomains: bool,
}

/// Compression of the main site's responses (`crate::compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionConfig {
    /// `CHAT_COMPRESSION`.
    pub enabled: bool,
    /// `CHAT_COMPRESSION_MIN_BYTES`: a response announcing a shorter body is sent as is.
    pub min_bytes: u64,
}

/// Connection deadlines of the edge (see the README's configuration table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeTimeouts {
    /// `CHAT_KEEPALIVE_TIMEOUT_SECS`: an idle HTTP/1.1 connection between requests is closed
    /// after this long; the next request's head must also be complete by then.
    pub keepalive: Duration,
    /// `CHAT_HEADER_TIMEOUT_SECS`: a TLS handshake must be done this long after the connection
    /// was accepted, and the first request head of a connection complete this long after it was
    /// handed to HTTP; also the longest wait for each read of a request body.
    pub header: Duration,
    /// `CHAT_H2_IDLE_TIMEOUT_SECS`: an HTTP/2 connection with no open stream for this long is
    /// closed.
    pub h2_idle: Duration,
    /// `CHAT_UPSTREAM_CONNECT_TIMEOUT_SECS`: connecting to the main site.
    pub upstream_connect: Duration,
    /// `CHAT_UPSTREAM_READ_TIMEOUT_SECS`: each read from the main site.
    pub upstream_read: Duration,
}

impl Default for EdgeTimeouts {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_secs(60),
            header: Duration::from_secs(10),
            h2_idle: Duration::from_secs(120),
            upstream_connect: Duration::from_secs(3),
            upstream_read: Duration::from_secs(60),
        }
    }
}

/// Everything the gateway reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Plain HTTP listener (`CHAT_HTTP_LISTEN`).
    pub http_listen: SocketAddr,
    /// TLS listener, when a certificate is configured.
    pub tls: Option<TlsConfig>,
    /// `CHAT_ACME_DIR`: `/.well-known/acme-challenge/` files are served from here (certbot
    /// `--webroot -w DIR`); proxied to the main site when unset.
    pub acme_dir: Option<PathBuf>,
    /// `CHAT_GEOIP_DB`: a MaxMind `.mmdb` file giving the country of visitors' addresses.
    pub geoip_db: Option<PathBuf>,
    /// Compression of the main site's responses.
    pub compression: CompressionConfig,
    /// The main site, `host:port` (`CHAT_UPSTREAM`).
    pub upstream: Option<String>,
    /// Postgres URL (`CHAT_DATABASE_URL`); the embedded store when unset.
    pub database_url: Option<String>,
    /// Root CA file (PEM) for the Postgres server's certificate when the URL has no
    /// `sslrootcert` (`CHAT_DATABASE_CA`).
    pub database_ca: Option<PathBuf>,
    /// Directory of the embedded store and generated secrets (`CHAT_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Postgres pool size (`CHAT_DB_POOL_SIZE`).
    pub db_pool_size: usize,
    /// `CHAT_DB_WRITE_BATCH`: most messages committed in one transaction (1 = one commit per
    /// message).
    pub write_batch: chat_storage::BatchSettings,
    /// `CHAT_UPGRADE_SOCK`: the Unix socket a new gateway (`serve --upgrade`) receives the
    /// listening sockets on; default `CHAT_DATA_DIR/upgrade.sock`.
    pub upgrade_sock: PathBuf,
    /// Agent JWT secret (`CHAT_ADMIN_JWT_SECRET`); generated into the data dir when unset.
    pub admin_jwt_secret: Option<String>,
    /// Visitor token secret (`CHAT_VISITOR_TOKEN_SECRET`); derived from the JWT secret when unset.
    pub visitor_token_secret: Option<String>,
    /// The key the main site signs `ChatWidgetConfig.user.id` with (`CHAT_IDENTITY_SECRET`);
    /// unset: user hashes are refused and user fields are shown as unverified.
    pub identity_secret: Option<String>,
    /// Keys accepted by the HTTP API in place of an agent JWT, with their sites
    /// (`CHAT_API_KEY`: every site; `CHAT_API_KEYS`: `<sites>:<key>,…`).
    pub api_keys: crate::api_keys::ApiKeys,
    /// Widget origins (`CHAT_ALLOWED_ORIGINS`).
    pub visitor_origins: OriginPolicy,
    /// Console origins (`ADMIN_ALLOWED_ORIGINS`).
    pub admin_origins: OriginPolicy,
    /// Longest message body in characters (`CHAT_MAX_MESSAGE_CHARS`).
    pub max_message_chars: usize,
    /// Largest WebSocket frame/message in bytes (`CHAT_WS_MAX_FRAME_BYTES`).
    pub ws_max_frame_bytes: usize,
    /// Server ping interval (`CHAT_WS_PING_INTERVAL_SECS`).
    pub ws_ping_interval: Duration,
    /// Silence after which a peer is dropped (`CHAT_WS_IDLE_TIMEOUT_SECS`).
    pub ws_idle_timeout: Duration,
    /// Outbound events queued per session before it counts as too slow (`CHAT_SESSION_QUEUE`).
    pub session_queue: usize,
    /// Share of visitors sent to WebSocket, per site (`CHAT_WS_ROLLOUT_PERCENT`).
    pub ws_rollout: chat_core::rollout::Rollout,
    /// Pingora worker threads (`CHAT_WORKER_THREADS`).
    pub worker_threads: usize,
    /// How long a long-poll GET is held when there is nothing to send (`CHAT_POLL_HOLD_SECS`).
    pub poll_hold: Duration,
    /// A polling session no GET has reached for this long expires (`CHAT_POLL_SESSION_TTL_SECS`).
    pub poll_session_ttl: Duration,
    /// Most client frames in one long-polling POST (`CHAT_POLL_MAX_FRAMES_PER_POST`).
    pub poll_max_frames_per_post: usize,
    /// Listener of `/metrics` (`CHAT_METRICS_LISTEN`); `None` when set to `off`.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether latency and size histograms are observed (`CHAT_METRICS_HISTOGRAMS`).
    pub metrics_histograms: bool,
    /// Proxies whose `X-Forwarded-For` is believed (`CHAT_TRUSTED_PROXIES`).
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Connection deadlines.
    pub timeouts: EdgeTimeouts,
    /// TCP connections the public listeners hold (`CHAT_MAX_HTTP_CONNECTIONS`,
    /// `CHAT_MAX_HTTP_CONNECTIONS_PER_IP`).
    pub connection_caps: crate::connections::ConnectionCaps,
    /// Admission limits (`CHAT_MAX_CONNECTIONS`, `CHAT_MAX_CONNECTIONS_PER_IP`,
    /// `CHAT_SESSION_OPENS_PER_IP_PER_MIN`).
    pub limits: crate::limits::LimitsConfig,
    /// Visitor sends per session (`CHAT_SEND_RATE_PER_SEC`, `CHAT_SEND_BURST`); `None` when the
    /// rate is 0 (off).
    pub send_rate: Option<chat_core::rate::RateLimit>,
    /// Agent JWT rules (`CHAT_ADMIN_JWT_AUDIENCE`, `CHAT_ADMIN_JWT_ISSUER`,
    /// `CHAT_ADMIN_JWT_MAX_TTL_SECS`).
    pub agent_token_rules: chat_core::auth::AgentTokenRules,
    /// How the agent console gets its token (`CHAT_ADMIN_TOKEN_URL`, `CHAT_ADMIN_LOGIN_URL`).
    pub console_sign_in: crate::console_sign_in::ConsoleSignIn,
    /// The access log (`CHAT_ACCESS_LOG`, `CHAT_ACCESS_LOG_FORMAT`).
    pub access_log: crate::access_log::AccessLogConfig,
    /// Webhooks (`CHAT_WEBHOOK_URLS`, `CHAT_WEBHOOK_SECRET`, `CHAT_WEBHOOK_TIMEOUT_SECS`,
    /// `CHAT_WEBHOOK_MAX_ATTEMPTS`); `None` when no URL is configured.
    pub webhooks: Option<crate::webhooks::WebhookConfig>,
    /// Attachments (`CHAT_MAX_UPLOAD_BYTES`, `CHAT_UPLOAD_TYPES`, `CHAT_UPLOAD_RATE_PER_MIN`,
    /// `CHAT_UPLOAD_BURST`, `CHAT_MAX_CONCURRENT_UPLOADS`, `CHAT_UPLOAD_DIR`).
    pub uploads: crate::api::UploadConfig,
}

impl Config {
    /// Reads the process environment, with `CHAT_CONFIG_FILE`'s values over it
    /// ([`current_settings`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        let settings = current_settings()?;
        Self::from_lookup(|name| settings.get(name).cloned())
    }

    /// Reads variables through `lookup` (tests pass a map). Every default comes from the
    /// settings table ([`crate::settings`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |setting: &Setting| text(&lookup, setting);
        let cert = get(&TLS_CERT);
        let key = get(&TLS_KEY);
        let mut certs = crate::tls::CertSources::default();
        match (cert, key) {
            (Some(cert), Some(key)) => certs.pairs.push(crate::tls::CertPair {
                cert: cert.into(),
                key: key.into(),
            }),
            (None, None) => {}
            _ => return Err(ConfigError::HalfTls),
        }
        if let Some(list) = get(&TLS_CERTS) {
            let pairs = crate::tls::CertSources::parse_list(&list)
                .map_err(|reason| invalid(&TLS_CERTS, list.clone(), reason))?;
            certs.pairs.extend(pairs);
        }
        certs.dir = get(&TLS_CERT_DIR).map(PathBuf::from);
        let tls = if certs.is_configured() {
            let listen: SocketAddr = parse(&lookup, &TLS_LISTEN)?;
            let reload_secs: u64 = parse(&lookup, &TLS_RELOAD_CHECK_SECS)?;
            Some(TlsConfig {
                listen,
                certs,
                reload_check: (reload_secs > 0).then(|| Duration::from_secs(reload_secs)),
                https_redirect: on_off(&lookup, &HTTPS_REDIRECT)?,
                https_port: parse_if_set(&lookup, &HTTPS_PORT)?.unwrap_or(listen.port()),
                hsts_max_age: parse(&lookup, &HSTS_MAX_AGE_SECS)?,
                hsts_include_subdomains: on_off(&lookup, &HSTS_INCLUDE_SUBDOMAINS)?,
            })
        } else {
            None
        };
        let data_dir: PathBuf = set_or_default(&lookup, &DATA_DIR)?.into();
        Ok(Self {
            http_listen: parse(&lookup, &HTTP_LISTEN)?,
            upgrade_sock: get(&UPGRADE_SOCK)
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("upgrade.sock")),
            tls,
            acme_dir: get(&ACME_DIR).map(PathBuf::from),
            geoip_db: get(&GEOIP_DB).map(PathBuf::from),
            compression: CompressionConfig {
                enabled: on_off(&lookup, &COMPRESSION)?,
                min_bytes: parse(&lookup, &COMPRESSION_MIN_BYTES)?,
            },
            upstream: get(&UPSTREAM),
            database_url: get(&DATABASE_URL),
            database_ca: get(&DATABASE_CA).map(PathBuf::from),
            data_dir,
            db_pool_size: parse(&lookup, &DB_POOL_SIZE)?,
            write_batch: chat_storage::BatchSettings {
                max_batch: parse::<usize>(&lookup, &DB_WRITE_BATCH)?.max(1),
                ..chat_storage::BatchSettings::default()
            },
            admin_jwt_secret: get(&ADMIN_JWT_SECRET),
            visitor_token_secret: get(&VISITOR_TOKEN_SECRET),
            identity_secret: match get(&IDENTITY_SECRET) {
                Some(secret) if secret.len() < 32 => {
                    // A secret: `invalid` shows `<hidden>` whatever the value.
                    return Err(invalid(
                        &IDENTITY_SECRET,
                        String::new(),
                        format!(
                            "{} bytes; use at least 32 random bytes (a short key lets anyone \
                             sign in as any user)",
                            secret.len()
                        ),
                    ));
                }
                secret => secret,
            },
            api_keys: crate::api_keys::ApiKeys::parse(
                get(&API_KEY).as_deref(),
                get(&API_KEYS).as_deref(),
            )
            .map_err(|reason| invalid(&API_KEYS, String::new(), reason))?,
            visitor_origins: OriginPolicy::from_list(&get(&ALLOWED_ORIGINS).unwrap_or_default()),
            admin_origins: OriginPolicy::from_list(
                &get(&ADMIN_ALLOWED_ORIGINS).unwrap_or_default(),
            ),
            max_message_chars: parse(&lookup, &MAX_MESSAGE_CHARS)?,
            ws_max_frame_bytes: parse(&lookup, &WS_MAX_FRAME_BYTES)?,
            ws_ping_interval: Duration::from_secs(parse(&lookup, &WS_PING_INTERVAL_SECS)?),
            ws_idle_timeout: Duration::from_secs(parse(&lookup, &WS_IDLE_TIMEOUT_SECS)?),
            session_queue: parse(&lookup, &SESSION_QUEUE)?,
            worker_threads: parse(&lookup, &WORKER_THREADS)?,
            poll_hold: Duration::from_secs(parse(&lookup, &POLL_HOLD_SECS)?),
            poll_session_ttl: Duration::from_secs(parse(&lookup, &POLL_SESSION_TTL_SECS)?),
            poll_max_frames_per_post: parse(&lookup, &POLL_MAX_FRAMES_PER_POST)?,
            ws_rollout: parse(&lookup, &WS_ROLLOUT_PERCENT)?,
            metrics_listen: match get(&METRICS_LISTEN) {
                Some(v) if v.trim().eq_ignore_ascii_case("off") => None,
                _ => Some(parse(&lookup, &METRICS_LISTEN)?),
            },
            metrics_histograms: on_off(&lookup, &METRICS_HISTOGRAMS)?,
            trusted_proxies: parse(&lookup, &TRUSTED_PROXIES)?,
            timeouts: EdgeTimeouts {
                keepalive: secs(&lookup, &KEEPALIVE_TIMEOUT_SECS)?,
                header: secs(&lookup, &HEADER_TIMEOUT_SECS)?,
                h2_idle: secs(&lookup, &H2_IDLE_TIMEOUT_SECS)?,
                upstream_connect: secs(&lookup, &UPSTREAM_CONNECT_TIMEOUT_SECS)?,
                upstream_read: secs(&lookup, &UPSTREAM_READ_TIMEOUT_SECS)?,
            },
            connection_caps: crate::connections::ConnectionCaps {
                total: parse(&lookup, &MAX_HTTP_CONNECTIONS)?,
                per_ip: parse(&lookup, &MAX_HTTP_CONNECTIONS_PER_IP)?,
            },
            limits: crate::limits::LimitsConfig {
                max_connections: parse(&lookup, &MAX_CONNECTIONS)?,
                max_connections_per_ip: parse(&lookup, &MAX_CONNECTIONS_PER_IP)?,
                opens_per_ip_per_min: parse(&lookup, &SESSION_OPENS_PER_IP_PER_MIN)?,
            },
            send_rate: {
                let per_sec: f64 = parse(&lookup, &SEND_RATE_PER_SEC)?;
                let burst: u32 = parse(&lookup, &SEND_BURST)?;
                if !per_sec.is_finite() || per_sec < 0.0 {
                    return Err(invalid(
                        &SEND_RATE_PER_SEC,
                        per_sec.to_string(),
                        "expected a number >= 0 (0 turns the limit off)".into(),
                    ));
                }
                (per_sec > 0.0).then_some(chat_core::rate::RateLimit {
                    per_sec,
                    burst: burst.max(1),
                })
            },
            agent_token_rules: chat_core::auth::AgentTokenRules {
                audience: get(&ADMIN_JWT_AUDIENCE),
                issuer: get(&ADMIN_JWT_ISSUER),
                max_ttl: Duration::from_secs(parse(&lookup, &ADMIN_JWT_MAX_TTL_SECS)?),
                default_sites: {
                    let value = set_or_default(&lookup, &DEFAULT_AGENT_SITES)?;
                    chat_core::model::Sites::parse(&value)
                        .map_err(|reason| invalid(&DEFAULT_AGENT_SITES, value, reason))?
                },
            },
            // Unset is the default; set but empty means none, so `lookup`, not `get`.
            console_sign_in: crate::console_sign_in::ConsoleSignIn::from_vars(
                lookup(ADMIN_TOKEN_URL.name),
                lookup(ADMIN_LOGIN_URL.name),
            )?,
            access_log: crate::access_log::AccessLogConfig {
                target: parse(&lookup, &ACCESS_LOG)?,
                format: parse(&lookup, &ACCESS_LOG_FORMAT)?,
            },
            uploads: crate::api::UploadConfig {
                policy: chat_core::attachment::UploadPolicy {
                    max_bytes: parse(&lookup, &MAX_UPLOAD_BYTES)?,
                    allowed_types: {
                        let list = set_or_default(&lookup, &UPLOAD_TYPES)?;
                        chat_core::attachment::parse_types(&list)
                            .map_err(|why| invalid(&UPLOAD_TYPES, list.clone(), why))?
                    },
                },
                rate: match parse::<u32>(&lookup, &UPLOAD_RATE_PER_MIN)? {
                    0 => None,
                    per_minute => Some(chat_core::rate::RateLimit {
                        per_sec: f64::from(per_minute) / 60.0,
                        burst: parse::<u32>(&lookup, &UPLOAD_BURST)?.max(1),
                    }),
                },
                per_ip: match parse::<u32>(&lookup, &UPLOAD_RATE_PER_IP_PER_MIN)? {
                    0 => None,
                    per_minute => Some(chat_core::rate::RateLimit::per_minute(per_minute)),
                },
                max_concurrent: parse::<usize>(&lookup, &MAX_CONCURRENT_UPLOADS)?.max(1),
                max_concurrent_downloads: parse::<usize>(&lookup, &MAX_CONCURRENT_DOWNLOADS)?
                    .max(1),
                dir: get(&UPLOAD_DIR).map(PathBuf::from),
                unsent_ttl: secs(&lookup, &UPLOAD_UNSENT_TTL_SECS)?,
            },
            webhooks: crate::webhooks::WebhookConfig::from_settings(
                get(&WEBHOOK_URLS).as_deref(),
                get(&WEBHOOK_SECRET).as_deref(),
                secs(&lookup, &WEBHOOK_TIMEOUT_SECS)?,
                parse(&lookup, &WEBHOOK_MAX_ATTEMPTS)?,
            )
            // Both are secrets: `invalid` shows `<hidden>` whatever the value.
            .map_err(|(setting, reason)| invalid(setting, String::new(), reason))?,
        })
    }
}

/// The settings the gateway runs with now: the process environment's `CHAT_*` and `ADMIN_*`
/// variables, and over them the values of `CHAT_CONFIG_FILE` when it is set
/// (`crate::config_file`), re-read on every call.
pub fn current_settings() -> Result<BTreeMap<String, String>, ConfigError> {
    let mut settings: BTreeMap<String, String> = std::env::vars()
        .filter(|(name, _)| is_setting(name))
        .collect();
    if let Some(path) = settings
        .get(CONFIG_FILE.name)
        .filter(|p| !p.trim().is_empty())
    {
        let file = crate::config_file::read(std::path::Path::new(path.trim()))?;
        settings.extend(
            file.into_iter()
                .filter(|(name, _)| is_setting(name) && name != CONFIG_FILE.name),
        );
    }
    Ok(settings)
}

fn is_setting(name: &str) -> bool {
    name.starts_with("CHAT_") || name.starts_with("ADMIN_")
}

/// The value of `setting` as set, when set to something other than spaces.
fn text(lookup: &impl Fn(&str) -> Option<String>, setting: &Setting) -> Option<String> {
    lookup(setting.name).filter(|v| !v.trim().is_empty())
}

/// The value of `setting` as set, else the value its default reads as.
fn set_or_default(
    lookup: &impl Fn(&str) -> Option<String>,
    setting: &Setting,
) -> Result<String, ConfigError> {
    match (text(lookup, setting), setting.default.value()) {
        (Some(set), _) => Ok(set),
        (None, Some(default)) => Ok(default.to_string()),
        // A setting whose default is described is read with `text` or `parse_if_set`.
        (None, None) => Err(invalid(setting, String::new(), "must be set".into())),
    }
}

/// `ConfigError::Invalid` for `setting`; a secret's value is never echoed.
fn invalid(setting: &Setting, value: String, reason: String) -> ConfigError {
    ConfigError::Invalid {
        name: setting.name,
        value: match setting.kind {
            Kind::Secret => "<hidden>".into(),
            _ => value,
        },
        reason,
    }
}

fn on_off(
    lookup: &impl Fn(&str) -> Option<String>,
    setting: &Setting,
) -> Result<bool, ConfigError> {
    let value = set_or_default(lookup, setting)?;
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(invalid(setting, value, "expected on or off".into())),
    }
}

/// A timeout in whole seconds, at least 1.
fn secs(
    lookup: &impl Fn(&str) -> Option<String>,
    setting: &Setting,
) -> Result<Duration, ConfigError> {
    let n: u64 = parse(lookup, setting)?;
    if n == 0 {
        return Err(invalid(
            setting,
            "0".into(),
            "must be at least 1 (seconds)".into(),
        ));
    }
    Ok(Duration::from_secs(n))
}

fn parse<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    setting: &Setting,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let value = set_or_default(lookup, setting)?;
    parse_value(setting, value)
}

/// `None` when unset: for a setting whose default is described, not a value.
fn parse_if_set<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    setting: &Setting,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    text(lookup, setting)
        .map(|value| parse_value(setting, value))
        .transpose()
}

fn parse_value<T: std::str::FromStr>(setting: &Setting, value: String) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| invalid(setting, value.clone(), e.to_string()))
}

#[cfg(test)]
mod tests;
