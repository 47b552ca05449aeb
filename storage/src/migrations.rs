//! The versioned schema migrations of both stores, embedded in the binary.

/// One migration: applied in its own transaction, recorded in `chat_schema_migrations`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Postgres migrations, in version order (versions 1, 2, 3… with no gap).
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "visitor_profile",
        sql: include_str!("../migrations/postgres/0002_visitor_profile.sql"),
    },
];

/// Embedded (SQLite) migrations, in version order (versions 1, 2, 3… with no gap).
pub(crate) const EMBEDDED: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/embedded/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "visitor_profile",
        sql: include_str!("../migrations/embedded/0002_visitor_profile.sql"),
    },
];

/// The schema version a migration list brings a database to.
pub(crate) fn latest(migrations: &[Migration]) -> i64 {
    migrations.last().map_or(0, |m| m.version)
}

/// A migration, as reported by a migration run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    /// Its version (1, 2, 3…).
    pub version: i64,
    /// Its name (the file name without the number and extension).
    pub name: &'static str,
}

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The migrations this run applied, in order; empty when the schema was already current.
    pub applied: Vec<MigrationInfo>,
    /// The schema version after the run.
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_contiguous() {
        for list in [POSTGRES, EMBEDDED] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            }
        }
    }
}
