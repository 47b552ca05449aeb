//! The configuration's parsing: defaults, values, refusals.

use super::*;
use std::collections::HashMap;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_need_no_configuration() {
    let c = config(&[]).unwrap();
    assert_eq!(c.http_listen.to_string(), "127.0.0.1:8080");
    assert!(c.tls.is_none() && c.database_url.is_none() && c.upstream.is_none());
    assert_eq!(c.visitor_origins, OriginPolicy::LocalDevelopment);
    assert_eq!(c.metrics_listen.unwrap().to_string(), "127.0.0.1:9464");
    assert!(c.metrics_histograms);
    assert!(c.trusted_proxies.is_empty());
    assert_eq!(c.timeouts, EdgeTimeouts::default());
    assert_eq!(c.timeouts.keepalive, Duration::from_secs(60));
    assert_eq!(c.timeouts.header, Duration::from_secs(10));
    assert_eq!(c.timeouts.h2_idle, Duration::from_secs(120));
    assert_eq!(c.timeouts.upstream_connect, Duration::from_secs(3));
    assert_eq!(c.timeouts.upstream_read, Duration::from_secs(60));
    assert_eq!(c.limits.max_connections, 10_000);
    assert_eq!(c.limits.max_connections_per_ip, 200);
    assert_eq!(c.limits.opens_per_ip_per_min, 120);
    let send = c.send_rate.unwrap();
    assert_eq!((send.per_sec, send.burst), (5.0, 20));
    assert_eq!(c.agent_token_rules.max_ttl, Duration::from_secs(86_400));
    assert!(c.agent_token_rules.audience.is_none() && c.agent_token_rules.issuer.is_none());
    assert_eq!(
        c.access_log.target,
        crate::access_log::Target::Stdout,
        "the access log is on by default, as Nginx's was"
    );
    assert_eq!(c.access_log.format, crate::access_log::Format::Common);
}

#[test]
fn access_log_can_go_to_a_file_as_json_or_be_off() {
    let c = config(&[
        ("CHAT_ACCESS_LOG", "/var/log/chat/access.log"),
        ("CHAT_ACCESS_LOG_FORMAT", "json"),
    ])
    .unwrap();
    assert_eq!(
        c.access_log.target,
        crate::access_log::Target::File("/var/log/chat/access.log".into())
    );
    assert_eq!(c.access_log.format, crate::access_log::Format::Json);
    let off = config(&[("CHAT_ACCESS_LOG", "off")]).unwrap();
    assert_eq!(off.access_log.target, crate::access_log::Target::Off);
    let e = config(&[("CHAT_ACCESS_LOG_FORMAT", "xml")]).unwrap_err();
    assert!(e.to_string().starts_with("CHAT_ACCESS_LOG_FORMAT="), "{e}");
}

#[test]
fn edge_settings_parse_and_refuse_nonsense() {
    let c = config(&[
        ("CHAT_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1/32"),
        ("CHAT_KEEPALIVE_TIMEOUT_SECS", "2"),
        ("CHAT_HEADER_TIMEOUT_SECS", "3"),
    ])
    .unwrap();
    assert!(c.trusted_proxies.contains("10.2.3.4".parse().unwrap()));
    assert_eq!(c.timeouts.keepalive, Duration::from_secs(2));
    assert_eq!(c.timeouts.header, Duration::from_secs(3));
    let e = config(&[("CHAT_TRUSTED_PROXIES", "10.0.0.0/40")]).unwrap_err();
    assert!(e.to_string().starts_with("CHAT_TRUSTED_PROXIES="), "{e}");
    let e = config(&[("CHAT_KEEPALIVE_TIMEOUT_SECS", "0")]).unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    assert!(config(&[("CHAT_UPSTREAM_READ_TIMEOUT_SECS", "soon")]).is_err());
}

