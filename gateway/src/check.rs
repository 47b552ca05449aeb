//! `chat-gateway check`: what `nginx -t` was. Validates the configuration and the environment
//! it runs in, and prints one finding per line with its fix:
//!
//! ```text
//! ok    store: postgres at postgres://chat@db/chat reachable, schema at version 1
//! error token: signature does not verify … → fix: …
//! ```
//!
//! Each section is one function over a [`Context`] that adds findings to a [`Report`]; they are
//! listed in [`SECTIONS`], so a new one is one function and one line there. Nothing secret is
//! printed: no secret, no token, and the database URL only through [`chat_storage::redact_url`].
//!
//! Exit status (see `cli.rs` and `main.rs`): 0 when no finding is an error (warnings allowed),
//! 1 when at least one is (chat or the site would break), 2 when the configuration does not even
//! parse.

mod certificates;
mod origins;
mod token;

use crate::config::Config;
use chat_storage::{StorageError, StoreConfig, StoreError};
use std::fmt;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// As it should be.
    Ok,
    /// Works, but probably not what is meant, or unsafe in production.
    Warn,
    /// Chat (or the site behind the gateway) would break: `check` exits 1.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: the report aligns the severities with `{:<5}`.
        f.pad(match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Error => "error",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What it is about: `store`, `secret`, `token`, `origins`, `upstream`, `ports`, …
    pub topic: &'static str,
    /// What was found.
    pub message: String,
    /// What to do about it (none for `ok`).
    pub fix: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {}: {}", self.severity, self.topic, self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, " → fix: {fix}")?;
        }
        Ok(())
    }
}

/// Every finding of one run, in order.
#[derive(Debug, Default)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Adds an `ok` finding.
    pub fn ok(&mut self, topic: &'static str, message: impl Into<String>) {
        self.push(Severity::Ok, topic, message.into(), None);
    }

    /// Adds a warning with its fix.
    pub fn warn(
        &mut self,
        topic: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(Severity::Warn, topic, message.into(), Some(fix.into()));
    }

    /// Adds an error with its fix.
    pub fn error(
        &mut self,
        topic: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(Severity::Error, topic, message.into(), Some(fix.into()));
    }

    fn push(
        &mut self,
        severity: Severity,
        topic: &'static str,
        message: String,
        fix: Option<String>,
    ) {
        self.findings.push(Finding {
            severity,
            topic,
            message,
            fix,
        });
    }

    /// How many findings have this severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

/// What every section may look at.
pub struct Context<'a> {
    /// The parsed configuration.
    pub config: &'a Config,
    /// `--token`: a sample agent token from the main site.
    pub token: Option<&'a str>,
    /// Longest wait for each network probe (store, upstream).
    pub timeout: Duration,
    /// The raw value of a variable, for what `Config` keeps only parsed (the origin lists).
    pub var: &'a dyn Fn(&str) -> Option<String>,
}

