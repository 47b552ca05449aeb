-- 0009_canned_responses: per-site saved replies agents insert with a `/` shortcut (issue 15).
-- At most a bounded number per site (checked under a per-site advisory lock when creating).

CREATE TABLE canned_responses (
    id          uuid        PRIMARY KEY,
    site_id     text        NOT NULL,
    shortcut    text        NOT NULL,
    title       text        NOT NULL,
    body        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    UNIQUE (site_id, shortcut)
);
