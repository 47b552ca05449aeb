//! README.md's configuration table and [`SETTINGS`] say the same: the same names in the same
//! order, the same default cells, the same *Reloadable* marks; and every default in the table
//! parses as its kind. The smaller tables of settings in docs/ give the same defaults.

use super::{Kind, Setting, SETTINGS};

const README: &str = include_str!("../../../README.md");

/// One row of README.md's configuration table: `| `NAME` | default | meaning |`.
struct Row {
    name: &'static str,
    default: &'static str,
    meaning: &'static str,
}

/// The rows of the table under `## Configuration` (up to the next section).
fn readme_rows() -> Vec<Row> {
    let start = README
        .find("\n## Configuration\n")
        .expect("README.md has a Configuration section");
    let section = &README[start + 1..];
    let section = &section[..section[1..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 1)];
    section
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `")?;
            let (name, rest) = rest.split_once("` | ")?;
            let (default, meaning) = rest.strip_suffix(" |")?.split_once(" | ")?;
            Some(Row {
                name,
                default: default.trim(),
                meaning: meaning.trim(),
            })
        })
        .collect()
}

/// What a README row for `setting` starts with, for the failure message.
fn row_for(setting: &Setting) -> String {
    let reloadable = if setting.reloadable {
        " *Reloadable*"
    } else {
        ""
    };
    format!(
        "| `{}` | {} | {}{reloadable} |",
        setting.name,
        setting.default.documented(),
        setting.doc
    )
}

#[test]
fn the_readme_table_lists_exactly_the_settings() {
    let rows = readme_rows();
    assert!(rows.len() > 30, "found only {} rows", rows.len());
    let unknown: Vec<&str> = rows
        .iter()
        .map(|row| row.name)
        .filter(|name| Setting::named(name).is_none())
        .collect();
    let missing: Vec<String> = SETTINGS
        .iter()
        .filter(|setting| !rows.iter().any(|row| row.name == setting.name))
        .map(row_for)
        .collect();
    assert!(
        unknown.is_empty() && missing.is_empty(),
        "README.md's configuration table and gateway/src/settings.rs disagree.\n\
         Rows the gateway does not know (add each to settings.rs, or remove the row): \
         {unknown:?}\n\
         Settings the README lacks (add these rows, and say more in the meaning):\n{}",
        missing.join("\n")
    );
    let mut names: Vec<&str> = SETTINGS.iter().map(|setting| setting.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SETTINGS.len(), "a setting is declared twice");
}

#[test]
fn the_readme_defaults_are_the_tables() {
    let differ: Vec<String> = readme_rows()
        .iter()
        .filter_map(|row| {
            let setting = Setting::named(row.name)?;
            let documented = setting.default.documented();
            (row.default != documented).then(|| {
                format!(
                    "{}: README.md says {:?}, gateway/src/settings.rs {documented:?}",
                    row.name, row.default
                )
            })
        })
        .collect();
    assert!(differ.is_empty(), "defaults differ:\n{}", differ.join("\n"));
}

#[test]
fn the_readme_marks_exactly_the_reloadable_settings() {
    for row in readme_rows() {
        let Some(setting) = Setting::named(row.name) else {
            continue;
        };
        assert_eq!(
            row.meaning.contains("*Reloadable*"),
            setting.reloadable,
            "{}: README.md's *Reloadable* mark and the table's `reloadable` differ",
            row.name
        );
    }
}

#[test]
fn every_default_value_parses_as_its_kind() {
    for setting in SETTINGS {
        let Some(value) = setting.default.value() else {
            continue;
        };
        let parses = match setting.kind {
            Kind::Address => value.parse::<std::net::SocketAddr>().is_ok(),
            Kind::Port => value.parse::<u16>().is_ok(),
            Kind::Seconds | Kind::Count => value.parse::<u64>().is_ok(),
            Kind::Number => value.parse::<f64>().is_ok_and(f64::is_finite),
            Kind::Switch => ["on", "off"].contains(&value),
            Kind::Choice(choices) => choices.contains(&value),
            Kind::List | Kind::Path | Kind::Url | Kind::Text => true,
            Kind::Secret => false,
        };
        assert!(
            parses,
            "{}: default {value:?} is not a {:?}",
            setting.name, setting.kind
        );
    }
}

#[test]
fn the_readme_lists_them_in_the_tables_order() {
    let readme: Vec<&str> = readme_rows()
        .iter()
        .map(|row| row.name)
        .filter(|name| Setting::named(name).is_some())
        .collect();
    let table: Vec<&str> = SETTINGS
        .iter()
        .map(|setting| setting.name)
        .filter(|name| readme.contains(name))
        .collect();
    assert_eq!(
        readme, table,
        "README.md's configuration table and SETTINGS list the settings in different orders"
    );
}

/// The docs restating some settings in a `| variable | default | … |` table of their own.
const DOCS: [(&str, &str); 3] = [
    (
        "docs/operations.md",
        include_str!("../../../docs/operations.md"),
    ),
    (
        "docs/agent-sign-in.md",
        include_str!("../../../docs/agent-sign-in.md"),
    ),
    (
        "docs/webhooks.md",
        include_str!("../../../docs/webhooks.md"),
    ),
];

#[test]
fn the_docs_tables_of_settings_give_the_tables_defaults() {
    let mut checked = 0;
    for (path, text) in DOCS {
        let mut in_table = false;
        for line in text.lines() {
            if line.starts_with("| variable | default |") {
                in_table = true;
                continue;
            }
            if !line.starts_with('|') {
                in_table = false;
            }
            let Some(rest) = line.strip_prefix("| `").filter(|_| in_table) else {
                continue;
            };
            let Some((name, rest)) = rest.split_once("` | ") else {
                continue;
            };
            let setting = Setting::named(name)
                .unwrap_or_else(|| panic!("{path}: {name} is not a setting of the gateway"));
            let default = rest.split(" | ").next().unwrap_or_default().trim();
            let documented = setting.default.documented();
            // These tables may write a value without backquotes.
            let bare = setting.default.value().unwrap_or(&documented);
            assert!(
                default == documented || default == bare,
                "{path}: {name}'s default is {default:?}; gateway/src/settings.rs says \
                 {documented:?}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "found only {checked} rows in the docs' tables"
    );
}
