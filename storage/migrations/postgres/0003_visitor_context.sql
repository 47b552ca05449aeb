-- 0003_visitor_context: each visitor's latest context (page, language, time zone, the site's
-- attributes, client address and country), for agents. One row per visitor who has written
-- at least once; a new report replaces the row and keeps `first_seen_at`.

CREATE TABLE visitor_context (
    visitor_id     uuid        PRIMARY KEY REFERENCES visitors (id),
    context        jsonb       NOT NULL,
    ip             text        NULL,
    country        text        NULL,
    first_seen_at  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
