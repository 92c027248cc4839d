#!/usr/bin/env bash
# `make test-pgbouncer`: the pool's PgBouncer checks and the end-to-end suite
# once more with both services' pools going through PgBouncer 1.18 in
# transaction pooling mode (scripts/pgbouncer.sh, 127.0.0.1:6432), so nothing
# that needs a session, and no cached prepared statement, goes through it.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/pgbouncer.sh"

"$ROOT/scripts/deps.sh"
step "starting PgBouncer (transaction pooling) on 127.0.0.1:$PGBOUNCER_PORT"
pgbouncer_start
trap pgbouncer_stop EXIT
export TEST_DATABASE_POOLER="$PGBOUNCER_ADDR"

step "the pool through PgBouncer (cargo test -p database --test pgbouncer)"
cargo test -p database --test pgbouncer
step "the end-to-end suite through PgBouncer (cargo test -p e2e --test e2e)"
cargo test -p e2e --test e2e ${E2E_FILTER:-}
ok "everything passed through PgBouncer"
