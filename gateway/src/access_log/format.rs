//! One access log line, in the Combined Log Format (extended) or as one JSON object.
//!
//! Every value that came from the wire is bounded and escaped, so that a hostile header can
//! neither forge a second line nor break a field: in the common format `"`, `\`, control
//! characters and non-ASCII bytes become `\xHH` (as Nginx does); in JSON, serde escapes them.

use super::Entry;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest path written, in bytes; a longer one is cut and ends in `...`.
pub const MAX_PATH: usize = 1024;
/// Longest `User-Agent` or `Referer` written, in bytes.
pub const MAX_HEADER: usize = 512;
/// Longest method written, in bytes.
pub const MAX_METHOD: usize = 16;

/// The line format (`CHAT_ACCESS_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Nginx's `combined`, then request time and upstream time (seconds), then, for chat
    /// sessions, `transport=`, `role=`, `reason=` and `bytes_received=`.
    Common,
    /// One JSON object per line with named fields.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "common" | "combined" => Ok(Format::Common),
            "json" => Ok(Format::Json),
            _ => Err("expected common or json".into()),
        }
    }
}

/// Appends `entry` as one line (ending in `\n`) to `out`.
pub fn write_line(format: Format, entry: &Entry, out: &mut String) {
    match format {
        Format::Common => common(entry, out),
        Format::Json => json(entry, out),
    }
}

fn common(e: &Entry, out: &mut String) {
    let client = e.client.map(|ip| ip.to_string());
    let _ = write!(
        out,
        "{} - - [{}] \"",
        client.as_deref().unwrap_or("-"),
        clf_time(e.time)
    );
    escape_into(out, &e.method, MAX_METHOD);
    out.push(' ');
    escape_into(out, &e.path, MAX_PATH);
    let _ = write!(out, " {}\" {} ", e.protocol, e.status);
    match e.bytes_sent {
        Some(bytes) => {
            let _ = write!(out, "{bytes} \"");
        }
        None => out.push_str("- \""),
    }
    escape_or_dash(out, e.referer.as_deref());
    out.push_str("\" \"");
    escape_or_dash(out, e.user_agent.as_deref());
    let _ = write!(out, "\" {}", seconds(e.duration));
    match e.upstream {
        Some(upstream) => {
            let _ = write!(out, " {}", seconds(upstream));
        }
        None => out.push_str(" -"),
    }
    if let Some(s) = &e.session {
        let _ = write!(
            out,
            " transport={} role={} reason={}",
            s.transport, s.role, s.reason
        );
        if let Some(received) = e.bytes_received {
            let _ = write!(out, " bytes_received={received}");
        }
    }
    out.push('\n');
}

fn json(e: &Entry, out: &mut String) {
    use serde_json::{json, Value};
    let mut fields: Vec<(&str, Value)> = vec![
        ("time", json!(rfc3339(e.time))),
        (
            "kind",
            json!(if e.session.is_some() {
                "session"
            } else {
                "request"
            }),
        ),
        ("client", json!(e.client.map(|ip| ip.to_string()))),
        ("method", json!(bounded(&e.method, MAX_METHOD))),
        ("path", json!(bounded(&e.path, MAX_PATH))),
        ("protocol", json!(e.protocol)),
        ("status", json!(e.status)),
        ("bytes_sent", json!(e.bytes_sent)),
        ("request_time", json!(e.duration.as_secs_f64())),
        ("upstream_time", json!(e.upstream.map(|d| d.as_secs_f64()))),
        (
            "referer",
            json!(e.referer.as_deref().map(|r| bounded(r, MAX_HEADER))),
        ),
        (
            "user_agent",
            json!(e.user_agent.as_deref().map(|u| bounded(u, MAX_HEADER))),
        ),
    ];
    if let Some(s) = &e.session {
        fields.push(("transport", json!(s.transport)));
        fields.push(("role", json!(s.role)));
        fields.push(("reason", json!(s.reason)));
        fields.push(("bytes_received", json!(e.bytes_received)));
    }
    // Written field by field to keep this order (a JSON map would sort the keys); serde_json
    // escapes every control character, so the object stays on one line.
    out.push('{');
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":{value}");
    }
    out.push_str("}\n");
}

fn seconds(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

fn escape_or_dash(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) if !v.is_empty() => escape_into(out, v, MAX_HEADER),
        _ => out.push('-'),
    }
}

/// `value` cut to at most `max` bytes (on a character boundary), marked with `...` when cut.
fn bounded(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &value[..end])
}

/// Appends `value` (bounded to `max` bytes) with `"`, `\`, control and non-ASCII bytes written
/// as `\xHH`: the field can neither end early nor start a new line.
pub fn escape_into(out: &mut String, value: &str, max: usize) {
    for byte in bounded(value, max).bytes() {
        match byte {
            b'"' | b'\\' | 0..=0x1f | 0x7f..=0xff => {
                let _ = write!(out, "\\x{byte:02X}");
            }
            printable => out.push(char::from(printable)),
        }
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31), in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day, hour, minute, second, millisecond) in UTC.
fn utc(time: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis(),
    )
}

/// `26/Nov/2026:16:45:00 +0000`, Nginx's `$time_local` in UTC.
fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = utc(time);
    let month = MONTHS[(mo as usize).saturating_sub(1) % 12];
    format!("{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000")
}

