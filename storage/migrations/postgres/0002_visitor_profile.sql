-- 0002_visitor_profile: who the main site says a visitor is (issue 13, identity verification).
-- `verified` is true when the main site vouched for `user_id` with CHAT_IDENTITY_SECRET; such a
-- visitor's id is derived from (site, user_id), so the same user is the same visitor everywhere.

ALTER TABLE visitors
    ADD COLUMN user_id  text    NULL,
    ADD COLUMN name     text    NULL,
    ADD COLUMN email    text    NULL,
    ADD COLUMN verified boolean NOT NULL DEFAULT false;
