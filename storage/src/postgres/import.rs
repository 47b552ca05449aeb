//! [`Store::import_messages`](chat_core::store::Store) on Postgres: one transaction per call and
//! a fixed number of statements per batch, whatever its size (reads of what exists, then one
//! `unnest` insert or update per table), so an import runs at batch speed rather than one round
//! trip per message. The conversations it appends to are locked first, in id order, as a live
//! append would lock them: live messages wait and then number after the imported ones.

use std::collections::HashMap;

use chat_core::model::{Message, MessageKind, VisitorId};
use chat_core::store::{Imported, ImportedMessage};
use chat_core::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Transaction};
use uuid::Uuid;

use super::errors::pg_err;
use super::rows::message_from_row;
use crate::import::{check, ExistingConversation};
use crate::time::truncate_micros;

/// A conversation as the batch leaves it.
struct Planned {
    state: ExistingConversation,
    /// Created by this batch (inserted), not updated.
    created: bool,
    created_at: DateTime<Utc>,
    status: &'static str,
    /// The newest `created_at` the batch gives it.
    updated_at: Option<DateTime<Utc>>,
}

/// [`chat_core::store::Store::import_messages`]: [`import_in`] a transaction of its own.
pub(super) async fn import(
    client: &mut Object,
    messages: &[ImportedMessage],
) -> Result<Vec<Imported>, StoreError> {
    let tx = client.transaction().await.map_err(pg_err)?;
    let results = import_in(&tx, messages).await?;
    tx.commit().await.map_err(pg_err)?;
    Ok(results)
}

/// Imports `messages` in order inside `tx` (the caller commits), stopping after the first
/// refusal.
async fn import_in(
    tx: &Transaction<'_>,
    messages: &[ImportedMessage],
) -> Result<Vec<Imported>, StoreError> {
    let mut conversation_ids: Vec<Uuid> = messages.iter().map(|m| m.conversation_id.0).collect();
    conversation_ids.sort_unstable();
    conversation_ids.dedup();
    let mut conversations = lock_conversations(tx, &conversation_ids).await?;
    let mut present = present_messages(tx, messages).await?;
    let mut visitor_sites = visitor_sites(tx, messages).await?;

    let mut results = Vec::with_capacity(messages.len());
    let mut new_visitors: Vec<(Uuid, &str, DateTime<Utc>)> = Vec::new();
    let mut new_messages: Vec<Message> = Vec::new();
    for message in messages {
        let key = (message.conversation_id.0, message.client_msg_id.clone());
        if let Some(existing) = present.get(&key) {
            results.push(Imported::Existing(existing.clone()));
            continue;
        }
        let visitor_site = visitor_sites.get(&message.visitor_id.0).map(String::as_str);
        let planned = conversations.get(&message.conversation_id.0);
        if let Err(why) = check(message, visitor_site, planned.map(|p| &p.state)) {
            results.push(Imported::Refused(why));
            break;
        }
        let created_at = truncate_micros(message.created_at);
        if visitor_site.is_none() {
            visitor_sites.insert(message.visitor_id.0, message.site_id.clone());
            new_visitors.push((message.visitor_id.0, &message.site_id, created_at));
        }
        let mut conversation_created = false;
        let planned = conversations
            .entry(message.conversation_id.0)
            .or_insert_with(|| {
                conversation_created = true;
                Planned {
                    state: ExistingConversation {
                        site_id: message.site_id.clone(),
                        visitor_id: message.visitor_id,
                        last_seq: 0,
                        last_created_at: None,
                    },
                    created: true,
                    created_at,
                    status: message.status.as_str(),
                    updated_at: None,
                }
            });
        planned.state.last_seq += 1;
        planned.state.last_created_at = Some(created_at);
        planned.updated_at = Some(planned.updated_at.map_or(created_at, |t| t.max(created_at)));
        let stored = Message {
            attachment: None,
            conversation_id: message.conversation_id,
            seq: planned.state.last_seq,
            kind: MessageKind::Text,
            client_msg_id: Some(message.client_msg_id.clone()),
            sender: message.sender.clone(),
            body: message.body.clone(),
            created_at,
        };
        present.insert(key, stored.clone());
        new_messages.push(stored.clone());
        results.push(Imported::Inserted {
            message: stored,
            conversation_created,
        });
    }
    write(tx, &new_visitors, &conversations, &new_messages).await?;
    Ok(results)
}

