-- 0007_read_receipts: how far each participant has read each conversation (issue 15, read
-- receipts). One row per reader: the visitor (`reader_role` 'visitor', `reader_id` '') and each
-- agent (`reader_role` 'agent', `reader_id` the agent id). `seq` only grows and never passes the
-- conversation's `last_seq`. Additive: nothing else changes, and an older gateway ignores it.

CREATE TABLE conversation_reads (
    conversation_id  uuid        NOT NULL REFERENCES conversations (id),
    reader_role      text        NOT NULL CHECK (reader_role IN ('visitor', 'agent')),
    reader_id        text        NOT NULL,
    seq              bigint      NOT NULL CHECK (seq > 0),
    read_at          timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, reader_role, reader_id)
);
