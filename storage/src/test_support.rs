//! Postgres servers for tests (feature `test-support`): this crate's conformance suite and the
//! gateway's end-to-end tests use them.
//!
//! [`TestPostgres::start`] uses the server named by the environment variable
//! `CHAT_TEST_DATABASE_URL` when it is set and reachable; otherwise it starts a throwaway
//! cluster: `initdb` into a temporary directory (as the `postgres` user when running as root),
//! listening on a free port of 127.0.0.1 with its Unix socket inside that directory, trust
//! authentication and `fsync=off`. The cluster is stopped and its directory removed on drop.
//! Tests never skip: when no server can be had, they panic saying why.
//!
//! ```no_run
//! use chat_storage::test_support::TestPostgres;
//! # async fn demo() {
//! let pg = TestPostgres::start();
//! let url = pg.fresh_database();
//! let store = chat_storage::PostgresStore::connect(&url, 4).unwrap();
//! store.migrate().await.unwrap();
//! # }
//! ```
//!
//! Environment: `CHAT_TEST_DATABASE_URL` (an existing server, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`), `CHAT_TEST_PG_BIN` (the directory holding
//! `initdb` and `pg_ctl`; otherwise `PATH`, then `/usr/lib/postgresql/<newest>/bin`).

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long starting, stopping or reaching a server may take before a test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub mod chat;
mod tls;

/// A Postgres server for tests: an existing one (`CHAT_TEST_DATABASE_URL`) or a throwaway
/// cluster owned by this value.
pub struct TestPostgres {
    server: Server,
    created: Mutex<Vec<String>>,
}

enum Server {
    External { url: String },
    Owned(Cluster),
}

struct Cluster {
    bin: PathBuf,
    port: AtomicU16,
    as_postgres: bool,
    // Dropped (removed) after the cluster is stopped in `TestPostgres::drop`.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.server {
            Server::External { url } => f
                .debug_struct("TestPostgres")
                .field("external", &crate::redact_url(url))
                .finish(),
            Server::Owned(c) => f
                .debug_struct("TestPostgres")
                .field("port", &c.port())
                .field("dir", &c.dir.path())
                .finish(),
        }
    }
}

