//! `chat-gateway serve`: opens the store, builds the chat service and the Pingora server, and
//! prints the start-up lines operators grep for.

use crate::admission::{Admission, Origins};
use crate::config::Config;
use crate::config_reload::ConfigReload;
use crate::connections::{ConnectionCapped, ConnectionTable};
use crate::deadlines::HeadDeadline;
use crate::edge::{ChatEdge, EdgeState};
use crate::error::GatewayError;
use crate::limits::Limits;
use crate::reload::Reloader;
use crate::secrets;
use crate::socketio::SocketIoEndpoints;
use chat_core::auth::{AgentTokens, Authenticator, VisitorTokens};
use chat_core::service::ChatService;
use chat_storage::StoreConfig;
use chat_transport_polling::PollingSessions;
use chat_transport_websocket::WebSocketTransport;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::Opt;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long Pingora keeps accepting after handing its sockets to the new process on SIGQUIT
/// (its `CLOSE_TIMEOUT`), plus a margin: sessions are told to reconnect only once this process
/// no longer accepts, so that they land on the new one.
const UPGRADE_HANDOVER: Duration = Duration::from_millis(5_500);

/// Runs the gateway until the process is told to stop. With `upgrade`, takes the listening
/// sockets over from the running gateway (see `CHAT_UPGRADE_SOCK`).
pub fn serve(config: Config, upgrade: bool) -> Result<(), GatewayError> {
    let secrets = secrets::load(&config)?;
    if let Some(path) = &secrets.generated_at {
        tracing::warn!(
            "CHAT_ADMIN_JWT_SECRET is not set: using a development secret generated in {}; \
             set it to the main site's secret in production",
            path.display()
        );
    }
    // This runtime opens the store and then runs the gateway's own tasks (signals, Socket.IO
    // sessions) for the life of the process; Pingora runs request handling on its own threads.
    let reloader = Reloader::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads.max(1))
        .thread_name("chat-background")
        .enable_all()
        .build()?;
    let store_config = config.store_config();
    // The sites with a webhook URL: the store writes their facts' events into its outbox, in
    // the facts' own transactions (`crate::webhooks`).
    let webhook_outbox = config
        .webhooks
        .as_ref()
        .and_then(|webhooks| webhooks.targets.sites())
        .map(chat_core::webhook::WebhookOutbox::new);
    // With Postgres, other gateway processes may share the database: events and agent presence
    // travel between them on LISTEN/NOTIFY, messages' notifications inside their commits.
    let (store, bus) = {
        let _entered = runtime.enter();
        runtime.block_on(chat_storage::open_with_bus_and_outbox(
            &store_config,
            webhook_outbox.clone(),
        ))?
    };
    match &store_config {
        StoreConfig::Postgres { url, .. } => {
            println!("DB_OK store=postgres url={}", chat_storage::redact_url(url))
        }
        StoreConfig::Embedded { path, .. } => {
            println!("DB_OK store=embedded path={}", path.display())
        }
    }

    if let (Some(webhooks), Some(outbox)) = (&config.webhooks, &webhook_outbox) {
        let _entered = runtime.enter();
        crate::webhooks::start(store.clone(), outbox.clone(), webhooks.clone())?;
        tracing::info!(
            sites = %outbox.sites(),
            "webhooks on: events are delivered from the store's outbox (CHAT_WEBHOOK_URLS)"
        );
    }

    let service_config = config.service_config();
    let chat = match bus {
        Some(bus) => {
            let _entered = runtime.enter();
            tracing::info!(
                node = chat_core::bus::Bus::node_id(&bus),
                "joined the gateway bus (Postgres LISTEN/NOTIFY)"
            );
            ChatService::with_bus(store, service_config, Arc::new(bus))
        }
        None => ChatService::new(store, service_config),
    };
    if let Some(dir) = &config.uploads.dir {
        let files = chat_storage::AttachmentDir::open(dir).map_err(|e| {
            crate::error::GatewayError::Other(format!("CHAT_UPLOAD_DIR {}: {e}", dir.display()))
        })?;
        chat.keep_attachment_files_in(Arc::new(files));
        tracing::info!(dir = %dir.display(), "attachments' bytes go to CHAT_UPLOAD_DIR");
    }
    let websocket = WebSocketTransport::new(config.websocket_settings());
    if secrets.admin_jwt.len() < 32 {
        tracing::warn!(
            bytes = secrets.admin_jwt.len(),
            "CHAT_ADMIN_JWT_SECRET is shorter than 32 bytes: HS256 agent tokens signed with it \
             can be brute-forced; use at least 32 random bytes"
        );
    }
    let auth = Authenticator::new(
        AgentTokens::with_rules(&secrets.admin_jwt, &config.agent_token_rules),
        VisitorTokens::new(&secrets.visitor_token),
    )
    .with_identity(
        config
            .identity_secret
            .as_deref()
            .map(|secret| chat_core::identity::IdentitySecret::new(secret.as_bytes())),
    );
    chat.verify_agent_tokens_with(auth.agent_tokens().clone());
    let geoip = match &config.geoip_db {
        Some(path) => {
            let geoip = crate::geoip::GeoIp::open(path).map_err(GatewayError::Other)?;
            tracing::info!(path = %path.display(), "GeoIP database loaded (CHAT_GEOIP_DB)");
            Some(Arc::new(geoip))
        }
        None => None,
    };
    let admission = Arc::new(Admission {
        geoip,
        chat: chat.clone(),
        limits: Limits::new(config.limits),
        auth,
        origins: std::sync::RwLock::new(Origins {
            visitor: config.visitor_origins.clone(),
            admin: config.admin_origins.clone(),
        }),
    });
    reloader.register(Arc::new(ConfigReload::new(admission.clone(), chat.clone())));
    let socketio = {
        let _entered = runtime.enter();
        SocketIoEndpoints::start(
            admission.clone(),
            config.engine_config(),
            config.socketio_link_settings(),
        )
    };
    let polling = PollingSessions::new(config.polling_settings());
    // The access log's writer thread; SIGHUP reopens its file (for logrotate).
    let (access_log, reopen_access_log) = crate::access_log::AccessLog::start(&config.access_log)
        .map_err(|e| {
        GatewayError::Other(format!(
            "cannot open the access log {:?} (CHAT_ACCESS_LOG): {e}",
            config.access_log.target
        ))
    })?;
    reloader.register(reopen_access_log);
    let upstream = resolve_upstream(config.upstream.as_deref())?;
    let state = Arc::new(EdgeState {
        chat: chat.clone(),
        websocket,
        polling,
        admission,
        api_keys: config.api_keys.clone(),
        socketio,
        api_sends: crate::api::ApiSendLimits::new(config.send_rate),
        uploads: crate::api::Uploads::new(&config.uploads),
        upstream,
        site: upstream.map(|addr| {
            crate::site_forward::SiteForwarder::new(
                addr,
                config.timeouts.upstream_connect,
                config.timeouts.upstream_read,
            )
        }),
        trusted_proxies: config.trusted_proxies.clone(),
        timeouts: config.timeouts,
        access_log,
        plain_http: crate::https_redirect::PlainHttp {
            redirect_to_port: config
                .tls
                .as_ref()
                .filter(|tls| tls.https_redirect)
                .map(|tls| tls.https_port),
            acme_dir: config.acme_dir.clone(),
        },
        hsts: config.tls.as_ref().and_then(|tls| {
            crate::edge_response::hsts_value(tls.hsts_max_age, tls.hsts_include_subdomains)
        }),
        compression: config.compression,
    });

    crate::assets::install_console_sign_in(&config.console_sign_in, state.upstream.is_some());

    let conf = ServerConf {
        threads: config.worker_threads.max(1),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: config.upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    if upgrade {
        println!(
            "UPGRADE_WAITING sock={}: send SIGQUIT to the running gateway",
            config.upgrade_sock.display()
        );
    }
    // With `upgrade`, this waits for the old process's listening sockets.
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy(&server.configuration, ChatEdge::new(state.clone()));
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2_idle_timeout = Some(config.timeouts.h2_idle);
    proxy.server_options = Some(options);
    // Every HTTP/1 request head gets a total deadline (`crate::deadlines`).
    // ... and every connection counts against the connection caps (`crate::connections`).
    let connections = ConnectionTable::new(config.connection_caps, config.trusted_proxies.clone());
    // Connections run on streams of ours (`crate::edge_stream`), and TLS is terminated by the
    // gateway, not by Pingora's listener (`crate::tls::termination`): the TLS listener is a
    // plain TCP listener of the same service.
    let tls_listener = match &config.tls {
        Some(tls) => {
            if !upgrade {
                check_bindable(tls.listen)?;
            }
            // Certificates chosen by SNI from a table that SIGHUP and file changes replace
            // (`crate::tls`); a connection keeps the certificate it was accepted with.
            let certificates = crate::tls::Certificates::load(tls.certs.clone())?;
            for cert in certificates.summaries() {
                let days_left = cert.remaining().as_secs() / 86_400;
                let (file, names) = (cert.cert.display(), cert.names.join(" "));
                if cert.remaining().is_zero() {
                    // Served anyway, as Nginx does: browsers will refuse it, but so would a
                    // missing one.
                    tracing::warn!(%file, %names, "certificate EXPIRED: renew it");
                } else {
                    tracing::info!(%file, %names, days_left, "certificate loaded");
                }
            }
            reloader.register(certificates.clone());
            if let Some(every) = tls.reload_check {
                crate::tls::watch(certificates.clone(), every);
            }
            Some(crate::tls::termination::TlsListener {
                listen: tls.listen,
                config: crate::tls::termination::server_config(certificates.resolver())
                    .map_err(|e| GatewayError::Tls(e.to_string()))?,
                handshake_timeout: config.timeouts.header,
            })
        }
        None => None,
    };
    let mut edge = pingora::services::listening::Service::new(
        "chat-gateway".to_string(),
        crate::edge_stream::OwnStreams::new(
            ConnectionCapped::new(
                // The main site's plain reads are answered before Pingora (`crate::h1_front`).
                crate::h1_front::H1Front::new(HeadDeadline::new(proxy, config.timeouts), state),
                connections,
                config.timeouts.keepalive,
            ),
            tls_listener,
        ),
    );
    if !upgrade {
        check_bindable(config.http_listen)?;
    }
    edge.add_listener(
        ListenerConfig::tcp(config.http_listen.to_string()).l4_buffer(edge_l4_buffers()),
    );
    let mut listening = vec![config.http_listen];
    if let Some(tls) = &config.tls {
        edge.add_listener(ListenerConfig::tcp(tls.listen.to_string()).l4_buffer(edge_l4_buffers()));
        listening.push(tls.listen);
    }
    server.add_service(edge);
    // SIGHUP re-reads what can change without a restart (`crate::reload`); each part registers
    // itself above.
    {
        let reloader = reloader.clone();
        runtime.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::error!("cannot install the SIGHUP handler: reload needs a restart");
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading");
                let reloader = reloader.clone();
                // Reloading reads files; keep it off the async workers.
                let _ = tokio::task::spawn_blocking(move || reloader.reload_all()).await;
            }
        });
    }
    crate::metrics_listener::start(&config, &mut server, &runtime, &chat, upgrade)?;
    runtime.spawn(crate::api::sweep_unsent_attachments(
        chat.clone(),
        config.uploads.unsent_ttl,
    ));

    runtime.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Pingora drains connections on SIGTERM; sessions are told to reconnect at once so that
        // clients resume elsewhere instead of waiting for the drain to cut them. On SIGQUIT
        // (graceful upgrade) Pingora hands the sockets over and keeps accepting a few seconds
        // more; sessions are told to reconnect once only the new process accepts.
        let (Ok(mut term), Ok(mut quit)) =
            (signal(SignalKind::terminate()), signal(SignalKind::quit()))
        else {
            tracing::error!("cannot install the SIGTERM/SIGQUIT handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: telling every session to reconnect elsewhere");
            }
            _ = quit.recv() => {
                tracing::info!("SIGQUIT: handing the sockets to the new process");
                tokio::time::sleep(UPGRADE_HANDOVER).await;
                tracing::info!("telling every session to reconnect to the new process");
            }
        }
        chat.begin_shutdown();
    });
    let banner = config.clone();
    std::thread::spawn(move || announce_when_listening(&banner, &listening));
    server.run_forever();
}

