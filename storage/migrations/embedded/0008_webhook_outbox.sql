-- 0008_webhook_outbox: the durable outbox of webhook events (docs/webhooks.md); see
-- migrations/postgres/0008_webhook_outbox.sql. Timestamps in integer microseconds, uuids as text.

CREATE TABLE webhook_outbox (
    position         INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    site_id          TEXT    NOT NULL,
    conversation_id  TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT    NULL,
    created_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX webhook_outbox_due_idx
    ON webhook_outbox (next_attempt_at, position)
    WHERE state = 'pending';