#[test]
fn limits_can_be_set_and_send_rate_turned_off() {
    let c = config(&[
        ("CHAT_MAX_CONNECTIONS_PER_IP", "3"),
        ("CHAT_SEND_RATE_PER_SEC", "0"),
        ("CHAT_ADMIN_JWT_AUDIENCE", "chat"),
    ])
    .unwrap();
    assert_eq!(c.limits.max_connections_per_ip, 3);
    assert!(c.send_rate.is_none());
    assert_eq!(c.agent_token_rules.audience.as_deref(), Some("chat"));
    assert!(config(&[("CHAT_SEND_RATE_PER_SEC", "-1")]).is_err());
}

#[test]
fn metrics_can_be_turned_off() {
    let c = config(&[
        ("CHAT_METRICS_LISTEN", "off"),
        ("CHAT_METRICS_HISTOGRAMS", "off"),
    ])
    .unwrap();
    assert!(c.metrics_listen.is_none() && !c.metrics_histograms);
    assert!(config(&[("CHAT_METRICS_HISTOGRAMS", "maybe")]).is_err());
}

#[test]
fn certificates_redirect_and_hsts() {
    let c = config(&[
        ("CHAT_TLS_CERT", "c.pem"),
        ("CHAT_TLS_KEY", "k.pem"),
        ("CHAT_TLS_CERTS", "b.pem:bk.pem"),
        ("CHAT_TLS_LISTEN", "0.0.0.0:443"),
    ])
    .unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.certs.pairs.len(), 2);
    assert_eq!(tls.certs.pairs[0].cert, PathBuf::from("c.pem"));
    assert!(tls.https_redirect && tls.https_port == 443);
    assert_eq!(tls.reload_check, Some(Duration::from_secs(5)));
    assert_eq!((tls.hsts_max_age, tls.hsts_include_subdomains), (0, false));
    assert!(c.compression.enabled);
    let c = config(&[
        ("CHAT_TLS_CERT_DIR", "/etc/letsencrypt/live"),
        ("CHAT_HTTPS_REDIRECT", "off"),
        ("CHAT_TLS_RELOAD_CHECK_SECS", "0"),
    ])
    .unwrap();
    let tls = c.tls.unwrap();
    assert!(!tls.https_redirect && tls.reload_check.is_none());
    assert_eq!(tls.https_port, 8443);
    assert!(config(&[("CHAT_TLS_CERTS", "nokey.pem")]).is_err());
}

#[test]
fn bad_values_name_the_variable() {
    let e = config(&[("CHAT_HTTP_LISTEN", "nope")]).unwrap_err();
    assert!(
        e.to_string().starts_with("CHAT_HTTP_LISTEN=\"nope\""),
        "{e}"
    );
    assert!(matches!(
        config(&[("CHAT_TLS_CERT", "c.pem")]),
        Err(ConfigError::HalfTls)
    ));
}

/// Every variable the gateway reads (a `"CHAT_…"` or `"ADMIN_…"` literal in its sources) has
/// a row in the README's configuration table.
#[test]
fn every_variable_read_is_in_the_readme_table() {
    let readme = include_str!("../../../README.md");
    let sources = [
        include_str!("../config.rs"),
        include_str!("../settings.rs"),
        include_str!("../main.rs"),
        include_str!("../cli.rs"),
        include_str!("../secrets.rs"),
        include_str!("../server.rs"),
        include_str!("../admission.rs"),
        include_str!("../edge.rs"),
        include_str!("../tls.rs"),
        include_str!("../https_redirect.rs"),
        include_str!("../compression.rs"),
        include_str!("../config_reload.rs"),
        include_str!("../check.rs"),
        include_str!("../check/origins.rs"),
        include_str!("../check/token.rs"),
        include_str!("../console_sign_in.rs"),
    ];
    let mut names = Vec::new();
    for source in sources {
        for (i, _) in source.match_indices('"') {
            let rest = &source[i + 1..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let closed = rest[name.len()..].starts_with('"');
            let variable = name.starts_with("CHAT_") || name.starts_with("ADMIN_");
            if closed && variable && !name.ends_with('_') {
                names.push(name);
            }
        }
    }
    assert!(names.len() > 30, "found only {names:?}");
    for name in names {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "{name} is read but has no row in README.md's configuration table"
        );
    }
}
