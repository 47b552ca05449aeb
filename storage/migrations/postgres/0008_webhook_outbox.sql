-- 0008_webhook_outbox: the durable outbox of webhook events (docs/webhooks.md). A row is written
-- in the same transaction as the fact it reports (a conversation created, closed or assigned, a
-- message appended), and only for sites with a webhook; the delivery worker of any gateway
-- process claims due rows (FOR UPDATE SKIP LOCKED), deletes them once delivered, and otherwise
-- moves `next_attempt_at` (the claim's lease, then the retry backoff). `dead` rows are kept for
-- inspection and never retried.

CREATE TABLE webhook_outbox (
    position         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               uuid        NOT NULL UNIQUE,
    site_id          text        NOT NULL,
    conversation_id  uuid        NOT NULL,
    event_type       text        NOT NULL,
    payload          text        NOT NULL,
    state            text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text        NULL,
    created_at       timestamptz NOT NULL
);

CREATE INDEX webhook_outbox_due_idx
    ON webhook_outbox (next_attempt_at, position)
    WHERE state = 'pending';
