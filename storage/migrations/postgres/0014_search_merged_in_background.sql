-- 0014_search_merged_in_background: the gateway merges the search index's pending list itself,
-- in the background (storage/src/postgres/search_pending_list.rs: once a second, after every 256
-- messages it inserted), so the inserts no longer have to. Migration 0013's 256 kB list made them merge it many times a second: 38 %
-- of the writing backends' CPU at 256 senders (docs/benchmarks.md, "The pending list cleaned in
-- the background"). At 16 MB an insert only merges when the background merge cannot keep up or
-- does not run (a database role that does not own the index: the gateway then says so in its
-- log); that merge is as long as the 4 MB stalls of docs/benchmarks.md, "The search index's
-- pending list", times four.

ALTER INDEX messages_body_fts_idx SET (gin_pending_list_limit = 16384);
