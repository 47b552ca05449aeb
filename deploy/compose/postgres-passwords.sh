#!/bin/sh
# Run by the postgres image once, on an empty data volume, after 10-roles.sql: gives the two roles
# of deploy/postgres/roles.sql the passwords from deploy/.env (psql variables, so they are quoted
# by psql and never spliced into SQL text by the shell).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  --set=owner_password="$CHAT_OWNER_PASSWORD" --set=app_password="$CHAT_APP_PASSWORD" <<'SQL'
ALTER ROLE chat_owner PASSWORD :'owner_password';
ALTER ROLE chat_app PASSWORD :'app_password';
SQL
