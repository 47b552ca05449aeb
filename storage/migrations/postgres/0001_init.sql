-- 0001_init: visitors, conversations and messages.

CREATE TABLE visitors (
    id          uuid        PRIMARY KEY,
    site_id     text        NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE conversations (
    id             uuid        PRIMARY KEY,
    site_id        text        NOT NULL,
    visitor_id     uuid        NOT NULL REFERENCES visitors (id),
    status         text        NOT NULL CHECK (status IN ('open', 'closed')),
    assignee_id    text        NULL,
    assignee_name  text        NULL,
    last_seq       bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE INDEX conversations_site_updated_idx
    ON conversations (site_id, updated_at DESC);
CREATE INDEX conversations_site_visitor_status_idx
    ON conversations (site_id, visitor_id, status);

CREATE TABLE messages (
    conversation_id  uuid        NOT NULL REFERENCES conversations (id),
    seq              bigint      NOT NULL,
    client_msg_id    text        NULL,
    sender_role      text        NOT NULL CHECK (sender_role IN ('visitor', 'agent')),
    sender_id        text        NOT NULL,
    sender_name      text        NULL,
    body             text        NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

CREATE UNIQUE INDEX messages_client_msg_id_idx
    ON messages (conversation_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