/// `2026-11-26T16:45:00.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = utc(time);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::SessionFields;

    fn entry() -> Entry {
        Entry {
            // 2026-11-26T16:45:07.250Z
            time: UNIX_EPOCH + Duration::from_millis(1_795_711_507_250),
            client: Some("203.0.113.9".parse().unwrap()),
            method: "GET".into(),
            path: "/pricing".into(),
            protocol: "HTTP/1.1",
            status: 200,
            bytes_sent: Some(1234),
            bytes_received: None,
            duration: Duration::from_millis(12),
            upstream: Some(Duration::from_millis(9)),
            referer: Some("https://example.com/".into()),
            user_agent: Some("Mozilla/5.0".into()),
            session: None,
        }
    }

    #[test]
    fn common_format_is_nginx_combined_plus_times() {
        let mut out = String::new();
        write_line(Format::Common, &entry(), &mut out);
        assert_eq!(
            out,
            "203.0.113.9 - - [26/Nov/2026:16:45:07 +0000] \"GET /pricing HTTP/1.1\" 200 1234 \
             \"https://example.com/\" \"Mozilla/5.0\" 0.012 0.009\n"
        );
    }

    #[test]
    fn a_session_line_names_transport_role_and_reason() {
        let mut e = entry();
        e.status = 101;
        e.path = "/ws-visitor/".into();
        e.upstream = None;
        e.referer = None;
        e.bytes_received = Some(77);
        e.duration = Duration::from_millis(61_500);
        e.session = Some(SessionFields {
            transport: "websocket",
            role: "visitor",
            reason: "client_closed",
        });
        let mut out = String::new();
        write_line(Format::Common, &e, &mut out);
        assert!(
            out.ends_with(
                "\"GET /ws-visitor/ HTTP/1.1\" 101 1234 \"-\" \"Mozilla/5.0\" 61.500 - \
                 transport=websocket role=visitor reason=client_closed bytes_received=77\n"
            ),
            "{out}"
        );
        let mut out = String::new();
        write_line(Format::Json, &e, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["kind"], "session");
        assert_eq!(v["status"], 101);
        assert_eq!(v["transport"], "websocket");
        assert_eq!(v["reason"], "client_closed");
        assert_eq!(v["bytes_received"], 77);
        assert_eq!(v["request_time"], 61.5);
        assert!(v["upstream_time"].is_null() && v["referer"].is_null());
    }

    #[test]
    fn json_has_named_fields_on_one_line() {
        let mut out = String::new();
        write_line(Format::Json, &entry(), &mut out);
        assert_eq!(out.matches('\n').count(), 1);
        assert!(
            out.starts_with("{\"time\":\"2026-11-26T16:45:07.250Z\",\"kind\":"),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["time"], "2026-11-26T16:45:07.250Z");
        assert_eq!(v["kind"], "request");
        assert_eq!(v["client"], "203.0.113.9");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/pricing");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes_sent"], 1234);
        assert_eq!(v["upstream_time"], 0.009);
        assert_eq!(v["user_agent"], "Mozilla/5.0");
        assert!(v.get("transport").is_none());
    }

    #[test]
    fn a_hostile_header_cannot_forge_a_line_or_a_field() {
        let mut e = entry();
        e.user_agent = Some("evil\" 200 \"x\n127.0.0.1 - - [forged] \"GET / HTTP/1.1\\".into());
        e.referer = Some("r\r\u{7f}\u{e9}".into());
        e.path = "/a\"b".into();
        for format in [Format::Common, Format::Json] {
            let mut out = String::new();
            write_line(format, &e, &mut out);
            assert_eq!(out.matches('\n').count(), 1, "{out}");
            assert!(!out.contains('\r'), "{out}");
            if format == Format::Common {
                assert!(
                    out.contains("\"evil\\x22 200 \\x22x\\x0A127.0.0.1 - - [forged] \\x22GET / HTTP/1.1\\x5C\""),
                    "{out}"
                );
                assert!(out.contains("\"r\\x0D\\x7F\\xC3\\xA9\""), "{out}");
                assert!(out.contains("\"GET /a\\x22b HTTP/1.1\""), "{out}");
                // Exactly the six quotes of the three quoted fields.
                assert_eq!(out.matches('"').count(), 6, "{out}");
            } else {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["user_agent"], e.user_agent.clone().unwrap());
            }
        }
    }

    #[test]
    fn long_values_are_cut() {
        let mut e = entry();
        e.user_agent = Some("é".repeat(10_000));
        e.path = format!("/{}", "a".repeat(10_000));
        let mut out = String::new();
        write_line(Format::Common, &e, &mut out);
        assert!(out.len() < MAX_PATH + 4 * MAX_HEADER + 200, "{}", out.len());
        assert!(out.contains("aaa... HTTP/1.1\""), "{out}");
        let mut out = String::new();
        write_line(Format::Json, &e, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v["user_agent"].as_str().unwrap().len() <= MAX_HEADER);
        assert!(v["path"].as_str().unwrap().ends_with("..."));
    }

    #[test]
    fn dates_are_calendar_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T23:59:59Z, a leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(rfc3339(leap), "2024-02-29T23:59:59.000Z");
        assert_eq!(clf_time(leap), "29/Feb/2024:23:59:59 +0000");
        assert_eq!(Format::Json, "JSON".parse().unwrap());
        assert_eq!(Format::Common, "combined".parse().unwrap());
        assert!("xml".parse::<Format>().is_err());
    }
}
