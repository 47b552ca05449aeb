//! Every setting of the gateway, written once: its environment name, what kind of value it
//! takes, what unset means, whether a reload applies it, and a one-line doc.
//!
//! [`crate::config::Config::from_lookup`] reads each setting through its constant here and
//! takes every default from it; `crate::config_reload` asks it which settings are reloadable;
//! a test (`settings/readme_table.rs`) fails when README.md's configuration table and
//! [`SETTINGS`] disagree on a name, a default or a *Reloadable* mark. The README's meaning
//! column is the long form of each doc line.

#[cfg(test)]
mod readme_table;

/// One setting: an environment variable (or a `NAME=value` line of `CHAT_CONFIG_FILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The variable, `CHAT_…` or `ADMIN_…`.
    pub name: &'static str,
    /// What kind of value it takes.
    pub kind: Kind,
    /// What unset (or set to only spaces) means.
    pub default: DefaultValue,
    /// Whether a reload (`SIGHUP`) applies a new value at once; the others wait for a restart.
    pub reloadable: bool,
    /// One line on what it sets (the README's meaning column says it at length).
    pub doc: &'static str,
}

/// What kind of value a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A socket address, `host:port`.
    Address,
    /// A TCP port.
    Port,
    /// A whole number of seconds.
    Seconds,
    /// A whole number (of connections, bytes, messages, …).
    Count,
    /// A decimal number.
    Number,
    /// `on`/`off` (also `true`/`false`, `1`/`0`, `yes`/`no`).
    Switch,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A comma-separated list.
    List,
    /// A file or directory.
    Path,
    /// A URL or a path on this origin.
    Url,
    /// A secret: its value is never echoed, in an error or a log line.
    Secret,
    /// Free text read by the setting's own parser.
    Text,
}

/// What an unset setting means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// Unset reads as this value, exactly as if it were set; the README shows it in backquotes.
    Value(&'static str),
    /// Unset reads as `value`; the README shows `shown`, the value with what it means.
    Shown {
        /// What unset reads as.
        value: &'static str,
        /// The README's default cell.
        shown: &'static str,
    },
    /// No value stands for unset; these words (the README's default cell) say what it means:
    /// `—` (not used), `generated`, `the \`CHAT_TLS_LISTEN\` port`, …
    Described(&'static str),
}

impl DefaultValue {
    /// The value unset reads as; `None` when the default is described, not a value.
    pub const fn value(&self) -> Option<&'static str> {
        match *self {
            DefaultValue::Value(value) | DefaultValue::Shown { value, .. } => Some(value),
            DefaultValue::Described(_) => None,
        }
    }

    /// The README's default cell for it.
    pub fn documented(&self) -> String {
        match *self {
            DefaultValue::Value(value) => format!("`{value}`"),
            DefaultValue::Shown { shown, .. } | DefaultValue::Described(shown) => shown.to_string(),
        }
    }
}

impl Setting {
    /// The value unset reads as. For use in constants, where a setting without one fails the
    /// build.
    pub const fn default_value(&self) -> &'static str {
        match self.default.value() {
            Some(value) => value,
            None => panic!("this setting's default is described, not a value"),
        }
    }

    /// The setting of that name, if the gateway has one.
    pub fn named(name: &str) -> Option<&'static Setting> {
        SETTINGS.iter().find(|setting| setting.name == name)
    }
}

/// Whether a reload applies a new value of `name` at once (`crate::config_reload`).
pub fn is_reloadable(name: &str) -> bool {
    Setting::named(name).is_some_and(|setting| setting.reloadable)
}

/// Declares each setting as a constant and lists them all in [`SETTINGS`], so a setting is
/// written in one place. A row: its one-line doc comment, then
/// `CONSTANT = "ENV_NAME", Kind, default` and, for a setting a reload applies, `, reloadable`.
macro_rules! settings {
    ($(
        #[doc = $doc:literal]
        $constant:ident = $name:literal, $kind:expr, $default:expr $(, $reloadable:ident)?;
    )*) => {
        $(
            #[doc = $doc]
            pub const $constant: Setting = Setting {
                name: $name,
                kind: $kind,
                default: $default,
                reloadable: settings!(@reloadable $($reloadable)?),
                doc: $doc.trim_ascii(),
            };
        )*

        /// Every setting, in the order of README.md's configuration table.
        pub const SETTINGS: &[Setting] = &[$($constant),*];
    };
    (@reloadable reloadable) => { true };
    (@reloadable) => { false };
}

use DefaultValue::{Described, Shown, Value};
use Kind::*;

/// Not set: the README's `—`.
const UNSET: DefaultValue = Described("—");

