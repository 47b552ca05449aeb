-- 0012_attachments: images and files sent in the chat (issue 15, item 8; docs/protocol.md
-- #attachments). Additive: a new table, and a NULL column on `messages` (a catalog change only,
-- no rewrite); an older gateway neither reads nor writes either.
--
-- `conversation_id` is NULL while a visitor's upload waits for the `send` that binds it, then
-- never changes. `content` holds the bytes unless they are kept in `CHAT_UPLOAD_DIR` (NULL).
-- `visible_to_visitor` only ever goes from false to true: a message the visitor sees carried it.
-- `sent_at` is when a `send` first carried it (NULL: never); uploads never sent are deleted
-- `CHAT_UPLOAD_UNSENT_TTL_SECS` after `created_at`, found through the partial index.

CREATE TABLE attachments (
    id                  uuid        PRIMARY KEY,
    site_id             text        NOT NULL,
    conversation_id     uuid        NULL REFERENCES conversations (id),
    uploader_role       text        NOT NULL CHECK (uploader_role IN ('visitor', 'agent')),
    uploader_id         text        NOT NULL,
    name                text        NOT NULL,
    content_type        text        NOT NULL,
    size                bigint      NOT NULL CHECK (size >= 0),
    visible_to_visitor  boolean     NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL,
    sent_at             timestamptz NULL,
    content             bytea       NULL
);

CREATE INDEX attachments_conversation_idx ON attachments (conversation_id);
CREATE INDEX attachments_unsent_idx ON attachments (created_at) WHERE sent_at IS NULL;

-- The `AttachmentRef` a message carries (`id`, `name`, `content_type`, `size`) as JSON; NULL
-- for a message without one. `text`, not `jsonb`: the store only ever writes and reads it whole
-- (never queries inside it), text keeps it byte for byte as written, and the embedded store
-- keeps the same text.
ALTER TABLE messages ADD COLUMN attachment text NULL;

-- The running gateway deletes rows from three tables, and from no other: delivered webhook
-- events (`webhook_outbox`), canned responses an agent deletes (`canned_responses`), and uploads
-- no message carried (`attachments`). deploy/postgres/roles.sql's least-privilege role
-- `chat_app` gets no DELETE by default (so it can never delete a message), so it is granted
-- here, on those three tables only, where it exists. A deployment whose gateway role has
-- another name grants the same itself (deploy/MIGRATING.md, "Postgres roles").
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'chat_app') THEN
        GRANT DELETE ON webhook_outbox, canned_responses, attachments TO chat_app;
    END IF;
END
$$;
