//! The agent directory of the embedded store (issue 15, migration 6): one row per agent,
//! written when a session of theirs opens.

use chat_core::agents::AgentRecord;
use chat_core::model::Sites;
use chat_core::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::errors::sqlite_err;
use super::rows::{bad_data, timestamp};

const COLUMNS: &str = "id, name, sites, last_seen";

struct AgentRow {
    id: String,
    name: String,
    sites: String,
    last_seen: i64,
}

fn read(row: &Row<'_>) -> rusqlite::Result<AgentRow> {
    Ok(AgentRow {
        id: row.get(0)?,
        name: row.get(1)?,
        sites: row.get(2)?,
        last_seen: row.get(3)?,
    })
}

fn record_from(raw: AgentRow) -> Result<AgentRecord, StoreError> {
    Ok(AgentRecord {
        sites: Sites::parse(&raw.sites).map_err(|e| bad_data("agent sites", e))?,
        id: raw.id,
        name: raw.name,
        last_seen: timestamp(raw.last_seen)?,
    })
}

/// [`chat_core::store::Store::record_agent`].
pub(super) fn record(conn: &Connection, agent: &AgentRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO agents (id, name, sites, last_seen) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, sites = excluded.sites, \
         last_seen = max(agents.last_seen, excluded.last_seen)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            agent.id,
            agent.name,
            agent.sites.to_string(),
            agent.last_seen.timestamp_micros()
        ])
    })
    .map_err(sqlite_err)?;
    Ok(())
}

/// [`chat_core::store::Store::agent`].
pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<AgentRecord>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM agents WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], read).optional())
        .map_err(sqlite_err)?
        .map(record_from)
        .transpose()
}

/// [`chat_core::store::Store::agents_of_site`]. `sites` is `*` or a comma-separated list of
/// site ids, which hold no comma: `instr` finds `,site,` in `,list,` (no LIKE: `_` is a site
/// id character and a LIKE wildcard).
pub(super) fn of_site(
    conn: &Connection,
    site: &str,
    limit: u32,
) -> Result<Vec<AgentRecord>, StoreError> {
    let raws = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM agents WHERE sites = '*' \
             OR instr(',' || sites || ',', ',' || ?1 || ',') > 0 ORDER BY name, id LIMIT ?2"
        ))
        .and_then(|mut stmt| {
            stmt.query_map(params![site, i64::from(limit)], read)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sqlite_err)?;
    raws.into_iter().map(record_from).collect()
}