impl TestPostgres {
    /// The server of `CHAT_TEST_DATABASE_URL` when set and reachable, otherwise a new
    /// throwaway cluster. Panics with a clear message when neither works.
    pub fn start() -> TestPostgres {
        if let Some(url) = std::env::var("CHAT_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            match wait_until_ready(&url, Duration::from_secs(10)) {
                Ok(()) => {
                    return TestPostgres {
                        server: Server::External { url },
                        created: Mutex::new(Vec::new()),
                    }
                }
                Err(e) => eprintln!(
                    "CHAT_TEST_DATABASE_URL ({}) is not reachable ({e}); starting a throwaway \
                     cluster instead",
                    crate::redact_url(&url)
                ),
            }
        }
        Self::start_throwaway()
    }

    /// A new throwaway cluster, whatever `CHAT_TEST_DATABASE_URL` says (for tests that stop
    /// and restart the server). Panics with a clear message when it cannot be started.
    pub fn start_throwaway() -> TestPostgres {
        let cluster = Cluster::create();
        let pg = TestPostgres {
            server: Server::Owned(cluster),
            created: Mutex::new(Vec::new()),
        };
        if let Server::Owned(cluster) = &pg.server {
            // The free port may be taken by someone else before the server binds it: retry.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match cluster.try_start() {
                    Ok(()) => break,
                    Err(e) if attempt < 5 && e.contains("could not bind") => {
                        cluster.set_port(free_port());
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        pg
    }

    /// One server shared by the callers of this process that overlap in time: started on the
    /// first call, stopped when the last `Arc` is dropped (a later call starts a new one).
    pub fn shared() -> Arc<TestPostgres> {
        static SHARED: Mutex<Weak<TestPostgres>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pg) = slot.upgrade() {
            return pg;
        }
        let pg = Arc::new(Self::start());
        *slot = Arc::downgrade(&pg);
        pg
    }

    /// Whether this value owns a throwaway cluster (and so may stop and start it).
    pub fn owns_server(&self) -> bool {
        matches!(self.server, Server::Owned(_))
    }

    /// The URL of the server's maintenance database (`postgres`, or the database of
    /// `CHAT_TEST_DATABASE_URL`).
    pub fn admin_url(&self) -> String {
        match &self.server {
            Server::External { url } => url.clone(),
            Server::Owned(c) => c.url("postgres"),
        }
    }

    /// Creates a database with a unique name and returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!("chat_test_{}", uuid::Uuid::new_v4().simple());
        let admin = self.admin_url();
        let sql = format!("CREATE DATABASE \"{name}\"");
        let mut attempt = 0;
        loop {
            attempt += 1;
            match execute(&admin, &sql) {
                Ok(()) => break,
                // Concurrent CREATE DATABASEs can collide on the template database.
                Err(e) if attempt < 10 && e.contains("being accessed by other users") => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!(
                    "cannot create a test database on {}: {e}{}",
                    crate::redact_url(&admin),
                    self.log_suffix()
                ),
            }
        }
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.clone());
        match &self.server {
            Server::External { url } => with_database(url, &name),
            Server::Owned(c) => c.url(&name),
        }
    }

    /// Stops the throwaway server (`pg_ctl stop -m fast`), waiting until it is down. Panics
    /// when the server is not owned by this value (`CHAT_TEST_DATABASE_URL`).
    pub fn stop_server(&self) {
        let cluster = self.cluster("stop_server");
        let out = cluster.pg_ctl(&[
            "stop",
            "-m",
            "fast",
            "-w",
            "-t",
            &READY_TIMEOUT.as_secs().to_string(),
        ]);
        if !out.status.success() {
            panic!(
                "pg_ctl stop failed: {}{}",
                output_text(&out),
                self.log_suffix()
            );
        }
    }

    /// Starts the throwaway server again on the same port (`pg_ctl start`), waiting until it
    /// accepts connections. Panics when the server is not owned by this value.
    pub fn start_server(&self) {
        let cluster = self.cluster("start_server");
        cluster.start();
    }

    /// The throwaway server's log (empty for an external server).
    pub fn server_log(&self) -> String {
        match &self.server {
            Server::External { .. } => String::new(),
            Server::Owned(c) => c.log(),
        }
    }

    fn cluster(&self, what: &str) -> &Cluster {
        match &self.server {
            Server::Owned(c) => c,
            Server::External { .. } => panic!(
                "TestPostgres::{what} is only allowed on a throwaway cluster, not on the server of \
                 CHAT_TEST_DATABASE_URL; use TestPostgres::start_throwaway()"
            ),
        }
    }

    fn log_suffix(&self) -> String {
        match &self.server {
            Server::External { .. } => String::new(),
            Server::Owned(c) => format!("\n--- server log ---\n{}", c.log()),
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        match &self.server {
            Server::Owned(cluster) => {
                let out = cluster.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"]);
                if !out.status.success() && cluster.dir.path().join("data/postmaster.pid").exists()
                {
                    eprintln!("TestPostgres: pg_ctl stop failed: {}", output_text(&out));
                }
            }
            Server::External { url } => {
                let names =
                    std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
                for name in names {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    if let Err(e) = execute(url, &sql) {
                        eprintln!("TestPostgres: cannot drop test database {name}: {e}");
                    }
                }
            }
        }
    }
}

