//! The access log, as Nginx's `access_log` was: one line per HTTP request (proxied or chat),
//! written in the edge's `logging` phase, and one per finished chat WebSocket session (raw and
//! Socket.IO), written when the session ends. Nothing per chat message.
//!
//! `CHAT_ACCESS_LOG` picks the destination (`stdout`, `stderr`, a file, `off`) and
//! `CHAT_ACCESS_LOG_FORMAT` the format ([`Format`]). Lines never carry a query string (tokens
//! travel in them), an `Authorization` header or a cookie. Requests never wait for the log:
//! entries go through a bounded queue to a writer thread ([`writer`]), and are dropped and
//! counted when it is full.

mod format;
mod session;
mod writer;

pub use format::Format;
pub use session::SessionRecord;

use crate::client_addr::TrustedProxies;
use crate::reload::Reload;
use chat_core::model::Role;
use chat_core::transport::TransportKind;
use pingora::proxy::Session;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Lines queued for the writer; beyond this they are dropped (and counted).
pub const QUEUE_LINES: usize = 8192;

/// Where the access log goes (`CHAT_ACCESS_LOG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The gateway's standard output (the default).
    Stdout,
    /// Its standard error.
    Stderr,
    /// A file, appended to and reopened on SIGHUP.
    File(PathBuf),
    /// No access log.
    Off,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Ok(match s.to_ascii_lowercase().as_str() {
            "stdout" | "-" => Target::Stdout,
            "stderr" => Target::Stderr,
            "off" => Target::Off,
            "" => return Err("expected stdout, stderr, off or a file path".into()),
            _ => Target::File(s.into()),
        })
    }
}

/// The access log's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// `CHAT_ACCESS_LOG`.
    pub target: Target,
    /// `CHAT_ACCESS_LOG_FORMAT`.
    pub format: Format,
}

/// The chat session part of a session line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFields {
    /// `websocket` or `socketio`.
    pub transport: &'static str,
    /// `visitor` or `agent`.
    pub role: &'static str,
    /// Why it ended: a `reason` of `chat_disconnects_total`, or `server_closed` (Socket.IO: the
    /// Engine.IO session ended it).
    pub reason: &'static str,
}

/// One line of the log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When the request or session ended.
    pub time: SystemTime,
    /// The client address (`crate::client_addr`).
    pub client: Option<IpAddr>,
    /// The request method.
    pub method: String,
    /// The path, never the query string.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2.0`…
    pub protocol: &'static str,
    /// The status answered (`101` for a WebSocket session, `499` when no response was written).
    pub status: u16,
    /// Body bytes sent to the client (for a WebSocket session: every byte after the `101`);
    /// `None` when not counted (a long-polling session, whose requests have their own lines).
    pub bytes_sent: Option<u64>,
    /// Bytes received from the client after the `101` (sessions only).
    pub bytes_received: Option<u64>,
    /// From the request head to the end of the response (or of the session).
    pub duration: Duration,
    /// Time spent on the main site (proxied requests only).
    pub upstream: Option<Duration>,
    /// `Referer`.
    pub referer: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// Chat session fields (session lines only).
    pub session: Option<SessionFields>,
}

/// A handle on the access log; cheap to clone. Recording never blocks.
#[derive(Clone, Default)]
pub struct AccessLog {
    tx: Option<SyncSender<writer::Msg>>,
}

impl AccessLog {
    /// No log.
    pub fn off() -> Self {
        Self::default()
    }

    /// Starts the writer thread for `config`; also returns what reopens the file on SIGHUP. A
    /// file that cannot be opened is an error at start-up, not a silent loss later.
    pub fn start(config: &AccessLogConfig) -> std::io::Result<(Self, Arc<dyn Reload>)> {
        let (sink, path) = match &config.target {
            Target::Off => {
                let (wake, _) = sync_channel(1);
                let reopen = writer::Reopen {
                    path: None,
                    reopened: Arc::default(),
                    wake,
                };
                return Ok((Self::off(), Arc::new(reopen)));
            }
            Target::Stdout => (writer::Sink::Stdout, None),
            Target::Stderr => (writer::Sink::Stderr, None),
            Target::File(path) => (
                writer::Sink::File(writer::open_log_file(path)?),
                Some(path.clone()),
            ),
        };
        let (log, tx, reopened) = Self::spawn(sink, config.format, QUEUE_LINES)?;
        let reopen = writer::Reopen {
            path,
            reopened,
            wake: tx,
        };
        Ok((log, Arc::new(reopen)))
    }

