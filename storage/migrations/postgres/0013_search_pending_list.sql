-- 0013_search_pending_list: a small pending list for the search index (issue 12). With GIN's
-- `fastupdate`, new words are appended to a pending list, and the insert that finds the list over
-- `gin_pending_list_limit` (4 MB by default) merges all of it into the index itself, inside its
-- own statement. For the gateway that insert is a batch of messages: at 10,000 msg/s it stalled
-- every ~2.7 s for 100-190 ms, every message of the batch (and the ones queued behind it) late by
-- as much (docs/benchmarks.md, "The search index's pending list"). At 256 kB each merge is about
-- sixteen times smaller; the many small merges cost about 4 % of the throughput when every writer is
-- busy all the time (256 senders; the same section). `fastupdate` stays on
-- (inserting each word into the tree at once costs more: docs/benchmarks.md, issue 15's section).

ALTER INDEX messages_body_fts_idx SET (gin_pending_list_limit = 256);
