//! The versioned schema migrations of both stores, embedded in the binary.

/// One migration: applied in its own transaction, recorded in `chat_schema_migrations`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Postgres migrations, in increasing version order. Each is applied when its own version is not
/// recorded, whatever the others (so a branch's migration numbered ahead of one still to merge
/// does not block it).
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
    Migration {
        version: 3,
        name: "visitor_context",
        sql: include_str!("../migrations/postgres/0003_visitor_context.sql"),
    },
    Migration {
        version: 4,
        name: "conversation_activity",
        sql: include_str!("../migrations/postgres/0004_conversation_activity.sql"),
    },
    Migration {
        version: 6,
        name: "notes_and_agents",
        sql: include_str!("../migrations/postgres/0006_notes_and_agents.sql"),
    },
    Migration {
        version: 7,
        name: "read_receipts",
        sql: include_str!("../migrations/postgres/0007_read_receipts.sql"),
    },
    Migration {
        version: 8,
        name: "webhook_outbox",
        sql: include_str!("../migrations/postgres/0008_webhook_outbox.sql"),
    },
    Migration {
        version: 9,
        name: "canned_responses",
        sql: include_str!("../migrations/postgres/0009_canned_responses.sql"),
    },
    Migration {
        version: 10,
        name: "search",
        sql: include_str!("../migrations/postgres/0010_search.sql"),
    },
    Migration {
        version: 11,
        name: "conversation_waiting",
        sql: include_str!("../migrations/postgres/0011_conversation_waiting.sql"),
    },
    Migration {
        version: 12,
        name: "attachments",
        sql: include_str!("../migrations/postgres/0012_attachments.sql"),
    },
    Migration {
        version: 13,
        name: "search_pending_list",
        sql: include_str!("../migrations/postgres/0013_search_pending_list.sql"),
    },
    Migration {
        version: 14,
        name: "search_merged_in_background",
        sql: include_str!("../migrations/postgres/0014_search_merged_in_background.sql"),
    },
];

/// Embedded (SQLite) migrations, in increasing version order (as [`POSTGRES`]).
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
    Migration {
        version: 3,
        name: "visitor_context",
        sql: include_str!("../migrations/embedded/0003_visitor_context.sql"),
    },
    Migration {
        version: 4,
        name: "conversation_activity",
        sql: include_str!("../migrations/embedded/0004_conversation_activity.sql"),
    },
    Migration {
        version: 6,
        name: "notes_and_agents",
        sql: include_str!("../migrations/embedded/0006_notes_and_agents.sql"),
    },
    Migration {
        version: 7,
        name: "read_receipts",
        sql: include_str!("../migrations/embedded/0007_read_receipts.sql"),
    },
    Migration {
        version: 8,
        name: "webhook_outbox",
        sql: include_str!("../migrations/embedded/0008_webhook_outbox.sql"),
    },
    Migration {
        version: 9,
        name: "canned_responses",
        sql: include_str!("../migrations/embedded/0009_canned_responses.sql"),
    },
    Migration {
        version: 10,
        name: "search",
        sql: include_str!("../migrations/embedded/0010_search.sql"),
    },
    Migration {
        version: 11,
        name: "conversation_waiting",
        sql: include_str!("../migrations/embedded/0011_conversation_waiting.sql"),
    },
    Migration {
        version: 12,
        name: "attachments",
        sql: include_str!("../migrations/embedded/0012_attachments.sql"),
    },
    Migration {
        version: 13,
        name: "search_pending_list",
        sql: include_str!("../migrations/embedded/0013_search_pending_list.sql"),
    },
    Migration {
        version: 14,
        name: "search_merged_in_background",
        sql: include_str!("../migrations/embedded/0014_search_merged_in_background.sql"),
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
    fn versions_increase_and_both_stores_have_the_same() {
        for list in [POSTGRES, EMBEDDED] {
            assert_eq!(list[0].version, 1);
            for pair in list.windows(2) {
                assert!(pair[0].version < pair[1].version, "{}", pair[1].name);
            }
        }
        let versions =
            |list: &[Migration]| list.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(versions(POSTGRES), versions(EMBEDDED));
    }
}
