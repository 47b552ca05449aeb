-- 0004_conversation_activity: nothing to change on SQLite. On Postgres this migration makes the
-- per-message update of a conversation a HOT update (see migrations/postgres/); SQLite rewrites
-- the row either way. Kept so that both stores have the same versions.
SELECT 1;