settings! {
    /// An environment file whose settings override the process environment; re-read on SIGHUP.
    CONFIG_FILE = "CHAT_CONFIG_FILE", Path, UNSET;
    /// The plain HTTP listener.
    HTTP_LISTEN = "CHAT_HTTP_LISTEN", Address, Value("127.0.0.1:8080");
    /// PEM certificate chain; with `CHAT_TLS_KEY` it enables the TLS listener.
    TLS_CERT = "CHAT_TLS_CERT", Path, UNSET;
    /// PEM private key of `CHAT_TLS_CERT`.
    TLS_KEY = "CHAT_TLS_KEY", Path, UNSET;
    /// The TLS listener.
    TLS_LISTEN = "CHAT_TLS_LISTEN", Address, Value("0.0.0.0:8443");
    /// More certificates, `cert.pem:key.pem` pairs chosen by SNI.
    TLS_CERTS = "CHAT_TLS_CERTS", List, UNSET;
    /// A directory scanned for certificates (certbot's layout or `<name>.crt` + `<name>.key`).
    TLS_CERT_DIR = "CHAT_TLS_CERT_DIR", Path, UNSET;
    /// How often the certificate files are checked for a change; 0: only on SIGHUP.
    TLS_RELOAD_CHECK_SECS = "CHAT_TLS_RELOAD_CHECK_SECS", Seconds, Value("5");
    /// With TLS, the plain listener answers 301 to `https://`.
    HTTPS_REDIRECT = "CHAT_HTTPS_REDIRECT", Switch,
        Shown { value: "on", shown: "`on` (with TLS)" };
    /// The port redirects name (the public TLS port).
    HTTPS_PORT = "CHAT_HTTPS_PORT", Port, Described("the `CHAT_TLS_LISTEN` port");
    /// ACME HTTP-01 challenge files are served from this directory.
    ACME_DIR = "CHAT_ACME_DIR", Path, UNSET;
    /// `Strict-Transport-Security: max-age` on TLS responses; 0: not sent.
    HSTS_MAX_AGE_SECS = "CHAT_HSTS_MAX_AGE_SECS", Seconds,
        Shown { value: "0", shown: "`0` (off)" };
    /// Adds `includeSubDomains` to HSTS.
    HSTS_INCLUDE_SUBDOMAINS = "CHAT_HSTS_INCLUDE_SUBDOMAINS", Switch, Value("off");
    /// Compresses the main site's responses (brotli or gzip) when it did not.
    COMPRESSION = "CHAT_COMPRESSION", Switch, Value("on");
    /// A response announcing a shorter body is sent as is.
    COMPRESSION_MIN_BYTES = "CHAT_COMPRESSION_MIN_BYTES", Count, Value("256");
    /// The main site, `host:port`; other paths answer 502 when unset.
    UPSTREAM = "CHAT_UPSTREAM", Text, UNSET;
    /// Postgres URL; the embedded store when unset.
    DATABASE_URL = "CHAT_DATABASE_URL", Url, UNSET;
    /// Postgres connections.
    DB_POOL_SIZE = "CHAT_DB_POOL_SIZE", Count, Value("16");
    /// CA file for the Postgres server's certificate when the URL has no `sslrootcert`.
    DATABASE_CA = "CHAT_DATABASE_CA", Path, UNSET;
    /// Most messages committed in one transaction (group commit); 1: one commit per message.
    DB_WRITE_BATCH = "CHAT_DB_WRITE_BATCH", Count, Value("256");
    /// The embedded store and the generated development secret.
    DATA_DIR = "CHAT_DATA_DIR", Path, Shown { value: "chat-data", shown: "`./chat-data`" };
    /// The Unix socket `serve --upgrade` receives the listening sockets on.
    UPGRADE_SOCK = "CHAT_UPGRADE_SOCK", Path, Described("`CHAT_DATA_DIR/upgrade.sock`");
    /// HS256 secret of agent JWTs; a development one is generated into the data dir when unset.
    ADMIN_JWT_SECRET = "CHAT_ADMIN_JWT_SECRET", Secret, Described("generated");
    /// HMAC key of visitor tokens; derived from the JWT secret when unset.
    VISITOR_TOKEN_SECRET = "CHAT_VISITOR_TOKEN_SECRET", Secret, Described("derived");
    /// An HTTP API key reaching every site.
    API_KEY = "CHAT_API_KEY", Secret, UNSET;
    /// HTTP API keys scoped to sites, `<sites>:<key>,…`.
    API_KEYS = "CHAT_API_KEYS", Secret, UNSET;
    /// The sites of an agent whose JWT names none: `*` or site ids.
    DEFAULT_AGENT_SITES = "CHAT_DEFAULT_AGENT_SITES", List, Value("*");
    /// The key the main site signs its users' ids with (at least 32 bytes).
    IDENTITY_SECRET = "CHAT_IDENTITY_SECRET", Secret, UNSET;
    /// Origins allowed to open visitor sessions.
    ALLOWED_ORIGINS = "CHAT_ALLOWED_ORIGINS", List, Described("local dev"), reloadable;
    /// Origins allowed to open agent sessions.
    ADMIN_ALLOWED_ORIGINS = "ADMIN_ALLOWED_ORIGINS", List, Described("local dev"), reloadable;
    /// The `aud` agent JWTs must carry.
    ADMIN_JWT_AUDIENCE = "CHAT_ADMIN_JWT_AUDIENCE", Text, UNSET;
    /// The `iss` agent JWTs must carry.
    ADMIN_JWT_ISSUER = "CHAT_ADMIN_JWT_ISSUER", Text, UNSET;
    /// Longest accepted agent token lifetime.
    ADMIN_JWT_MAX_TTL_SECS = "CHAT_ADMIN_JWT_MAX_TTL_SECS", Seconds, Value("86400");
    /// Where the agent console fetches its token; empty or `off`: pasted tokens only.
    ADMIN_TOKEN_URL = "CHAT_ADMIN_TOKEN_URL", Url, Value("/api/admin/chat/token");
    /// The main site's sign-in page, linked by the console; empty or `off`: no link.
    ADMIN_LOGIN_URL = "CHAT_ADMIN_LOGIN_URL", Url, Value("/login");
    /// TCP connections the public listeners hold at once.
    MAX_HTTP_CONNECTIONS = "CHAT_MAX_HTTP_CONNECTIONS", Count, Value("8192");
    /// TCP connections held at once from one peer address.
    MAX_HTTP_CONNECTIONS_PER_IP = "CHAT_MAX_HTTP_CONNECTIONS_PER_IP", Count, Value("1024");
    /// Chat sessions open at once on this process.
    MAX_CONNECTIONS = "CHAT_MAX_CONNECTIONS", Count, Value("10000");
    /// Chat sessions open at once from one client address.
    MAX_CONNECTIONS_PER_IP = "CHAT_MAX_CONNECTIONS_PER_IP", Count, Value("200");
    /// Sessions opened per client address per minute.
    SESSION_OPENS_PER_IP_PER_MIN = "CHAT_SESSION_OPENS_PER_IP_PER_MIN", Count, Value("120");
    /// Messages a visitor may send per second, sustained; 0: no limit.
    SEND_RATE_PER_SEC = "CHAT_SEND_RATE_PER_SEC", Number, Value("5");
    /// Messages a visitor may send at once before the rate applies.
    SEND_BURST = "CHAT_SEND_BURST", Count, Value("20");
    /// Longest message body, in characters.
    MAX_MESSAGE_CHARS = "CHAT_MAX_MESSAGE_CHARS", Count, Value("4000");
    /// Largest WebSocket frame, long-polling body and answer, in bytes.
    WS_MAX_FRAME_BYTES = "CHAT_WS_MAX_FRAME_BYTES", Count, Value("65536");
    /// Server ping interval.
    WS_PING_INTERVAL_SECS = "CHAT_WS_PING_INTERVAL_SECS", Seconds, Value("25");
    /// A peer silent this long is closed.
    WS_IDLE_TIMEOUT_SECS = "CHAT_WS_IDLE_TIMEOUT_SECS", Seconds, Value("60");
    /// Events queued per session before it counts as too slow (≥ 2 × `CHAT_DB_WRITE_BATCH`).
    SESSION_QUEUE = "CHAT_SESSION_QUEUE", Count, Value("1024");
    /// Share of visitors told to use WebSocket, for every site or per site.
    WS_ROLLOUT_PERCENT = "CHAT_WS_ROLLOUT_PERCENT", Text, Value("100"), reloadable;
    /// How long a long-polling GET with nothing to return is held.
    POLL_HOLD_SECS = "CHAT_POLL_HOLD_SECS", Seconds, Value("25");
    /// A long-polling session no GET reached for this long expires.
    POLL_SESSION_TTL_SECS = "CHAT_POLL_SESSION_TTL_SECS", Seconds, Value("60");
    /// Most client frames in one long-polling POST.
    POLL_MAX_FRAMES_PER_POST = "CHAT_POLL_MAX_FRAMES_PER_POST", Count, Value("16");
    /// Pingora worker threads.
    WORKER_THREADS = "CHAT_WORKER_THREADS", Count, Value("2");
    /// Proxies whose `X-Forwarded-For` is believed, as CIDR blocks.
    TRUSTED_PROXIES = "CHAT_TRUSTED_PROXIES", List, Shown { value: "", shown: "— (none)" };
    /// Largest attachment upload, in bytes; 0 turns uploads off.
    MAX_UPLOAD_BYTES = "CHAT_MAX_UPLOAD_BYTES", Count, Value("5242880");
    /// The content types an upload may have.
    UPLOAD_TYPES = "CHAT_UPLOAD_TYPES", List, Value("image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain");
    /// Uploads per user per minute, sustained; 0: no limit.
    UPLOAD_RATE_PER_MIN = "CHAT_UPLOAD_RATE_PER_MIN", Count, Value("20");
    /// Uploads per client address per minute, all users together; 0: no limit.
    UPLOAD_RATE_PER_IP_PER_MIN = "CHAT_UPLOAD_RATE_PER_IP_PER_MIN", Count, Value("60");
    /// Uploads a user may make at once before the rate applies.
    UPLOAD_BURST = "CHAT_UPLOAD_BURST", Count, Value("5");
    /// Uploads whose bytes are being read at once on this process.
    MAX_CONCURRENT_UPLOADS = "CHAT_MAX_CONCURRENT_UPLOADS", Count, Value("8");
    /// Attachment downloads whose bytes are held at once on this process.
    MAX_CONCURRENT_DOWNLOADS = "CHAT_MAX_CONCURRENT_DOWNLOADS", Count, Value("32");
    /// A directory for the bytes of attachments, instead of the store.
    UPLOAD_DIR = "CHAT_UPLOAD_DIR", Path, Described("— (the store keeps them)");
    /// An upload no message carried is deleted this long after it was made.
    UPLOAD_UNSENT_TTL_SECS = "CHAT_UPLOAD_UNSENT_TTL_SECS", Seconds, Value("86400");
    /// A MaxMind database giving the country of visitors' addresses.
    GEOIP_DB = "CHAT_GEOIP_DB", Path, UNSET;
    /// An idle HTTP/1.1 connection is closed this long after its last response.
    KEEPALIVE_TIMEOUT_SECS = "CHAT_KEEPALIVE_TIMEOUT_SECS", Seconds, Value("60");
    /// A TLS handshake, then the first request head, must each be done within this.
    HEADER_TIMEOUT_SECS = "CHAT_HEADER_TIMEOUT_SECS", Seconds, Value("10");
    /// An HTTP/2 connection with no open stream this long is closed.
    H2_IDLE_TIMEOUT_SECS = "CHAT_H2_IDLE_TIMEOUT_SECS", Seconds, Value("120");
    /// Connecting to the main site.
    UPSTREAM_CONNECT_TIMEOUT_SECS = "CHAT_UPSTREAM_CONNECT_TIMEOUT_SECS", Seconds, Value("3");
    /// Longest wait for each read from the main site.
    UPSTREAM_READ_TIMEOUT_SECS = "CHAT_UPSTREAM_READ_TIMEOUT_SECS", Seconds, Value("60");
    /// Webhook URLs per site, `<sites>:<url>,…` (`<sites>`: `*` or site ids joined by `|`).
    WEBHOOK_URLS = "CHAT_WEBHOOK_URLS", Secret, UNSET;
    /// The HMAC-SHA256 key webhook requests are signed with (at least 32 bytes).
    WEBHOOK_SECRET = "CHAT_WEBHOOK_SECRET", Secret, UNSET;
    /// Longest wait for a webhook receiver's answer, connecting included.
    WEBHOOK_TIMEOUT_SECS = "CHAT_WEBHOOK_TIMEOUT_SECS", Seconds, Value("10");
    /// Delivery attempts of one webhook event before it is given up as dead.
    WEBHOOK_MAX_ATTEMPTS = "CHAT_WEBHOOK_MAX_ATTEMPTS", Count, Value("20");
    /// The log filter, with levels per module.
    LOG = "CHAT_LOG", Text, Value("info");
    /// `json`: one JSON object per log line.
    LOG_FORMAT = "CHAT_LOG_FORMAT", Choice(&["text", "json"]), Value("text");
    /// The access log: `stdout`, `stderr`, a file or `off`.
    ACCESS_LOG = "CHAT_ACCESS_LOG", Text, Value("stdout");
    /// The access log's line format.
    ACCESS_LOG_FORMAT = "CHAT_ACCESS_LOG_FORMAT", Choice(&["common", "json"]), Value("common");
    /// The listener of `/metrics` and the detailed `/health`; `off` disables it.
    METRICS_LISTEN = "CHAT_METRICS_LISTEN", Address, Value("127.0.0.1:9464");
    /// `off` stops observing the latency and size histograms.
    METRICS_HISTOGRAMS = "CHAT_METRICS_HISTOGRAMS", Switch, Value("on");
}
