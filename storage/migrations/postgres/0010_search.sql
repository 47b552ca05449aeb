-- 0010_search: full-text search of message bodies (issue 15). A GIN index over the `simple`
-- configuration's tsvector of each body (words lower-cased, no stemming, no stop words, so any
-- language written with spaces matches word by word). Postgres maintains it itself in the
-- transaction that inserts a message: the append path writes nothing more. Words of CJK text
-- (no spaces) are matched as substrings instead, without this index (docs/protocol.md).
-- Building the index reads every message once, holding writes to `messages` meanwhile.

CREATE INDEX messages_body_fts_idx
    ON messages USING gin (to_tsvector('simple', body));
