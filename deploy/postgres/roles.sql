-- Least-privilege Postgres roles for chat-gateway (deploy/MIGRATING.md, "Postgres roles").
--
--   chat_owner  owns the database and every table: `chat-gateway migrate` runs as it
--   chat_app    what the running gateway uses: reads and writes rows, nothing else (no DDL,
--               no TRUNCATE, no other database; DELETE only on webhook_outbox,
--               canned_responses and attachments, granted by migration 12)
--
-- Run once as a superuser, before the first `chat-gateway migrate`:
--   psql -v ON_ERROR_STOP=1 -U postgres -f deploy/postgres/roles.sql
-- then give both roles a password (psql: \password chat_owner, \password chat_app) unless they
-- log in another way (peer, certificates). gateway/tests/deploy_postgres_roles.rs runs this file
-- and chats through a gateway that uses chat_app.
--
-- What the gateway needs, from storage/migrations/postgres/*.sql and storage/src/postgres/:
-- SELECT/INSERT/UPDATE on visitors, conversations, messages, SELECT on chat_schema_migrations (the
-- start-up schema check). No sequences today (ids are UUIDs, seq comes from conversations.last_seq);
-- the default privileges below cover tables and sequences later migrations add. LISTEN/NOTIFY
-- (the bus between gateway processes, channel chat_events) and pg_notify() need no grant.

CREATE ROLE chat_owner LOGIN;
CREATE ROLE chat_app LOGIN;
CREATE DATABASE chat OWNER chat_owner;

\connect chat

-- Only the two roles may connect; nobody gets temporary tables by default.
REVOKE ALL ON DATABASE chat FROM PUBLIC;
GRANT CONNECT ON DATABASE chat TO chat_app;

-- Postgres 14 and older let every role create tables in schema public: not here.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO chat_owner;
GRANT USAGE ON SCHEMA public TO chat_app;

-- Tables and sequences chat_owner creates from now on (every migration) are usable by chat_app.
ALTER DEFAULT PRIVILEGES FOR ROLE chat_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE ON TABLES TO chat_app;
ALTER DEFAULT PRIVILEGES FOR ROLE chat_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO chat_app;

-- Tables that already exist (a database migrated before the roles were split): same grants.
-- Their owner must be chat_owner too, or the next migration cannot alter them:
--   ALTER TABLE visitors OWNER TO chat_owner;  (and conversations, messages, chat_schema_migrations)
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO chat_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO chat_app;
