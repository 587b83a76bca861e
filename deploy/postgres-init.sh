#!/bin/sh
# The abdr catalog's database and role (Temporal uses its own databases on this server).
# Run once by the postgres image's entrypoint on an empty data directory; the password comes
# from ABDR_DB_PASSWORD (compose refuses to start without it). ABDR_DB_USER / ABDR_DB_NAME
# default to abdr.
if [ -z "${ABDR_DB_PASSWORD:-}" ]; then
  echo "postgres-init: ABDR_DB_PASSWORD is not set" >&2
  exit 1
fi
psql -v ON_ERROR_STOP=1 -v user="${ABDR_DB_USER:-abdr}" -v db="${ABDR_DB_NAME:-abdr}" \
  -v pw="$ABDR_DB_PASSWORD" --username "${POSTGRES_USER:-postgres}" --dbname postgres <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"user";
SQL
