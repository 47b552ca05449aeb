//! The agent directory on Postgres (issue 15, migration 6): one row per agent, written when a
//! session of theirs opens.

use chat_core::agents::AgentRecord;
use chat_core::model::Sites;
use chat_core::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use tokio_postgres::Row;

use super::errors::pg_err;

const UPSERT: &str = "INSERT INTO agents (id, name, sites, last_seen) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, sites = EXCLUDED.sites, \
     last_seen = greatest(agents.last_seen, EXCLUDED.last_seen)";

const SELECT: &str = "SELECT id, name, sites, last_seen FROM agents WHERE id = $1";

/// `sites` is `*` or a comma-separated list of site ids, which hold no comma.
const OF_SITE: &str = "SELECT id, name, sites, last_seen FROM agents \
     WHERE sites = '*' OR $1 = ANY(string_to_array(sites, ',')) ORDER BY name, id LIMIT $2";

fn record_from_row(row: &Row) -> Result<AgentRecord, StoreError> {
    let sites: String = row.try_get(2).map_err(pg_err)?;
    Ok(AgentRecord {
        id: row.try_get(0).map_err(pg_err)?,
        name: row.try_get(1).map_err(pg_err)?,
        sites: Sites::parse(&sites).map_err(StoreError::Other)?,
        last_seen: row.try_get::<_, DateTime<Utc>>(3).map_err(pg_err)?,
    })
}

/// [`chat_core::store::Store::record_agent`].
pub(super) async fn record(client: &Object, agent: &AgentRecord) -> Result<(), StoreError> {
    let stmt = client.prepare_cached(UPSERT).await.map_err(pg_err)?;
    client
        .execute(
            &stmt,
            &[
                &agent.id,
                &agent.name,
                &agent.sites.to_string(),
                &agent.last_seen,
            ],
        )
        .await
        .map_err(pg_err)?;
    Ok(())
}

/// [`chat_core::store::Store::agent`].
pub(super) async fn get(client: &Object, id: &str) -> Result<Option<AgentRecord>, StoreError> {
    let stmt = client.prepare_cached(SELECT).await.map_err(pg_err)?;
    let row = client.query_opt(&stmt, &[&id]).await.map_err(pg_err)?;
    row.as_ref().map(record_from_row).transpose()
}

/// [`chat_core::store::Store::agents_of_site`].
pub(super) async fn of_site(
    client: &Object,
    site: &str,
    limit: u32,
) -> Result<Vec<AgentRecord>, StoreError> {
    let stmt = client.prepare_cached(OF_SITE).await.map_err(pg_err)?;
    let rows = client
        .query(&stmt, &[&site, &i64::from(limit)])
        .await
        .map_err(pg_err)?;
    rows.iter().map(record_from_row).collect()
}
