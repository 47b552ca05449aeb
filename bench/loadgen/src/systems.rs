//! The systems under test, each started fresh on loopback with a fresh database and stopped
//! (database dropped) after its run: Nginx + Node, socketioxide, and the gateway on Socket.IO and
//! on raw WebSocket.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{Endpoint, Proto};
use crate::procstat;
use crate::BenchError;

const SCHEMA_SQL: &str = include_str!("../../peers/schema.sql");
const JWT_SECRET: &str = "bench-harness-secret-not-for-production-0123456789";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Node,
    Socketioxide,
    GatewaySio,
    GatewayWs,
}

impl System {
    pub const ALL: [System; 4] = [
        System::Node,
        System::Socketioxide,
        System::GatewaySio,
        System::GatewayWs,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            System::Node => "node",
            System::Socketioxide => "socketioxide",
            System::GatewaySio => "gateway-sio",
            System::GatewayWs => "gateway-ws",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            System::Node => "Nginx + Node socket.io 4.8",
            System::Socketioxide => "socketioxide 0.18",
            System::GatewaySio => "gateway, Socket.IO",
            System::GatewayWs => "gateway, raw WebSocket",
        }
    }

    pub fn parse(s: &str) -> Option<System> {
        System::ALL.into_iter().find(|sys| sys.slug() == s)
    }
}

/// Where the programs are and where the systems may put their files.
#[derive(Clone, Debug)]
pub struct Programs {
    pub gateway_bin: PathBuf,
    pub socketioxide_bin: PathBuf,
    pub node_dir: PathBuf,
    pub nginx_bin: PathBuf,
    pub work_dir: PathBuf,
    pub port_base: u16,
    /// Postgres URL of the server (any database; the bench creates its own).
    pub database_url: String,
}

pub struct Running {
    pub system: System,
    pub endpoint: Endpoint,
    pub agent_token: String,
    pub database: String,
    /// The bench database's URL (for the `ANALYZE` after the warm-up).
    pub database_url: String,
    children: Vec<Child>,
    log: PathBuf,
}

impl Running {
    /// The processes whose CPU and RSS count as the server's: Nginx's master and worker and Node;
    /// socketioxide; the gateway.
    pub fn server_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for child in &self.children {
            pids.push(child.id());
            pids.extend(procstat::children(child.id()));
        }
        pids
    }

    /// Ends every process (SIGTERM, then SIGKILL after 5 s) and says whether one had died early.
    pub fn stop(mut self) -> Result<(), BenchError> {
        let mut died = Vec::new();
        for child in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                died.push(format!("pid {} exited early ({status})", child.id()));
                continue;
            }
            // SAFETY: kill(2) on a child we started and have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().ok();
            child.wait().ok();
        }
        if died.is_empty() {
            Ok(())
        } else {
            Err(BenchError::System(format!(
                "{}: {} (log: {})",
                self.system.slug(),
                died.join(", "),
                self.log.display()
            )))
        }
    }
}

fn database_url_for(base: &str, database: &str) -> String {
    // Replace the path of the URL (the database) and keep any query.
    let (head, query) = base
        .split_once('?')
        .map_or((base, None), |(h, q)| (h, Some(q)));
    let after_scheme = head.find("://").map_or(0, |i| i + 3);
    let head = match head[after_scheme..].find('/') {
        Some(slash) => &head[..after_scheme + slash],
        None => head,
    };
    match query {
        Some(q) => format!("{head}/{database}?{q}"),
        None => format!("{head}/{database}"),
    }
}

pub async fn admin_connect(url: &str) -> Result<tokio_postgres::Client, BenchError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        connection.await.ok();
    });
    Ok(client)
}

