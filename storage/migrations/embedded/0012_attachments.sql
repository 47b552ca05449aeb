-- 0012_attachments: images and files sent in the chat (issue 15, item 8); see
-- migrations/postgres/0012_attachments.sql. Uuids as text, timestamps as integer microseconds,
-- booleans as 0/1, the bytes as a BLOB (NULL when they are kept in `CHAT_UPLOAD_DIR`);
-- `sent_at` NULL: no `send` carried it yet (swept after `CHAT_UPLOAD_UNSENT_TTL_SECS`).

CREATE TABLE attachments (
    id                  TEXT    PRIMARY KEY,
    site_id             TEXT    NOT NULL,
    conversation_id     TEXT    NULL REFERENCES conversations (id),
    uploader_role       TEXT    NOT NULL CHECK (uploader_role IN ('visitor', 'agent')),
    uploader_id         TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    content_type        TEXT    NOT NULL,
    size                INTEGER NOT NULL CHECK (size >= 0),
    visible_to_visitor  INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    sent_at             INTEGER NULL,
    content             BLOB    NULL
) STRICT;

CREATE INDEX attachments_conversation_idx ON attachments (conversation_id);
CREATE INDEX attachments_unsent_idx ON attachments (created_at) WHERE sent_at IS NULL;

-- The `AttachmentRef` a message carries, as JSON text; NULL for a message without one.
ALTER TABLE messages ADD COLUMN attachment TEXT NULL;
