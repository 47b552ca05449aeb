-- 0006_notes_and_agents (issue 15): a message's kind (text, an agents-only internal note, or a
-- system line such as a transfer), what visitors see of a conversation's sequence, and the
-- directory of agents that assignment picks from. Additive: both columns take no rewrite
-- (a constant default and a NULL column are catalog changes only).

-- 'text', 'note' or 'system' (checked by the store on read and write).
ALTER TABLE messages ADD COLUMN kind text NOT NULL DEFAULT 'text';

-- The seq of the newest message visitors see while notes follow it; NULL: the same as last_seq.
ALTER TABLE conversations ADD COLUMN visitor_last_seq bigint NULL;

CREATE TABLE agents (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    -- '*' (every site) or the site ids, comma-separated.
    sites      text        NOT NULL,
    last_seen  timestamptz NOT NULL
);
