//! Visitors on Postgres: rows with the profile the main site gave (issue 13), and a
//! conversation handed from an anonymous visitor to the user they logged in as.

use chat_core::model::{Conversation, ConversationId, Visitor, VisitorId};
use chat_core::StoreError;
use deadpool_postgres::Object;

use super::errors::pg_err;
use super::rows::{conversation_from_row, visitor_from_row};
use crate::time::truncate_micros;

/// Insert, or update the profile unless that would replace a verified one with an unverified
/// one ($8: a profile was given); a row already equal is not written again.
const UPSERT: &str =
    "INSERT INTO visitors (id, site_id, created_at, user_id, name, email, verified) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, name = EXCLUDED.name, \
     email = EXCLUDED.email, verified = EXCLUDED.verified \
     WHERE $8 AND (EXCLUDED.verified OR NOT visitors.verified) \
     AND (visitors.user_id, visitors.name, visitors.email, visitors.verified) \
     IS DISTINCT FROM (EXCLUDED.user_id, EXCLUDED.name, EXCLUDED.email, EXCLUDED.verified)";

const SELECT: &str =
    "SELECT id, site_id, created_at, user_id, name, email, verified FROM visitors WHERE id = $1";

const MOVE: &str = concat!(
    "UPDATE conversations SET visitor_id = $2, updated_at = clock_timestamp() WHERE id = $1 \
     AND site_id = (SELECT site_id FROM visitors WHERE id = $2) RETURNING ",
    conversation_columns!()
);

/// [`chat_core::store::Store::ensure_visitor`].
pub(super) async fn ensure(client: &Object, visitor: &Visitor) -> Result<Visitor, StoreError> {
    let profile = visitor.profile.clone().unwrap_or_default();
    let upsert = client.prepare_cached(UPSERT).await.map_err(pg_err)?;
    client
        .execute(
            &upsert,
            &[
                &visitor.id.0,
                &visitor.site_id,
                &truncate_micros(visitor.created_at),
                &profile.user_id,
                &profile.name,
                &profile.email,
                &profile.verified,
                &visitor.profile.is_some(),
            ],
        )
        .await
        .map_err(pg_err)?;
    get(client, visitor.id)
        .await?
        .ok_or(StoreError::NotFound("visitor"))
}

/// [`chat_core::store::Store::visitor`].
pub(super) async fn get(client: &Object, id: VisitorId) -> Result<Option<Visitor>, StoreError> {
    let select = client.prepare_cached(SELECT).await.map_err(pg_err)?;
    let row = client.query_opt(&select, &[&id.0]).await.map_err(pg_err)?;
    row.as_ref().map(visitor_from_row).transpose()
}

/// [`chat_core::store::Store::move_conversation`].
pub(super) async fn move_conversation(
    client: &Object,
    id: ConversationId,
    to: VisitorId,
) -> Result<Conversation, StoreError> {
    let stmt = client.prepare_cached(MOVE).await.map_err(pg_err)?;
    let row = client
        .query_opt(&stmt, &[&id.0, &to.0])
        .await
        .map_err(pg_err)?;
    row.as_ref()
        .map(conversation_from_row)
        .transpose()?
        .ok_or(StoreError::NotFound("conversation"))
}
