#!/usr/bin/env bash
# Compile-time checked SQL. The query macros are checked against the real
# schema: two scratch databases migrated from migrations/orders and
# migrations/delivery. The result is committed in .sqlx/, so ordinary builds
# (and CI) compile offline, without a database.
#
#   scripts/sqlx.sh prepare   # regenerate .sqlx/ after changing a query or a migration
#   scripts/sqlx.sh check     # fail if .sqlx/ is stale (CI runs this)
#
# SQLX_SCRATCH_PREFIX (default orderflow_sqlx) names the scratch databases, so
# two checkouts on one machine can prepare at the same time.
source "$(dirname "$0")/lib.sh"

mode="${1:-check}"
case "$mode" in prepare | check) ;; *) die "usage: scripts/sqlx.sh prepare|check" ;; esac

SQLX_VERSION=0.9.0
TOOLS="$STATE_DIR/tools"
SQLX="$TOOLS/bin/sqlx"
export PATH="$TOOLS/bin:$PATH"   # cargo finds its `sqlx` subcommand here
if ! "$SQLX" --version 2>/dev/null | grep -q "$SQLX_VERSION"; then
  step "installing sqlx-cli $SQLX_VERSION (cargo install, once per machine)"
  CARGO_TARGET_DIR="$STATE_DIR/target-tools" cargo install --quiet --locked "sqlx-cli@$SQLX_VERSION" \
    --no-default-features --features postgres,sqlx-toml --root "$TOOLS"
fi

PG="postgres://postgres@127.0.0.1:5432"
for db in orders delivery; do
  name="${SQLX_SCRATCH_PREFIX:-orderflow_sqlx}_$db"
  psql -q -v ON_ERROR_STOP=1 "$PG/postgres" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
  "$SQLX" migrate run --source "$ROOT/migrations/$db" --database-url "$PG/$name" >/dev/null
done
scratch="${SQLX_SCRATCH_PREFIX:-orderflow_sqlx}"
export ORDERS_DATABASE_URL="$PG/${scratch}_orders" DELIVERY_DATABASE_URL="$PG/${scratch}_delivery"
# sqlx-cli wants a DATABASE_URL of its own; each crate's sqlx.toml names the
# variable its queries are really checked against.
export DATABASE_URL="$ORDERS_DATABASE_URL"
unset SQLX_OFFLINE

cd "$ROOT"
if [ "$mode" = prepare ]; then
  step "regenerating .sqlx/ from the migrated schemas"
  cargo sqlx prepare --workspace -- --all-targets --quiet
  ok ".sqlx/ is up to date; commit it"
else
  step "checking .sqlx/ against the migrated schemas"
  cargo sqlx prepare --workspace --check -- --all-targets --quiet || die ".sqlx/ is stale: run scripts/sqlx.sh prepare and commit .sqlx/"
  ok ".sqlx/ matches every query"
fi
