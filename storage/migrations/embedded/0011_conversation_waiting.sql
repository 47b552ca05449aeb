-- 0011_conversation_waiting: offline capture (issue 15). `waiting` is 1 while a visitor wrote
-- when no agent of the site was online and no agent has replied or taken the conversation since.

ALTER TABLE conversations ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
