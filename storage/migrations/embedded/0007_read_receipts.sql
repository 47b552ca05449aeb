-- 0007_read_receipts: how far each participant has read each conversation (as on Postgres: one
-- row per reader, the visitor with `reader_id` '', each agent with its id; `seq` only grows and
-- never passes the conversation's `last_seq`). Timestamps are integer microseconds.

CREATE TABLE conversation_reads (
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    reader_role      TEXT    NOT NULL CHECK (reader_role IN ('visitor', 'agent')),
    reader_id        TEXT    NOT NULL,
    seq              INTEGER NOT NULL CHECK (seq > 0),
    read_at          INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, reader_role, reader_id)
) STRICT, WITHOUT ROWID;