/// The batch's existing conversations, locked in id order (no deadlock between importers).
async fn lock_conversations(
    tx: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Planned>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT c.id, c.site_id, c.visitor_id, c.last_seq, \
             (SELECT m.created_at FROM messages m WHERE m.conversation_id = c.id \
              AND m.seq = c.last_seq) \
             FROM conversations c WHERE c.id = ANY($1) ORDER BY c.id FOR UPDATE OF c",
        )
        .await
        .map_err(pg_err)?;
    let rows = tx.query(&stmt, &[&ids]).await.map_err(pg_err)?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let created_at: Option<DateTime<Utc>> = row.try_get(4).map_err(pg_err)?;
        found.insert(
            row.try_get::<_, Uuid>(0).map_err(pg_err)?,
            Planned {
                state: ExistingConversation {
                    site_id: row.try_get(1).map_err(pg_err)?,
                    visitor_id: VisitorId(row.try_get::<_, Uuid>(2).map_err(pg_err)?),
                    last_seq: row.try_get(3).map_err(pg_err)?,
                    last_created_at: created_at,
                },
                created: false,
                created_at: created_at.unwrap_or_default(),
                status: "",
                updated_at: None,
            },
        );
    }
    Ok(found)
}

/// The batch's messages already stored, by (conversation, `client_msg_id`).
async fn present_messages(
    tx: &Transaction<'_>,
    messages: &[ImportedMessage],
) -> Result<HashMap<(Uuid, String), Message>, StoreError> {
    let conversations: Vec<Uuid> = messages.iter().map(|m| m.conversation_id.0).collect();
    let keys: Vec<&str> = messages.iter().map(|m| m.client_msg_id.as_str()).collect();
    let stmt = tx
        .prepare_cached(concat!(
            "SELECT ",
            message_row_columns!(),
            " FROM messages WHERE client_msg_id IS NOT NULL AND (conversation_id, client_msg_id) IN \
             (SELECT * FROM unnest($1::uuid[], $2::text[]))"
        ))
        .await
        .map_err(pg_err)?;
    let rows = tx
        .query(&stmt, &[&conversations, &keys])
        .await
        .map_err(pg_err)?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let message = message_from_row(&row)?;
        let key = message.client_msg_id.clone().unwrap_or_default();
        found.insert((message.conversation_id.0, key), message);
    }
    Ok(found)
}

async fn visitor_sites(
    tx: &Transaction<'_>,
    messages: &[ImportedMessage],
) -> Result<HashMap<Uuid, String>, StoreError> {
    let mut ids: Vec<Uuid> = messages.iter().map(|m| m.visitor_id.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let stmt = tx
        .prepare_cached("SELECT id, site_id FROM visitors WHERE id = ANY($1)")
        .await
        .map_err(pg_err)?;
    let rows = tx.query(&stmt, &[&ids]).await.map_err(pg_err)?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0).map_err(pg_err)?,
                row.try_get(1).map_err(pg_err)?,
            ))
        })
        .collect()
}

