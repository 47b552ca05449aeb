//! Taking libpq's TLS parameters (`sslmode`, `sslrootcert`) out of a connection string before
//! tokio-postgres parses it: tokio-postgres refuses `sslmode=verify-ca` / `verify-full` and
//! does not know `sslrootcert` at all, so [`super::tls`] handles them and the rest of the
//! string goes to tokio-postgres unchanged.

/// A connection string without its TLS parameters, and those parameters (raw, last one wins,
/// as libpq does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extracted {
    /// The connection string for tokio-postgres.
    pub conninfo: String,
    /// `sslmode`, as written.
    pub sslmode: Option<String>,
    /// `sslrootcert`, decoded.
    pub sslrootcert: Option<String>,
}

/// Splits `sslmode` and `sslrootcert` out of a `postgres://` URL or a `key=value` string.
/// Anything it cannot read is passed through untouched for tokio-postgres to report.
pub(crate) fn extract_tls_params(url: &str) -> Extracted {
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return from_url(scheme, rest);
        }
    }
    from_key_value(url)
}

fn from_url(scheme: &str, rest: &str) -> Extracted {
    let mut extracted = Extracted {
        conninfo: format!("{scheme}{rest}"),
        sslmode: None,
        sslrootcert: None,
    };
    // Where tokio-postgres looks for the query: after the first `@` (the user-info), at the
    // first `?`.
    let authority_start = rest.find('@').map_or(0, |at| at + 1);
    let Some(q) = rest[authority_start..]
        .find('?')
        .map(|q| authority_start + q)
    else {
        return extracted;
    };
    let (base, query) = (&rest[..q], &rest[q + 1..]);
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => extracted.sslmode = Some(percent_decode(value)),
            "sslrootcert" => extracted.sslrootcert = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    extracted.conninfo = if kept.is_empty() {
        format!("{scheme}{base}")
    } else {
        format!("{scheme}{base}?{}", kept.join("&"))
    };
    extracted
}

/// `%XX` decoding; a malformed escape is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The libpq key-value form: `key = value` pairs separated by white space, a value either
/// quoted (`'…'`, with `\'` and `\\`) or running to the next white space (with `\` escapes).
fn from_key_value(conninfo: &str) -> Extracted {
    let mut extracted = Extracted {
        conninfo: conninfo.to_string(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut kept = String::with_capacity(conninfo.len());
    let mut rest = conninfo;
    loop {
        let trimmed = rest.trim_start();
        kept.push_str(&rest[..rest.len() - trimmed.len()]);
        rest = trimmed;
        if rest.is_empty() {
            break;
        }
        let Some((key, value, len)) = next_pair(rest) else {
            // Unreadable: leave the string as it was for tokio-postgres to report.
            return extracted;
        };
        match key {
            "sslmode" => extracted.sslmode = Some(value),
            "sslrootcert" => extracted.sslrootcert = Some(value),
            _ => kept.push_str(&rest[..len]),
        }
        rest = &rest[len..];
    }
    extracted.conninfo = kept.trim().to_string();
    extracted
}

/// One `key = value` at the start of `s`: the key, the unescaped value, and the bytes it takes.
fn next_pair(s: &str) -> Option<(&str, String, usize)> {
    let key_end = s.find(|c: char| c == '=' || c.is_whitespace())?;
    let key = &s[..key_end];
    if key.is_empty() {
        return None;
    }
    let after_key = &s[key_end..];
    let after_eq = after_key.trim_start().strip_prefix('=')?;
    let value_text = after_eq.trim_start();
    let mut pos = s.len() - value_text.len();
    let mut value = String::new();
    let mut chars = value_text.char_indices();
    if value_text.starts_with('\'') {
        chars.next();
        loop {
            match chars.next()? {
                (i, '\'') => {
                    pos += i + 1;
                    break;
                }
                (_, '\\') => value.push(chars.next()?.1),
                (_, c) => value.push(c),
            }
        }
    } else {
        let mut end = value_text.len();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c.is_whitespace() => {
                    end = i;
                    break;
                }
                '\\' => value.push(chars.next()?.1),
                c => value.push(c),
            }
        }
        pos += end;
    }
    Some((key, value, pos))
}

#[cfg(test)]
mod tests {
    use super::extract_tls_params;

    #[test]
    fn url_parameters_are_taken_out() {
        let e = extract_tls_params(
            "postgres://chat:p%40ss@db.example.com:5432/chat?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(
            e.conninfo,
            "postgres://chat:p%40ss@db.example.com:5432/chat?application_name=x"
        );
        assert_eq!(e.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(e.sslrootcert.as_deref(), Some("/etc/ca.pem"));

        let e = extract_tls_params("postgresql://db/chat?sslmode=require");
        assert_eq!(e.conninfo, "postgresql://db/chat");
        assert_eq!(e.sslmode.as_deref(), Some("require"));
        assert_eq!(e.sslrootcert, None);

        let e = extract_tls_params("postgres://u@db/chat");
        assert_eq!(e.conninfo, "postgres://u@db/chat");
        assert_eq!(e.sslmode, None);
    }

    #[test]
    fn key_value_parameters_are_taken_out() {
        let e = extract_tls_params(
            "host=db sslmode = verify-ca password='a b\\'c' sslrootcert='/etc/my ca.pem' dbname=chat",
        );
        assert_eq!(e.conninfo, "host=db  password='a b\\'c'  dbname=chat");
        assert_eq!(e.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(e.sslrootcert.as_deref(), Some("/etc/my ca.pem"));
        let parsed: tokio_postgres::Config = e.conninfo.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"a b'c"[..]));

        // Unreadable strings are left for tokio-postgres to report.
        let e = extract_tls_params("host=db sslmode='unterminated");
        assert_eq!(e.conninfo, "host=db sslmode='unterminated");
        assert_eq!(e.sslmode, None);
    }
}