    fn spawn(
        sink: writer::Sink,
        format: Format,
        capacity: usize,
    ) -> std::io::Result<(Self, SyncSender<writer::Msg>, writer::Reopened)> {
        let (tx, rx) = sync_channel(capacity);
        let reopened = writer::Reopened::default();
        let for_thread = reopened.clone();
        std::thread::Builder::new()
            .name("chat-access-log".into())
            .spawn(move || writer::run(rx, sink, format, for_thread))?;
        Ok((
            Self {
                tx: Some(tx.clone()),
            },
            tx,
            reopened,
        ))
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `entry`; drops and counts it when the writer is behind.
    pub fn record(&self, entry: Entry) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(writer::Msg::Entry(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                crate::metrics::access_log_dropped();
            }
        }
    }

    /// The line of an HTTP request that Pingora answered (the edge's `logging` phase).
    /// `status` is `None` when no response was written.
    pub fn request(
        &self,
        session: &Session,
        trusted: &TrustedProxies,
        status: Option<u16>,
        started: Instant,
        upstream: Option<Duration>,
    ) {
        if !self.enabled() {
            return;
        }
        let head = session.req_header();
        self.record(Entry {
            time: SystemTime::now(),
            client: crate::client_addr::client_ip(session, trusted),
            method: head.method.as_str().to_owned(),
            path: head.uri.path().to_owned(),
            protocol: protocol(head.version),
            // As Nginx: 499 when the client went away before an answer was written.
            status: status.unwrap_or(499),
            bytes_sent: Some(session.as_downstream().body_bytes_sent() as u64),
            bytes_received: None,
            duration: started.elapsed(),
            upstream,
            referer: referer(session),
            user_agent: header(session, "user-agent"),
            session: None,
        });
    }

    /// Starts the line of a request answered outside Pingora (a long-polling request parked by
    /// `crate::parked`), taken when it is parked; [`RequestRecord::end`] writes it once the
    /// answer was written. `None` when the log is off.
    pub fn begin_request(
        &self,
        session: &Session,
        trusted: &TrustedProxies,
        started: Instant,
    ) -> Option<RequestRecord> {
        if !self.enabled() {
            return None;
        }
        let head = session.req_header();
        Some(RequestRecord {
            log: self.clone(),
            started,
            entry: Entry {
                time: SystemTime::now(),
                client: crate::client_addr::client_ip(session, trusted),
                method: head.method.as_str().to_owned(),
                path: head.uri.path().to_owned(),
                protocol: protocol(head.version),
                status: 499,
                bytes_sent: None,
                bytes_received: None,
                duration: Duration::ZERO,
                upstream: None,
                referer: referer(session),
                user_agent: header(session, "user-agent"),
                session: None,
            },
        })
    }

    /// Starts the record of a chat session: a WebSocket about to be upgraded, or a long-polling
    /// session being opened. Call [`SessionRecord::end`] when it ends.
    pub fn begin_session(
        &self,
        session: &Session,
        trusted: &TrustedProxies,
        transport: TransportKind,
        role: Role,
    ) -> SessionRecord {
        let head = session.req_header();
        SessionRecord {
            log: self.clone(),
            started: Instant::now(),
            client: crate::client_addr::client_ip(session, trusted),
            method: head.method.as_str().to_owned(),
            path: head.uri.path().to_owned(),
            protocol: protocol(head.version),
            // A long-polling session was opened by a request answered 200.
            status: if transport == TransportKind::Polling {
                200
            } else {
                101
            },
            counted: false,
            referer: referer(session),
            user_agent: header(session, "user-agent"),
            transport: transport.as_str(),
            role: role.as_str(),
            counts: Arc::default(),
        }
    }
}

/// The line of a request parked outside Pingora, written when it was answered.
pub struct RequestRecord {
    log: AccessLog,
    started: Instant,
    entry: Entry,
}

