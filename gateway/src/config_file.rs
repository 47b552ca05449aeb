//! `CHAT_CONFIG_FILE`: settings in an environment file (`NAME=value` lines, the format of
//! systemd's `EnvironmentFile=` and of `.env` files), re-read on SIGHUP.
//!
//! Its values take precedence over the process environment: a reload re-reads the file, and a
//! value changed there must win over the one the process was started with (systemd's
//! `EnvironmentFile=` pointing at the same file gives the same values at start).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The largest configuration file read: settings are short; anything bigger is a mistake.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why the configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// A line is not `NAME=value`.
    #[error("{path}, line {line}: {reason}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the value: it may be a secret).
        reason: &'static str,
    },
}

/// Reads `path`: every `NAME=value` line, later lines winning over earlier ones.
///
/// Blank lines and lines starting with `#` are skipped; `export NAME=value` is accepted (a
/// shell-sourced `.env`); a value wrapped in single or double quotes loses them (within double
/// quotes, `\"` and `\\` are unescaped). The rest of the line after `=` is the value, `#`
/// included, as systemd reads it.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, ConfigFileError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|source| ConfigFileError::Read {
            path: shown.clone(),
            source,
        })?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigFileError::TooLarge { path: shown });
    }
    parse(&text).map_err(|(line, reason)| ConfigFileError::Line {
        path: shown,
        line,
        reason,
    })
}

/// Parses the text of an environment file; errors carry the 1-based line number.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, (usize, &'static str)> {
    let mut values = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((name, value)) = line.split_once('=') else {
            return Err((index + 1, "expected NAME=value"));
        };
        let name = name.trim();
        let valid_name = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err((index + 1, "the name must be letters, digits and _"));
        }
        values.insert(
            name.to_owned(),
            unquote(value.trim()).map_err(|r| (index + 1, r))?,
        );
    }
    Ok(values)
}

fn unquote(value: &str) -> Result<String, &'static str> {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('\'') {
        return Ok(value[1..value.len() - 1].to_owned());
    }
    if !quoted('"') {
        if value.starts_with(['"', '\'']) {
            return Err("a quoted value must end with the same quote on the same line");
        }
        return Ok(value.to_owned());
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value[1..value.len() - 1].chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(escaped @ ('"' | '\\')) => out.push(escaped),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_systemd_and_dotenv_files_hold() {
        let text = "# comment\n\nCHAT_WS_ROLLOUT_PERCENT=5\nexport CHAT_ALLOWED_ORIGINS = https://a.example,https://b.example\n\
                    CHAT_LOG='info,chat_gateway=debug'\nCHAT_API_KEY=\"with \\\"quote\\\" and # hash\"\nCHAT_WS_ROLLOUT_PERCENT=50\n";
        let values = parse(text).unwrap();
        assert_eq!(
            values["CHAT_WS_ROLLOUT_PERCENT"], "50",
            "the last line wins"
        );
        assert_eq!(
            values["CHAT_ALLOWED_ORIGINS"],
            "https://a.example,https://b.example"
        );
        assert_eq!(values["CHAT_LOG"], "info,chat_gateway=debug");
        assert_eq!(values["CHAT_API_KEY"], "with \"quote\" and # hash");
        assert_eq!(values.len(), 4);
    }

    #[test]
    fn a_broken_line_is_named_without_its_value() {
        assert_eq!(
            parse("A=1\nthis is not a setting\n"),
            Err((2, "expected NAME=value"))
        );
        assert_eq!(parse("1A=x").unwrap_err().0, 1);
        assert_eq!(parse("A=\"secret").unwrap_err().0, 1);
    }

    #[test]
    fn a_huge_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.env");
        std::fs::write(&path, "A=1\n".repeat(300_000)).unwrap();
        assert!(matches!(read(&path), Err(ConfigFileError::TooLarge { .. })));
        assert!(matches!(
            read(&dir.path().join("missing.env")),
            Err(ConfigFileError::Read { .. })
        ));
    }
}