/// One section of the check.
pub type Section = fn(&Context<'_>, &mut Report);

/// The sections, in the order they print.
pub const SECTIONS: &[Section] = &[
    store,
    token::secret,
    token::token,
    origins::check,
    certificates::check,
    upstream,
    ports,
    queues,
];

/// Runs every section.
pub fn run(ctx: &Context<'_>) -> Report {
    let mut report = Report::default();
    for section in SECTIONS {
        section(ctx, &mut report);
    }
    report
}

/// Store reachable (within the timeout) and at this binary's schema version. Read-only: an
/// embedded store that does not exist yet is not created.
fn store(ctx: &Context<'_>, report: &mut Report) {
    let config = ctx.config.store_config();
    let (kind, place) = match &config {
        StoreConfig::Postgres { url, .. } => ("postgres", chat_storage::redact_url(url)),
        StoreConfig::Embedded { path, .. } => ("embedded", path.display().to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            report.error("store", format!("cannot start a runtime: {e}"), "retry");
            return;
        }
    };
    let status = runtime.block_on(async {
        tokio::time::timeout(ctx.timeout, chat_storage::schema_status(&config)).await
    });
    let status =
        match status {
            Ok(Ok(status)) => status,
            Err(_) => {
                report.error(
                "store",
                format!(
                    "{kind} at {place} did not answer within {} s",
                    ctx.timeout.as_secs()
                ),
                "check that the database is running and that CHAT_DATABASE_URL's host and port \
                 reach it from this machine (firewall, security group)",
            );
                return;
            }
            Ok(Err(e)) => {
                let fix = match (&e, kind) {
                (StorageError::InvalidUrl(_), _) => {
                    "write CHAT_DATABASE_URL as postgres://user:password@host:5432/database"
                }
                (StorageError::Store(StoreError::Unavailable(_)), "postgres") => {
                    "start Postgres, or correct the host, port, user, password or database name \
                     in CHAT_DATABASE_URL"
                }
                (_, "postgres") => "correct CHAT_DATABASE_URL (user, password, database name)",
                _ => "make the file readable by the gateway's user, or move it away and let the \
                      gateway create a new one",
            };
                report.error("store", format!("{kind} at {place}: {e}"), fix);
                return;
            }
        };
    let pending: Vec<String> = status
        .pending
        .iter()
        .map(|m| format!("{:04}_{}", m.version, m.name))
        .collect();
    match kind {
        "postgres" if status.found < status.expected => report.error(
            "store",
            format!(
                "postgres at {place} reachable, schema at version {} but this gateway needs {} \
                 (pending: {}); the gateway refuses to start",
                status.found,
                status.expected,
                pending.join(", ")
            ),
            "run chat-gateway migrate (with the same CHAT_DATABASE_URL, as a role allowed to \
             create tables)",
        ),
        _ if !status.exists => report.ok(
            "store",
            format!(
                "embedded store {place} does not exist yet; the gateway creates it (schema \
                 version {}) at its first start",
                status.expected
            ),
        ),
        _ if status.found > status.expected => report.warn(
            "store",
            format!(
                "{kind} at {place} reachable, schema at version {}, newer than this binary's {}",
                status.found, status.expected
            ),
            "fine during a rolling upgrade (migrations only add); otherwise run the newer binary",
        ),
        _ if status.found < status.expected => report.ok(
            "store",
            format!(
                "embedded store {place} at schema version {}; the gateway migrates it to {} \
                 when it starts (pending: {})",
                status.found,
                status.expected,
                pending.join(", ")
            ),
        ),
        _ => report.ok(
            "store",
            format!(
                "{kind} at {place} reachable, schema at version {}",
                status.found
            ),
        ),
    }
}

/// `CHAT_SESSION_QUEUE` holds what the store's writers publish at once. Each commit hands the
/// hub up to `CHAT_DB_WRITE_BATCH` messages in one go, and an agent who watches every
/// conversation gets all of them before its connection's writer runs: a smaller queue closes
/// agents that read fast enough as slow consumers (1013) under load.
fn queues(ctx: &Context<'_>, report: &mut Report) {
    let (queue, batch) = (ctx.config.session_queue, ctx.config.write_batch);
    let burst = batch.largest_burst();
    if queue < burst {
        let (writers, max_batch) = (batch.writers, batch.max_batch);
        report.warn(
            "queues",
            format!(
                "CHAT_SESSION_QUEUE={queue} is below what the store's {writers} writers publish \
                 at once ({writers} × CHAT_DB_WRITE_BATCH={max_batch}): under load, agents who \
                 keep up can be closed as slow consumers (1013)"
            ),
            format!(
                "set CHAT_SESSION_QUEUE to at least {burst} (the default is 1024), or lower \
                 CHAT_DB_WRITE_BATCH"
            ),
        );
    } else {
        report.ok(
            "queues",
            format!(
                "CHAT_SESSION_QUEUE={queue} holds the store's largest burst ({burst} messages)"
            ),
        );
    }
}

/// `CHAT_UPSTREAM` resolves and accepts a TCP connection.
fn upstream(ctx: &Context<'_>, report: &mut Report) {
    let Some(upstream) = ctx.config.upstream.as_deref() else {
        report.warn(
            "upstream",
            "CHAT_UPSTREAM is not set: chat works, every other path answers 502",
            "set CHAT_UPSTREAM=host:port of the main site (e.g. 127.0.0.1:3000)",
        );
        return;
    };
    let addrs: Vec<SocketAddr> = match upstream.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            report.error(
                "upstream",
                format!("CHAT_UPSTREAM={upstream:?} does not resolve ({e}); the gateway refuses to start"),
                "write CHAT_UPSTREAM as host:port, with a host name this machine resolves",
            );
            return;
        }
    };
    let Some(first) = addrs.first() else {
        report.error(
            "upstream",
            format!("CHAT_UPSTREAM={upstream:?} resolves to no address"),
            "write CHAT_UPSTREAM as host:port, with a host name this machine resolves",
        );
        return;
    };
    // The gateway proxies to the first address, so that is the one that must answer.
    let upstream = if first.to_string() == upstream {
        upstream.to_string()
    } else {
        format!("{upstream} ({first})")
    };
    match TcpStream::connect_timeout(first, ctx.timeout) {
        Ok(_) => report.ok(
            "upstream",
            format!("main site {upstream} accepts connections"),
        ),
        Err(e) => report.warn(
            "upstream",
            format!(
                "main site {upstream} does not accept connections ({}): chat works, \
                 the site answers 502 until it does",
                describe_io(&e)
            ),
            "start the main site, or point CHAT_UPSTREAM at where it listens",
        ),
    }
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused: nothing listens there".into(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timed out".into(),
        _ => e.to_string(),
    }
}

