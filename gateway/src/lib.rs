//! # chat-gateway
//!
//! The one binary: a Pingora edge that terminates TLS, answers chat paths in-process (the
//! widget, the agent console, `/chat/health`, WebSocket sessions at `/ws-visitor/` and
//! `/ws-admin/`) and reverse-proxies everything else to the main site.
#![warn(missing_docs)]

pub mod access_log;
pub mod admission;
pub mod api;
pub mod api_keys;
pub mod assets;
pub mod bare_socket;
pub mod check;
pub mod cli;
pub mod client_addr;
pub mod compression;
pub mod config;
pub mod config_file;
pub mod config_reload;
pub mod connections;
pub mod console_sign_in;
pub mod deadlines;
pub mod edge;
pub mod edge_response;
pub mod edge_stream;
pub mod endpoints;
pub mod error;
pub mod gathered_writes;
pub mod geoip;
pub mod h1_front;
pub mod health;
pub mod http_util;
pub mod https_redirect;
pub mod import;
pub mod limits;
pub mod metrics;
pub mod metrics_listener;
pub mod parked;
pub mod redact;
pub mod reload;
pub mod routes;
pub mod run_session;
pub mod secrets;
pub mod server;
pub mod settings;
pub mod site_forward;
pub mod socketio;
pub mod tls;
pub mod webhooks;
pub mod wire_error;