fn wait_for_port(port: u16, children: &mut [Child], log: &Path) -> Result<(), BenchError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        for child in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = fs::read_to_string(log).unwrap_or_default();
                return Err(BenchError::System(format!(
                    "exited at start ({status}):\n{tail}"
                )));
            }
        }
        if Instant::now() > deadline {
            return Err(BenchError::System(format!(
                "port {port} not open within {READY_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(command: &mut Command, log: &Path) -> Result<Child, BenchError> {
    let out = File::options().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    // SAFETY: prctl is async-signal-safe; it makes the child get SIGTERM when the harness dies
    // (Ctrl-C, a killed CI step), so no server outlives a run.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| BenchError::System(format!("{:?}: {e}", command.get_program())))
}

/// An agent JWT signed with the bench secret, minted by the gateway (`chat-gateway token`); the
/// peers verify the same HS256 token.
fn agent_token(programs: &Programs) -> Result<String, BenchError> {
    let out = Command::new(&programs.gateway_bin)
        .args([
            "token",
            "--agent",
            "bench-agent",
            "--name",
            "Bench",
            "--ttl-minutes",
            "600",
        ])
        .env("CHAT_ADMIN_JWT_SECRET", JWT_SECRET)
        .env("CHAT_DATA_DIR", programs.work_dir.join("gateway-data"))
        .output()
        .map_err(|e| BenchError::System(format!("{}: {e}", programs.gateway_bin.display())))?;
    if !out.status.success() {
        return Err(BenchError::System(format!(
            "chat-gateway token: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn nginx_config(dir: &Path, port: u16, node_port: u16) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\n\
         daemon off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log warn;\n\
         worker_rlimit_nofile 20000;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 client_body_temp_path {d}/client_body;\n\
         \x20 proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n\
         \x20 uwsgi_temp_path {d}/uwsgi;\n\
         \x20 scgi_temp_path {d}/scgi;\n\
         \x20 map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
         \x20 upstream node {{ server 127.0.0.1:{node_port}; keepalive 32; }}\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port};\n\
         \x20   location /socket.io/ {{\n\
         \x20     proxy_pass http://node;\n\
         \x20     proxy_http_version 1.1;\n\
         \x20     proxy_set_header Upgrade $http_upgrade;\n\
         \x20     proxy_set_header Connection $connection_upgrade;\n\
         \x20     proxy_set_header Host $host;\n\
         \x20     proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \x20     proxy_read_timeout 7d;\n\
         \x20     proxy_send_timeout 7d;\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n"
    )
}

fn peer_endpoint(port: u16) -> Endpoint {
    let path = "/socket.io/?EIO=4&transport=websocket".to_string();
    Endpoint {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        proto: Proto::SocketIo,
        visitor_path: path.clone(),
        agent_path: path,
    }
}

/// Starts `system` fresh: a new database (the peers' schema, or the gateway's migrations), then
/// its processes, and waits until its port answers.
pub async fn start(
    system: System,
    programs: &Programs,
    admin: &tokio_postgres::Client,
) -> Result<Running, BenchError> {
    let database = format!(
        "bench_harness_{}_{}",
        system.slug().replace('-', "_"),
        std::process::id()
    );
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await?;
    let url = database_url_for(&programs.database_url, &database);
    let dir = programs.work_dir.join(system.slug());
    fs::create_dir_all(&dir)?;
    let log = dir.join("server.log");
    let agent_token = agent_token(programs)?;
    let port = programs.port_base;
    let mut children = Vec::new();
    let endpoint = match system {
        System::Node | System::Socketioxide => {
            let schema_client = admin_connect(&url).await?;
            schema_client.batch_execute(SCHEMA_SQL).await?;
            drop(schema_client);
            if system == System::Node {
                let node_port = port + 1;
                let mut node = Command::new("node");
                node.arg(programs.node_dir.join("server.js"))
                    .env("PORT", node_port.to_string())
                    .env("DATABASE_URL", &url)
                    .env("JWT_SECRET", JWT_SECRET);
                children.push(spawn(&mut node, &log)?);
                wait_for_port(node_port, &mut children, &log)?;
                let conf = dir.join("nginx.conf");
                fs::write(&conf, nginx_config(&dir, port, node_port))?;
                let mut nginx = Command::new(&programs.nginx_bin);
                nginx
                    .arg("-p")
                    .arg(&dir)
                    .arg("-e")
                    .arg(dir.join("nginx-error.log"))
                    .arg("-c")
                    .arg(&conf);
                children.push(spawn(&mut nginx, &log)?);
            } else {
                let mut sio = Command::new(&programs.socketioxide_bin);
                sio.env("PORT", port.to_string())
                    .env("DATABASE_URL", &url)
                    .env("JWT_SECRET", JWT_SECRET);
                children.push(spawn(&mut sio, &log)?);
            }
            peer_endpoint(port)
        }
        System::GatewaySio | System::GatewayWs => {
            let data_dir = dir.join("data");
            fs::create_dir_all(&data_dir)?;
            let mut gateway = Command::new(&programs.gateway_bin);
            gateway
                .env("CHAT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
                .env("CHAT_DATABASE_URL", &url)
                .env("CHAT_ADMIN_JWT_SECRET", JWT_SECRET)
                .env("CHAT_DATA_DIR", &data_dir)
                .env("CHAT_METRICS_LISTEN", "off")
                .env("CHAT_ACCESS_LOG", "off")
                .env("CHAT_LOG", "warn")
                // Many visitors from few addresses, each sending more than a person would.
                .env("CHAT_SEND_RATE_PER_SEC", "0")
                .env("CHAT_MAX_CONNECTIONS", "100000")
                .env("CHAT_MAX_CONNECTIONS_PER_IP", "100000")
                .env("CHAT_SESSION_OPENS_PER_IP_PER_MIN", "1000000")
                .env("CHAT_MAX_HTTP_CONNECTIONS", "100000")
                .env("CHAT_MAX_HTTP_CONNECTIONS_PER_IP", "100000");
            let status = Command::new(&programs.gateway_bin)
                .arg("migrate")
                .envs(gateway.get_envs().filter_map(|(k, v)| Some((k, v?))))
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                return Err(BenchError::System(format!(
                    "chat-gateway migrate failed ({status})"
                )));
            }
            children.push(spawn(&mut gateway, &log)?);
            let (visitor_path, agent_path, proto) = if system == System::GatewaySio {
                (
                    "/ws-visitor/?EIO=4&transport=websocket",
                    "/ws-admin/?EIO=4&transport=websocket",
                    Proto::SocketIo,
                )
            } else {
                ("/ws-visitor/?site=default", "/ws-admin/?", Proto::RawWs)
            };
            Endpoint {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                proto,
                visitor_path: visitor_path.to_string(),
                agent_path: agent_path.to_string(),
            }
        }
    };
    wait_for_port(port, &mut children, &log)?;
    Ok(Running {
        system,
        endpoint,
        agent_token,
        database,
        database_url: url,
        children,
        log,
    })
}

/// Drops the databases left by runs of the harness that died before dropping them (their name
/// ends with the pid of a process that no longer exists).
pub async fn drop_stale_databases(admin: &tokio_postgres::Client) -> Result<(), BenchError> {
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_harness\\_%'",
            &[],
        )
        .await?;
    for row in rows {
        let name: String = row.get(0);
        let pid = name.rsplit('_').next().and_then(|p| p.parse::<u32>().ok());
        if pid
            .is_some_and(|p| p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists())
        {
            drop_database(admin, &name).await?;
        }
    }
    Ok(())
}

/// Drops a system's database once its server is gone.
pub async fn drop_database(
    admin: &tokio_postgres::Client,
    database: &str,
) -> Result<(), BenchError> {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_only_the_database() {
        assert_eq!(
            database_url_for("postgres://u@h:5/postgres", "x"),
            "postgres://u@h:5/x"
        );
        assert_eq!(
            database_url_for("postgres://u@h:5", "x"),
            "postgres://u@h:5/x"
        );
        assert_eq!(
            database_url_for("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }

    #[test]
    fn systems_parse_by_slug() {
        for s in System::ALL {
            assert_eq!(System::parse(s.slug()), Some(s));
        }
        assert_eq!(System::parse("nope"), None);
    }
}