/// Each listener's address can be bound now.
fn ports(ctx: &Context<'_>, report: &mut Report) {
    let config = ctx.config;
    let mut listeners: Vec<(&'static str, SocketAddr)> =
        vec![("CHAT_HTTP_LISTEN", config.http_listen)];
    if let Some(tls) = &config.tls {
        listeners.push(("CHAT_TLS_LISTEN", tls.listen));
    }
    if let Some(metrics) = config.metrics_listen {
        listeners.push(("CHAT_METRICS_LISTEN", metrics));
    }
    for (i, (name, addr)) in listeners.iter().enumerate() {
        if let Some((other, _)) = listeners[..i]
            .iter()
            .find(|(_, a)| a.port() == addr.port() && overlaps(a, addr))
        {
            report.error(
                "ports",
                format!("{name}={addr} is the same port as {other}"),
                format!("give {name} a port of its own"),
            );
            continue;
        }
        match TcpListener::bind(addr) {
            Ok(listener) => {
                drop(listener);
                report.ok("ports", format!("{addr} ({name}) is free"));
            }
            Err(e) => {
                let (why, fix) = match e.kind() {
                    ErrorKind::AddrInUse => (
                        "is taken by another process (a running gateway holds it too)".to_string(),
                        format!(
                            "stop what listens there (`ss -ltnp 'sport = :{}'` shows it) or set \
                             {name} to a free address",
                            addr.port()
                        ),
                    ),
                    ErrorKind::PermissionDenied => (
                        "cannot be bound by this user (ports under 1024 need a privilege)".into(),
                        "run with CAP_NET_BIND_SERVICE (the systemd unit grants it) or use a \
                         port over 1023"
                            .into(),
                    ),
                    ErrorKind::AddrNotAvailable => (
                        "is not an address of this machine".into(),
                        format!("set {name} to an address of this machine, or 0.0.0.0:port"),
                    ),
                    _ => (
                        format!("cannot be bound ({e})"),
                        format!("choose another {name}"),
                    ),
                };
                report.error("ports", format!("{addr} ({name}) {why}"), fix);
            }
        }
    }
}

/// Whether two listen addresses on the same port would collide (same IP, or either is a
/// wildcard).
fn overlaps(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_print_on_one_line_with_their_fix() {
        let mut report = Report::default();
        report.ok("store", "postgres reachable, schema at version 1");
        report.error("store", "schema at version 0", "run chat-gateway migrate");
        assert_eq!(
            report.findings[0].to_string(),
            "ok    store: postgres reachable, schema at version 1"
        );
        assert_eq!(
            report.findings[1].to_string(),
            "error store: schema at version 0 → fix: run chat-gateway migrate"
        );
        assert_eq!(report.count(Severity::Error), 1);
    }

    #[test]
    fn a_port_in_use_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let mut config = Config::from_lookup(|_| None).unwrap();
        config.http_listen = addr;
        config.metrics_listen = Some(addr);
        let ctx = Context {
            config: &config,
            token: None,
            timeout: Duration::from_secs(1),
            var: &|_| None,
        };
        let mut report = Report::default();
        ports(&ctx, &mut report);
        let lines: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
        assert!(
            lines[0].starts_with(&format!("error ports: {addr} (CHAT_HTTP_LISTEN) is taken")),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("same port as CHAT_HTTP_LISTEN"),
            "{lines:?}"
        );
    }
}
