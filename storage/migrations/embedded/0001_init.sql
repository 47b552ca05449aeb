-- 0001_init: visitors, conversations and messages (SQLite).
-- Uuids are stored as lower-case hyphenated text, timestamps as integer microseconds since the
-- Unix epoch (UTC), so both round-trip exactly.

CREATE TABLE visitors (
    id          TEXT    PRIMARY KEY,
    site_id     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE conversations (
    id             TEXT    PRIMARY KEY,
    site_id        TEXT    NOT NULL,
    visitor_id     TEXT    NOT NULL REFERENCES visitors (id),
    status         TEXT    NOT NULL CHECK (status IN ('open', 'closed')),
    assignee_id    TEXT    NULL,
    assignee_name  TEXT    NULL,
    last_seq       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX conversations_site_updated_idx
    ON conversations (site_id, updated_at DESC);
CREATE INDEX conversations_site_visitor_status_idx
    ON conversations (site_id, visitor_id, status);

CREATE TABLE messages (
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    seq              INTEGER NOT NULL,
    client_msg_id    TEXT    NULL,
    sender_role      TEXT    NOT NULL CHECK (sender_role IN ('visitor', 'agent')),
    sender_id        TEXT    NOT NULL,
    sender_name      TEXT    NULL,
    body             TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) STRICT;

CREATE UNIQUE INDEX messages_client_msg_id_idx
    ON messages (conversation_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
