-- 0004_conversation_activity: every message bumps its conversation's `last_seq` and `updated_at`.
-- With `updated_at` in an index, each of those updates wrote a new index entry in every index of
-- the table and could never be a HOT update (issue 12: the largest cost of a group commit). The
-- recency index now uses the minute of `updated_at`, which changes at most once a minute per
-- conversation, so the other updates are HOT (given room on the page: fillfactor 80). Lists
-- order by (activity_minute, updated_at), the same order as by `updated_at` alone.
-- Needs Postgres 14 or newer (date_bin).

ALTER TABLE conversations
    ADD COLUMN activity_minute timestamptz NOT NULL
    GENERATED ALWAYS AS (date_bin('1 minute', updated_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')) STORED;

DROP INDEX conversations_site_updated_idx;

CREATE INDEX conversations_site_activity_idx
    ON conversations (site_id, activity_minute DESC);

ALTER TABLE conversations SET (fillfactor = 80);
