-- 0010_search: full-text search of message bodies (issue 15), with SQLite FTS5. The FTS table
-- keeps its own copy of each body (with its conversation and seq, unindexed) rather than
-- pointing at `messages` rows by rowid, which VACUUM may renumber. Triggers keep it in step in
-- the transaction that writes a message; existing messages are indexed here. The tokenizer
-- lower-cases and keeps diacritics, as Postgres's `simple` configuration does.

CREATE VIRTUAL TABLE messages_fts USING fts5 (
    body,
    conversation_id UNINDEXED,
    seq UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 0'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (body, conversation_id, seq)
    VALUES (new.body, new.conversation_id, new.seq);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts WHERE conversation_id = old.conversation_id AND seq = old.seq;
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF body, conversation_id, seq ON messages BEGIN
    DELETE FROM messages_fts WHERE conversation_id = old.conversation_id AND seq = old.seq;
    INSERT INTO messages_fts (body, conversation_id, seq)
    VALUES (new.body, new.conversation_id, new.seq);
END;

INSERT INTO messages_fts (body, conversation_id, seq)
    SELECT body, conversation_id, seq FROM messages;
