-- 0003_visitor_context: each visitor's latest context (page, language, time zone, the site's
-- attributes, client address and country), for agents (SQLite). `context` is JSON text.
-- One row per visitor who has written at least once; a new report replaces the row and keeps
-- `first_seen_at`.

CREATE TABLE visitor_context (
    visitor_id     TEXT    PRIMARY KEY REFERENCES visitors (id),
    context        TEXT    NOT NULL,
    ip             TEXT    NULL,
    country        TEXT    NULL,
    first_seen_at  INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
