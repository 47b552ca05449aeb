-- 0011_conversation_waiting: offline capture (issue 15). `waiting` is true while a visitor wrote
-- when no agent of the site was online and no agent has replied or taken the conversation since.
-- A constant default: adding the column rewrites nothing.

ALTER TABLE conversations
    ADD COLUMN waiting boolean NOT NULL DEFAULT false;
