-- 0009_canned_responses: per-site saved replies agents insert with a `/` shortcut (issue 15).

CREATE TABLE canned_responses (
    id          TEXT    PRIMARY KEY,
    site_id     TEXT    NOT NULL,
    shortcut    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (site_id, shortcut)
) STRICT;