/// Resolves `CHAT_UPSTREAM` once, so a typo fails at start-up rather than on every request.
fn resolve_upstream(upstream: Option<&str>) -> Result<Option<SocketAddr>, GatewayError> {
    use std::net::ToSocketAddrs;
    let Some(upstream) = upstream else {
        return Ok(None);
    };
    let invalid = |why: String| {
        GatewayError::Other(format!(
            "CHAT_UPSTREAM={upstream:?}: {why}; expected host:port"
        ))
    };
    let mut addrs = upstream
        .to_socket_addrs()
        .map_err(|e| invalid(e.to_string()))?;
    addrs
        .next()
        .map(Some)
        .ok_or_else(|| invalid("resolves to no address".into()))
}

fn check_bindable(addr: SocketAddr) -> Result<(), GatewayError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| GatewayError::Other(format!("cannot listen on {addr}: {e}")))
}

/// Prints the start-up lines once the listeners really accept connections.
fn announce_when_listening(config: &Config, listening: &[SocketAddr]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for addr in listening {
        let probe = match addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            other => *other,
        };
        while TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                eprintln!("error: {addr} is not accepting connections 30 s after start");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let http = config.http_listen;
    match &config.tls {
        Some(tls) => println!(
            "SERVER_OK port={} tls_port={}",
            http.port(),
            tls.listen.port()
        ),
        None => println!("SERVER_OK port={}", http.port()),
    }
    println!("WS_OK visitor=/ws-visitor admin=/ws-admin");
    println!("P0_OK: chat_widget + admin_panel + message_persist");
    let host = if http.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        http.ip().to_string()
    };
    println!("Demo page:     http://{host}:{}/chat/demo/", http.port());
    // The binary as it was started, so the hint works without it on PATH.
    let exe = std::env::args()
        .next()
        .unwrap_or_else(|| "chat-gateway".into());
    println!(
        "Agent console: http://{host}:{}/chat/admin/  (token: {exe} token --agent alice --name Alice)",
        http.port()
    );
    match &config.upstream {
        Some(upstream) => println!("Main site:     every other path is proxied to {upstream}"),
        None => println!("Main site:     CHAT_UPSTREAM is not set; other paths answer 502"),
    }
}

/// Pingora's L4 write buffer on the edge listeners; see [`edge_l4_buffers`].
const EDGE_WRITE_BUFFER: usize = 512;

/// The edge's per-connection L4 buffers: no read buffer, a 512-byte write buffer.
///
/// A connection lives in Pingora's L4 stream only from its accept until `crate::edge_stream`
/// takes its socket onto a stream of ours, which gathers writes until a flush in a buffer freed
/// once sent; it stays there only when the socket cannot be taken (the process is out of
/// descriptors). Pingora's defaults would still allocate, at every accept, a 64 KiB read buffer
/// (freed buffers taken again come back zeroed by `calloc`, so touched in full) and a 1460-byte
/// write buffer. Every reader above it reads into a buffer of its own (Pingora's HTTP/1 header
/// and body buffers, tungstenite's frame buffer, rustls' record buffer), so no read buffer is
/// needed; 512 bytes of write buffer keep a refusal's head and body in one segment on a
/// connection left on Pingora's stream (tungstenite's handshake keeps the body of a refused
/// upgrade only when it came with the head).
fn edge_l4_buffers() -> L4BufferSettings {
    L4BufferSettings::default().read(0).write(EDGE_WRITE_BUFFER)
}
