-- 0002_visitor_profile: who the main site says a visitor is (issue 13, identity verification).
-- `verified` is 1 when the main site vouched for `user_id` with CHAT_IDENTITY_SECRET.

ALTER TABLE visitors ADD COLUMN user_id  TEXT    NULL;
ALTER TABLE visitors ADD COLUMN name     TEXT    NULL;
ALTER TABLE visitors ADD COLUMN email    TEXT    NULL;
ALTER TABLE visitors ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;
