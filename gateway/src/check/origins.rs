//! `CHAT_ALLOWED_ORIGINS` and `ADMIN_ALLOWED_ORIGINS`: every entry must be what a browser sends
//! in `Origin` (`scheme://host[:port]`), or it never matches and that site's chat is refused.

use super::{Context, Report};

/// Both lists.
pub(super) fn check(ctx: &Context<'_>, report: &mut Report) {
    for (name, who) in [
        ("CHAT_ALLOWED_ORIGINS", "the widget"),
        ("ADMIN_ALLOWED_ORIGINS", "the agent console"),
    ] {
        let raw = (ctx.var)(name).unwrap_or_default();
        list(name, who, &raw, ctx.config.tls.is_some(), report);
    }
}

/// One list. `production`: TLS is configured, so an unset list is probably an oversight.
fn list(name: &'static str, who: &str, raw: &str, production: bool, report: &mut Report) {
    let entries: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        let message = format!(
            "{name} is not set: {who} is allowed from the gateway's own origin and from \
             loopback origins only"
        );
        let fix = format!(
            "list the origins of the pages that embed {who}, e.g. {name}=https://www.example.com"
        );
        if production {
            report.warn("origins", message, fix);
        } else {
            report.ok("origins", message);
        }
        return;
    }
    let mut good = Vec::new();
    for entry in entries {
        match origin(entry) {
            Verdict::Good => good.push(entry),
            Verdict::Warn(why, fix) => {
                report.warn("origins", format!("{name}: {entry:?} {why}"), fix)
            }
            Verdict::Never(why, fix) => report.error(
                "origins",
                format!("{name}: {entry:?} {why}, so it never matches and {who} is refused there"),
                fix,
            ),
        }
    }
    if !good.is_empty() {
        report.ok("origins", format!("{name}: {}", good.join(", ")));
    }
}

enum Verdict {
    Good,
    /// Works, but: why, fix.
    Warn(String, String),
    /// Never matches a browser's `Origin`: why, fix.
    Never(String, String),
}

fn origin(entry: &str) -> Verdict {
    if entry == "*" {
        return Verdict::Warn(
            "allows every web site to open sessions".into(),
            "list the origins instead of `*` in production".into(),
        );
    }
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Verdict::Never(
            "has no scheme (browsers send https://host)".into(),
            format!("write https://{}", entry.trim_end_matches('/')),
        );
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Verdict::Never(
            format!("has the scheme {scheme:?}"),
            "use https://host (or http:// for local development)".into(),
        );
    }
    if rest.contains(['?', '#', '@']) {
        return Verdict::Never(
            "carries a query, fragment or user name".into(),
            format!("write only {scheme}://host[:port]"),
        );
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() {
        return Verdict::Never(
            format!("has a path (/{path}); an Origin never carries one"),
            format!("write {scheme}://{authority}"),
        );
    }
    let (host, port) = split_port(authority);
    let host_ok = !host.is_empty()
        && (host.starts_with('[') && host.ends_with(']')
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if host.contains('*') {
        return Verdict::Never(
            "has a wildcard; only the whole-list `*` is supported".into(),
            "list each origin (https://www.example.com, https://shop.example.com)".into(),
        );
    }
    if !host_ok {
        return Verdict::Never(
            format!("has an invalid host {host:?}"),
            format!("write {scheme}://host[:port]"),
        );
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p != 0 && (scheme == "https" && p == 443 || scheme == "http" && p == 80) => {
                return Verdict::Never(
                    format!("names the default port {p}, which browsers leave out of Origin"),
                    format!("write {scheme}://{host}"),
                )
            }
            Ok(p) if p != 0 => {}
            _ => {
                return Verdict::Never(
                    format!("has an invalid port {port:?}"),
                    format!("write {scheme}://{host}[:1-65535]"),
                )
            }
        }
    }
    if rest.ends_with('/') {
        return Verdict::Warn(
            "ends with a slash; the gateway ignores it, but an Origin has none".into(),
            format!("write {scheme}://{authority}"),
        );
    }
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    if scheme == "http" && !loopback {
        return Verdict::Warn(
            "is plain http: tokens and messages from that page cross the network in clear".into(),
            format!("serve that site over https and write https://{authority}"),
        );
    }
    Verdict::Good
}

fn split_port(authority: &str) -> (&str, Option<&str>) {
    // `[::1]:8080`: the port follows the closing bracket.
    let search_from = authority.rfind(']').unwrap_or(0);
    match authority[search_from..].rfind(':') {
        Some(i) => (
            &authority[..search_from + i],
            Some(&authority[search_from + i + 1..]),
        ),
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Severity;

    fn severities(raw: &str) -> Vec<Severity> {
        let mut report = Report::default();
        list("CHAT_ALLOWED_ORIGINS", "the widget", raw, true, &mut report);
        report.findings.iter().map(|f| f.severity).collect()
    }

    #[test]
    fn entries_that_never_match_are_errors() {
        use Severity::*;
        assert_eq!(
            severities("https://a.example, http://localhost:3000, https://[::1]:8443"),
            [Ok]
        );
        for never in [
            "a.example",
            "https://a.example/shop",
            "https://a.example:443",
            "ftp://a.example",
            "https://*.example.com",
            "https://a.example:99999",
            "https://user@a.example",
            "https://a example",
        ] {
            assert_eq!(severities(never), [Error], "{never}");
        }
        for warn in ["*", "https://a.example/", "http://a.example"] {
            assert_eq!(severities(warn), [Warn], "{warn}");
        }
        assert_eq!(severities(""), [Warn]);
    }
}