/// Writes what the batch planned: new visitors, new conversations, the new `last_seq` and
/// `updated_at` of existing ones, and the messages — one statement each.
async fn write(
    tx: &Transaction<'_>,
    visitors: &[(Uuid, &str, DateTime<Utc>)],
    conversations: &HashMap<Uuid, Planned>,
    messages: &[Message],
) -> Result<(), StoreError> {
    if !visitors.is_empty() {
        let ids: Vec<Uuid> = visitors.iter().map(|v| v.0).collect();
        let sites: Vec<&str> = visitors.iter().map(|v| v.1).collect();
        let times: Vec<DateTime<Utc>> = visitors.iter().map(|v| v.2).collect();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO visitors (id, site_id, created_at) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&stmt, &[&ids, &sites, &times])
            .await
            .map_err(pg_err)?;
    }
    let touched = conversations.iter().filter(|(_, p)| p.updated_at.is_some());
    let (created, updated): (Vec<_>, Vec<_>) = touched.partition(|(_, p)| p.created);
    if !created.is_empty() {
        let ids: Vec<Uuid> = created.iter().map(|(id, _)| **id).collect();
        let sites: Vec<&str> = created
            .iter()
            .map(|(_, p)| p.state.site_id.as_str())
            .collect();
        let visitors: Vec<Uuid> = created.iter().map(|(_, p)| p.state.visitor_id.0).collect();
        let statuses: Vec<&str> = created.iter().map(|(_, p)| p.status).collect();
        let seqs: Vec<i64> = created.iter().map(|(_, p)| p.state.last_seq).collect();
        let created_at: Vec<DateTime<Utc>> = created.iter().map(|(_, p)| p.created_at).collect();
        let updated_at: Vec<DateTime<Utc>> = created
            .iter()
            .map(|(_, p)| p.updated_at.unwrap_or(p.created_at))
            .collect();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO conversations \
                 (id, site_id, visitor_id, status, last_seq, created_at, updated_at) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], \
                 $5::bigint[], $6::timestamptz[], $7::timestamptz[])",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(
            &stmt,
            &[
                &ids,
                &sites,
                &visitors,
                &statuses,
                &seqs,
                &created_at,
                &updated_at,
            ],
        )
        .await
        .map_err(pg_err)?;
    }
    if !updated.is_empty() {
        let ids: Vec<Uuid> = updated.iter().map(|(id, _)| **id).collect();
        let seqs: Vec<i64> = updated.iter().map(|(_, p)| p.state.last_seq).collect();
        let times: Vec<DateTime<Utc>> = updated
            .iter()
            .map(|(_, p)| p.updated_at.unwrap_or_default())
            .collect();
        let stmt = tx
            .prepare_cached(
                "UPDATE conversations c SET last_seq = u.last_seq, visitor_last_seq = NULL, \
                 updated_at = greatest(c.updated_at, u.updated_at) \
                 FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) \
                 AS u(id, last_seq, updated_at) WHERE c.id = u.id",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&stmt, &[&ids, &seqs, &times])
            .await
            .map_err(pg_err)?;
    }
    if !messages.is_empty() {
        let conversation: Vec<Uuid> = messages.iter().map(|m| m.conversation_id.0).collect();
        let seq: Vec<i64> = messages.iter().map(|m| m.seq).collect();
        let key: Vec<Option<&str>> = messages
            .iter()
            .map(|m| m.client_msg_id.as_deref())
            .collect();
        let role: Vec<&str> = messages.iter().map(|m| m.sender.role.as_str()).collect();
        let sender: Vec<&str> = messages.iter().map(|m| m.sender.id.as_str()).collect();
        let name: Vec<Option<&str>> = messages.iter().map(|m| m.sender.name.as_deref()).collect();
        let body: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        let created_at: Vec<DateTime<Utc>> = messages.iter().map(|m| m.created_at).collect();
        let stmt = tx
            .prepare_cached(concat!(
                "INSERT INTO messages (",
                message_columns!(),
                ") SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], \
                 $5::text[], $6::text[], $7::text[], $8::timestamptz[])"
            ))
            .await
            .map_err(pg_err)?;
        tx.execute(
            &stmt,
            &[
                &conversation,
                &seq,
                &key,
                &role,
                &sender,
                &name,
                &body,
                &created_at,
            ],
        )
        .await
        .map_err(pg_err)?;
    }
    Ok(())
}