impl RequestRecord {
    /// Writes the line: `status` and `bytes_sent` (of the body) were answered.
    pub fn end(mut self, status: u16, bytes_sent: u64) {
        self.entry.time = SystemTime::now();
        self.entry.status = status;
        self.entry.bytes_sent = Some(bytes_sent);
        self.entry.duration = self.started.elapsed();
        self.log.record(self.entry);
    }
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The `Referer` without its query string or fragment: the page that linked here may carry a
/// token in its URL (a console opened with `?token=`), which every request it makes repeats.
fn referer(session: &Session) -> Option<String> {
    header(session, "referer").map(|r| without_query(&r).to_owned())
}

/// A `Referer` header's raw value as the log writes it (see [`referer`]).
pub fn referer_of(raw: &[u8]) -> String {
    without_query(&String::from_utf8_lossy(raw)).to_owned()
}

fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

/// A header's value, lossily decoded (escaping happens when the line is written).
fn header(session: &Session, name: &str) -> Option<String> {
    session
        .req_header()
        .headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Times the main site's part of a proxied request: from choosing the upstream to the end of
/// its response body (or to the log line, when the body never ended).
#[derive(Debug, Default, Clone, Copy)]
pub struct UpstreamTimer {
    started: Option<Instant>,
    finished: Option<Instant>,
}

impl UpstreamTimer {
    /// The request goes to the main site now.
    pub fn start(&mut self) {
        self.started.get_or_insert_with(Instant::now);
    }

    /// The main site's response ended.
    pub fn finish(&mut self) {
        if self.started.is_some() {
            self.finished.get_or_insert_with(Instant::now);
        }
    }

    /// The time spent, if the main site was asked.
    pub fn elapsed(&self) -> Option<Duration> {
        let started = self.started?;
        Some(self.finished.unwrap_or_else(Instant::now) - started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    #[test]
    fn a_referer_loses_its_query_and_fragment() {
        assert_eq!(
            without_query("https://shop.example/chat/admin/?token=eyJ.x.y#top"),
            "https://shop.example/chat/admin/"
        );
        assert_eq!(
            without_query("https://a.example/p#t=1"),
            "https://a.example/p"
        );
        assert_eq!(without_query("https://a.example/p"), "https://a.example/p");
    }

    #[test]
    fn targets_parse() {
        assert_eq!("stdout".parse::<Target>(), Ok(Target::Stdout));
        assert_eq!("STDERR".parse::<Target>(), Ok(Target::Stderr));
        assert_eq!("off".parse::<Target>(), Ok(Target::Off));
        assert_eq!(
            "/var/log/chat/access.log".parse::<Target>(),
            Ok(Target::File("/var/log/chat/access.log".into()))
        );
    }

    fn entry(path: &str) -> Entry {
        Entry {
            time: SystemTime::now(),
            client: None,
            method: "GET".into(),
            path: path.into(),
            protocol: "HTTP/1.1",
            status: 200,
            bytes_sent: Some(0),
            bytes_received: None,
            duration: Duration::ZERO,
            upstream: None,
            referer: None,
            user_agent: None,
            session: None,
        }
    }

    /// A writer that blocks until released, like a pipe nobody reads.
    struct Blocked(Arc<Mutex<()>>);
    impl Write for Blocked {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            drop(self.0.lock().unwrap());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_destination_drops_and_counts_instead_of_blocking() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let sink = writer::Sink::Custom(Box::new(Blocked(gate.clone())));
        let (log, _, _) = AccessLog::spawn(sink, Format::Common, 4).unwrap();
        let before = crate::metrics::http_edge::ACCESS_LOG_DROPPED.get();
        let started = Instant::now();
        for i in 0..100 {
            log.record(entry(&format!("/{i}")));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        // Four wait in the queue and the blocked writer holds what it took before its first
        // write blocked (how many depends on when the scheduler ran it: 4 to 13 were seen on a
        // loaded machine); the rest are dropped, none blocks the caller.
        let dropped = crate::metrics::http_edge::ACCESS_LOG_DROPPED.get() - before;
        assert!((50..=96).contains(&dropped), "dropped {dropped}");
        drop(held);
    }

    #[test]
    fn a_file_is_appended_to_and_reopened_after_a_move() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig {
            target: Target::File(path.clone()),
            format: Format::Common,
        };
        let (log, reopen) = AccessLog::start(&config).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        log.record(entry("/before"));
        let wait_for = |p: &std::path::Path, needle: &str| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains(needle)
            {
                assert!(Instant::now() < deadline, "{needle} never written");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for(&path, "/before");
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        assert_eq!(reopen.name(), "access_log");
        assert!(reopen.reload().unwrap().starts_with("reopened"));
        log.record(entry("/after"));
        wait_for(&path, "/after");
        let old = std::fs::read_to_string(&rotated).unwrap();
        assert!(old.contains("/before") && !old.contains("/after"), "{old}");
    }
}
