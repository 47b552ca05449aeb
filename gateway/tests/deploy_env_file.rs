//! deploy/gateway.env lists every setting of README.md's configuration table, and nothing else:
//! operators copy that file to /etc/chat-gateway/gateway.env and expect to find every knob there.
//! When a row is added to the table, the failure prints the exact block to paste into the file.

const README: &str = include_str!("../../README.md");
const ENV_FILE: &str = include_str!("../../deploy/gateway.env");

/// One row of README.md's configuration table: `| \`NAME\` | default | meaning |`.
struct Row {
    name: String,
    default: String,
    meaning: String,
}

fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn readme_rows() -> Vec<Row> {
    README
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `")?;
            let (name, rest) = rest.split_once("` | ")?;
            if !is_variable_name(name) {
                return None;
            }
            let rest = rest.strip_suffix(" |")?;
            let (default, meaning) = rest.split_once(" | ")?;
            Some(Row {
                name: name.to_string(),
                default: default.trim().to_string(),
                meaning: meaning.trim().to_string(),
            })
        })
        .collect()
}

/// The names set or commented out in gateway.env: lines `NAME=…` or `#NAME=…`.
fn env_file_names() -> Vec<String> {
    ENV_FILE
        .lines()
        .filter_map(|line| {
            let line = line.strip_prefix('#').unwrap_or(line);
            let (name, _) = line.split_once('=')?;
            is_variable_name(name).then(|| name.to_string())
        })
        .collect()
}

/// Markdown links `[text](target)` become `text`; backticks go.
fn plain(markdown: &str) -> String {
    let mut out = String::new();
    let mut rest = markdown;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after
            .find("](")
            .and_then(|close| Some((close, after[close..].find(')')? + close)))
        {
            Some((close, end)) => {
                out.push_str(&rest[..open]);
                out.push_str(&after[..close]);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace('`', "")
}

fn wrapped_comment(text: &str) -> String {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 96 {
            lines.push(format!("# {line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(format!("# {line}"));
    lines.join("\n")
}

/// The block gateway.env holds for one row: meaning, default, the setting commented out with
/// its default value when that is a literal (empty when computed or unset).
fn block_for(row: &Row) -> String {
    let literal = row
        .default
        .strip_prefix('`')
        .and_then(|d| d.strip_suffix('`'))
        .filter(|d| !d.contains(['`', ' ']) && !d.contains("CHAT_"))
        .unwrap_or("");
    let default = match plain(&row.default).as_str() {
        "—" => "unset".to_string(),
        other => other.replace("—", "unset"),
    };
    format!(
        "{}\n# Default: {default}\n#{}={literal}",
        wrapped_comment(&plain(&row.meaning)),
        row.name
    )
}

#[test]
fn every_readme_setting_is_in_gateway_env_once() {
    let rows = readme_rows();
    assert!(
        rows.len() > 30,
        "found only {} rows in README.md's configuration table",
        rows.len()
    );
    let names = env_file_names();
    let missing: Vec<String> = rows
        .iter()
        .filter(|row| !names.contains(&row.name))
        .map(block_for)
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/gateway.env lacks settings of README.md's configuration table; add these blocks \
         to deploy/gateway.env (after the setting that precedes them in the table):\n\n{}\n",
        missing.join("\n\n")
    );
    for name in &names {
        let count = names.iter().filter(|n| *n == name).count();
        assert_eq!(
            count, 1,
            "deploy/gateway.env has {count} lines `{name}=` or `#{name}=`; keep one"
        );
    }
}

#[test]
fn every_gateway_env_setting_is_in_the_readme_table() {
    let rows = readme_rows();
    let stray: Vec<String> = env_file_names()
        .into_iter()
        .filter(|name| !rows.iter().any(|row| &row.name == name))
        .collect();
    assert!(
        stray.is_empty(),
        "deploy/gateway.env has settings README.md's configuration table does not list: {stray:?}; \
         add a row `| `NAME` | default | meaning |` to the table for each, or remove its block \
         from deploy/gateway.env"
    );
}

#[test]
fn gateway_env_sets_nothing_by_default() {
    // Every value is commented out: a copied file changes nothing until the operator edits it,
    // and no placeholder secret or origin ever reaches a running gateway.
    let set: Vec<&str> = ENV_FILE
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .collect();
    assert!(
        set.is_empty(),
        "deploy/gateway.env must keep every setting commented out; these lines set something: {set:?}"
    );
}

#[test]
fn a_missing_row_is_reported_as_the_block_to_add() {
    let row = Row {
        name: "CHAT_EXAMPLE_SECS".to_string(),
        default: "`30`".to_string(),
        meaning: "how long, see [docs/operations.md](docs/operations.md#x) and `CHAT_LOG`"
            .to_string(),
    };
    assert_eq!(
        block_for(&row),
        "# how long, see docs/operations.md and CHAT_LOG\n# Default: 30\n#CHAT_EXAMPLE_SECS=30"
    );
    let computed = Row {
        name: "CHAT_UPGRADE_SOCK".to_string(),
        default: "`CHAT_DATA_DIR/upgrade.sock`".to_string(),
        meaning: "socket".to_string(),
    };
    assert_eq!(
        block_for(&computed),
        "# socket\n# Default: CHAT_DATA_DIR/upgrade.sock\n#CHAT_UPGRADE_SOCK="
    );
}
