//! A bare Pingora reverse proxy: the smallest `ProxyHttp` that forwards every request to one
//! upstream, built against the same Pingora (and the same patched `pingora-proxy`) as the
//! gateway. `gateway/benches/proxy-vs-nginx` runs it beside Nginx and the gateway, so that
//! Pingora's own cost per request can be told apart from the gateway's (docs/benchmarks.md,
//! "Reverse proxy vs Nginx").
//!
//! Configured by environment variables:
//! - `BARE_UPSTREAM` (required): the upstream's `host:port`;
//! - `BARE_LISTEN`: plain HTTP listener (default `127.0.0.1:43080`);
//! - `BARE_TLS_LISTEN`, `BARE_TLS_CERT`, `BARE_TLS_KEY`: an optional TLS listener (HTTP/2 and
//!   HTTP/1.1 by ALPN) with that PEM certificate and key;
//! - `BARE_THREADS`: Pingora worker threads (default 1).
//!
//! Run with `cargo run --release -p chat-gateway --example bare_proxy`.

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::{HttpPeer, Opt};
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::net::{SocketAddr, ToSocketAddrs};

/// Forwards everything to `upstream`.
struct BareProxy {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn main() {
    let Some(upstream) = env("BARE_UPSTREAM") else {
        eprintln!("BARE_UPSTREAM (host:port) is required");
        std::process::exit(2);
    };
    let Some(upstream) = upstream.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        eprintln!("BARE_UPSTREAM={upstream:?} does not resolve");
        std::process::exit(2);
    };
    let threads = env("BARE_THREADS")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let listen = env("BARE_LISTEN").unwrap_or_else(|| "127.0.0.1:43080".into());
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(Opt::default()), conf);
    server.bootstrap();
    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, BareProxy { upstream });
    proxy.add_tcp(&listen);
    if let (Some(tls_listen), Some(cert), Some(key)) = (
        env("BARE_TLS_LISTEN"),
        env("BARE_TLS_CERT"),
        env("BARE_TLS_KEY"),
    ) {
        let mut settings = match TlsSettings::intermediate(&cert, &key) {
            Ok(settings) => settings,
            Err(e) => {
                eprintln!("cannot load {cert} / {key}: {e}");
                std::process::exit(2);
            }
        };
        settings.enable_h2();
        proxy.add_tls_with_settings(&tls_listen, None, settings);
    }
    server.add_service(proxy);
    println!("BARE_OK listen={listen} upstream={upstream} threads={threads}");
    server.run_forever();
}
