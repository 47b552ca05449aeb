-- 0006_notes_and_agents (issue 15): a message's kind (text, an agents-only internal note, or a
-- system line such as a transfer), what visitors see of a conversation's sequence, and the
-- directory of agents that assignment picks from (SQLite; see migrations/postgres/).

ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'text'
    CHECK (kind IN ('text', 'note', 'system'));

ALTER TABLE conversations ADD COLUMN visitor_last_seq INTEGER NULL;

CREATE TABLE agents (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    sites      TEXT    NOT NULL,
    last_seen  INTEGER NOT NULL
) STRICT;