impl Cluster {
    fn create() -> Cluster {
        let bin = find_bin_dir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("chat-test-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for Postgres: {e}"));
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
            if !status.as_ref().is_ok_and(|s| s.success()) {
                panic!(
                    "running as root, the throwaway Postgres must run as the `postgres` user, but \
                     `chown -R postgres:postgres {}` failed ({status:?}); create that user or set \
                     CHAT_TEST_DATABASE_URL",
                    dir.path().display()
                );
            }
        }
        let cluster = Cluster {
            bin,
            port: AtomicU16::new(free_port()),
            as_postgres,
            dir,
        };
        let data = cluster.data_dir();
        let out = cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        if !out.status.success() {
            panic!(
                "initdb failed for the throwaway Postgres in {}: {}",
                cluster.dir.path().display(),
                output_text(&out)
            );
        }
        let socket_dir = cluster.dir.path().display().to_string();
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap_or_else(|e| panic!("cannot open postgresql.conf: {e}"));
        let settings = format!(
            "\n# chat-storage test_support\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             shared_buffers = 16MB\n\
             max_connections = 200\n\
             port = {}\n",
            cluster.port()
        );
        conf.write_all(settings.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write postgresql.conf: {e}"));
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// Moves the (stopped) server to `port`: the last `port` line of postgresql.conf wins.
    fn set_port(&self, port: u16) {
        let conf = self.data_dir().join("postgresql.conf");
        let appended = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(format!("port = {port}\n").as_bytes()));
        if let Err(e) = appended {
            panic!("cannot write {}: {e}", conf.display());
        }
        self.port.store(port, Ordering::SeqCst);
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port())
    }

    /// Runs a Postgres binary (as `postgres` when root), capturing its output.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new(find_runuser());
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let data = self.data_dir();
        let mut all: Vec<&std::ffi::OsStr> = vec!["-D".as_ref(), data.as_os_str()];
        all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        self.run("pg_ctl", &all)
    }

    /// `pg_ctl start` and wait until a connection succeeds; panics saying why it did not.
    fn start(&self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    /// `pg_ctl start` and wait until a connection succeeds.
    fn try_start(&self) -> Result<(), String> {
        let log = self.log_path();
        let timeout = READY_TIMEOUT.as_secs().to_string();
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data_dir().as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                timeout.as_ref(),
                "start".as_ref(),
            ],
        );
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start failed for the throwaway Postgres on port {}: {}\n--- server log \
                 ---\n{}",
                self.port(),
                output_text(&out),
                self.log()
            ));
        }
        wait_until_ready(&self.url("postgres"), READY_TIMEOUT).map_err(|e| {
            format!(
                "the throwaway Postgres on port {} did not accept connections within {:?}: {e}\n\
                 --- server log ---\n{}",
                self.port(),
                READY_TIMEOUT,
                self.log()
            )
        })
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn find_runuser() -> PathBuf {
    for candidate in [
        "/usr/sbin/runuser",
        "/sbin/runuser",
        "/usr/bin/runuser",
        "/bin/runuser",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("runuser")
}

/// The directory of `initdb` and `pg_ctl`.
fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHAT_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return dir;
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no Postgres server binaries found (initdb, pg_ctl): install PostgreSQL, set \
             CHAT_TEST_PG_BIN to their directory, or set CHAT_TEST_DATABASE_URL to a running \
             server"
        ),
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let (base, query) = match url.find('?') {
            Some(q) => (&url[..q], &url[q..]),
            None => (url, ""),
        };
        let authority_start = scheme_end + 3;
        let path_start = base[authority_start..]
            .find('/')
            .map_or(base.len(), |i| authority_start + i);
        format!("{}/{database}{query}", &base[..path_start])
    } else {
        // key-value form: the last `dbname` wins
        format!("{url} dbname={database}")
    }
}

/// Runs `f` on a fresh thread with its own Tokio runtime (usable from sync and async code).
fn on_runtime<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build a Tokio runtime: {e}"));
        rt.block_on(f())
    });
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Connects to `url` and runs `sql`.
fn execute(url: &str, sql: &str) -> Result<(), String> {
    let url = url.to_string();
    let sql = sql.to_string();
    on_runtime(move || async move {
        // The store's own TLS handling: a cluster that accepts only TLS (see `enable_tls`) is
        // reached with the default sslmode=prefer.
        let (config, tls) =
            crate::postgres::tls::configure(&url, None).map_err(|e| e.to_string())?;
        let (client, connection) = tokio::time::timeout(READY_TIMEOUT, config.connect(tls))
            .await
            .map_err(|_| "timed out connecting".to_string())?
            .map_err(|e| crate::postgres::describe_error(&e))?;
        let conn = tokio::spawn(connection);
        let result = client
            .batch_execute(&sql)
            .await
            .map_err(|e| crate::postgres::describe_error(&e));
        drop(client);
        let _ = conn.await;
        result
    })
}

/// Retries connecting to `url` and running `SELECT 1` until it works or `timeout` passes.
fn wait_until_ready(url: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match execute(url, "SELECT 1") {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            with_database("postgres://root@127.0.0.1:5432/postgres", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://root@127.0.0.1:5432", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("host=h user=u", "x"),
            "host=h user=u dbname=x"
        );
    }
}
