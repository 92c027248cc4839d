#!/usr/bin/env bash
# `make bench`: order intake under load, against the targets in issue #3:
#   - POST /orders at 32 concurrent clients >= pgbench's rate for the same durable
#     transaction (order + history + outbox + idempotency rows, synchronous commit)
#   - p99 < 25 ms at half that load
#   - order-service peak RSS < 64 MiB
# Uses a release build, a scratch database and its own queues; loopback only.
# Tunables: BENCH_SECONDS (default 10), BENCH_CONCURRENCY (32).
source "$(dirname "$0")/lib.sh"

SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
CONCURRENCY="${BENCH_CONCURRENCY:-32}"
PORT=18080
DB=orderflow_bench
PGURL="postgres://postgres@127.0.0.1:5432"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STATE_DIR/target}"

"$ROOT/scripts/deps.sh"
command -v pgbench >/dev/null || apt_install postgresql-contrib

step "building release binaries"
cargo build --quiet --release --bin order-service --bin loadgen
BIN="$CARGO_TARGET_DIR/release"

step "preparing scratch database $DB"
psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
KEY=$(mktemp)
"$BIN/order-service" keys generate >"$KEY"
export DATABASE_URL="$PGURL/$DB" JWT_PRIVATE_KEY_FILE="$KEY" RUST_LOG=warn LOG_FORMAT=json
export SQS_ENDPOINT_URL="http://127.0.0.1:$SQS_PORT" SQS_CREATE_QUEUES=true ORDERS_QUEUE=bench-orders-queue.fifo
"$BIN/order-service" migrate 2>/dev/null
ORDERFLOW_NEW_CLIENT_SECRET=bench-secret "$BIN/order-service" clients create --client-id bench \
  --customer-id 01900000-0000-7000-8000-0000000be7c4 >/dev/null

step "pgbench: the same transaction, $CONCURRENCY clients, ${SECONDS_PER_RUN}s"
PGB=$(mktemp --suffix=.sql)
cat >"$PGB" <<'SQL'
\set qty random(1, 999)
SELECT gen_random_uuid() AS oid, gen_random_uuid() AS eid \gset
BEGIN;
INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id, response_status, response_body, expires_at)
  VALUES ('01900000-0000-7000-8000-0000000be7c4', 'f:' || :eid::text, '\x00', :oid::uuid, 201, '{"id": "x"}', now() + interval '10 seconds');
INSERT INTO orders (id, customer_id, status, currency, items, total_minor, shipping_address, created_at, updated_at)
  VALUES (:oid::uuid, '01900000-0000-7000-8000-0000000be7c4', 'PENDING_SHIPMENT', 'EUR',
          jsonb_build_array(jsonb_build_object('sku', 'PGB', 'quantity', :qty::int, 'unit_price_minor', 1000)), :qty::int * 1000,
          '{"name": "Load Test", "line1": "1 Bench Road", "line2": null, "city": "London", "postal_code": "N1", "country": "GB"}',
          now(), now());
INSERT INTO order_status_history (order_id, seq, status, at) VALUES (:oid::uuid, 1, 'PENDING_SHIPMENT', now());
INSERT INTO outbox (event_id, destination, group_id, event_type, body) VALUES (:eid::uuid, 'pgbench', :oid::text, 'order-created', repeat('x', 600));
COMMIT;
SQL
PGBENCH_TPS=$(pgbench -n -M prepared -c "$CONCURRENCY" -j 2 -T "$SECONDS_PER_RUN" -f "$PGB" "$PGURL/$DB" 2>/dev/null | awk '/^tps/ {print int($3)}')
ok "pgbench: $PGBENCH_TPS transactions/s"
psql "$DATABASE_URL" -qc "TRUNCATE orders, order_status_history, outbox, idempotency_keys CASCADE"

# Starts the order-service on $PORT with the given extra environment; fails if
# the port is taken (a stray service would be measured instead) or it dies.
start_service() {
  port_open "$PORT" && die "127.0.0.1:$PORT is already in use; stop what runs there"
  env "$@" HTTP_ADDR="127.0.0.1:$PORT" "$BIN/order-service" >>"$RUN_DIR/bench-order-service.log" 2>&1 &
  SVC=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  kill -0 "$SVC" 2>/dev/null || die "the order-service exited at start-up; see $RUN_DIR/bench-order-service.log"
}

SVC=""
cleanup() {
  # errexit applies inside traps: every command here must not fail.
  [ -n "$SVC" ] && kill "$SVC" 2>/dev/null || true
  [ -n "${SINK:-}" ] && kill "$SINK" 2>/dev/null || true
  rm -f "$KEY" "$PGB"
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "starting order-service (release) on 127.0.0.1:$PORT"
: >"$RUN_DIR/bench-order-service.log"
SVC=""
start_service RUST_LOG=warn

# summary JSON: one human line from a loadgen --json result.
summary() {
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f orders/s, p50 %.1f ms, p99 %.1f ms, %d errors" % (d["rate"], d["p50_ms"], d["p99_ms"], d["errors"]))' "$1"
}

rate_of() { python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["rate"]))' "$1"; }

LG=("$BIN/loadgen" --url "http://127.0.0.1:$PORT" --client-id bench --client-secret bench-secret --concurrency "$CONCURRENCY")
# closed_loop: warm up a freshly started service (connections, prepared
# statements), then print one closed-loop run's JSON result.
closed_loop() {
  "${LG[@]}" --duration 2s >/dev/null
  "${LG[@]}" --duration "${SECONDS_PER_RUN}s" --json
}
step "closed loop: $CONCURRENCY concurrent clients, ${SECONDS_PER_RUN}s"
FULL=$(closed_loop)
RATE=$(rate_of "$FULL")
ok "$(summary "$FULL")"

HALF=$((RATE / 2))
step "open loop at half that rate: $HALF orders/s, ${SECONDS_PER_RUN}s"
HALFRUN=$("${LG[@]}" --duration "${SECONDS_PER_RUN}s" --rate "$HALF" --json)
P99=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["p99_ms"], 1))' "$HALFRUN")
ok "$(summary "$HALFRUN")"

RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SVC/status")
BACKLOG=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM outbox")

# Tracing on: once exporting to a reachable collector (a local sink), once to
# an unreachable one. The difference between the two is what an outage of the
# collector costs; the difference to the first run is what tracing costs.
# Restarts the service with OTEL_EXPORTER_OTLP_ENDPOINT=$1 (in this shell, not
# a subshell, so cleanup kills the right process).
restart_with_otlp() {
  kill "$SVC" 2>/dev/null || true
  wait "$SVC" 2>/dev/null || true
  start_service OTEL_EXPORTER_OTLP_ENDPOINT="$1"
}
SINK_PORT=14318
python3 "$ROOT/scripts/otlp_sink.py" "$SINK_PORT" &
SINK=$!
step "closed loop with tracing on, exporting to a reachable OTLP collector"
restart_with_otlp "http://127.0.0.1:$SINK_PORT"
TRACED=$(closed_loop)
TRACED_RATE=$(rate_of "$TRACED")
ok "$(summary "$TRACED")"
kill "$SINK" 2>/dev/null || true
step "closed loop with tracing on and the OTLP collector unreachable"
restart_with_otlp "http://127.0.0.1:9"
OTEL=$(closed_loop)
OTEL_RATE=$(rate_of "$OTEL")
ok "$(summary "$OTEL")"

verdict() { if python3 -c "import sys; sys.exit(0 if $1 else 1)"; then echo "PASS"; else echo "MISS"; fi; }
cat <<REPORT

orderflow intake benchmark (${CONCURRENCY} clients, ${SECONDS_PER_RUN}s runs, $(nproc) cores)
  pgbench, same transaction        ${PGBENCH_TPS} tx/s
  POST /orders, closed loop        ${RATE} orders/s           [$(verdict "$RATE >= $PGBENCH_TPS")] target >= pgbench
  p99 at half load (${HALF}/s)      ${P99} ms                  [$(verdict "$P99 < 25")] target < 25 ms
  order-service peak RSS           $((RSS_KB / 1024)) MiB                   [$(verdict "$RSS_KB < 65536")] target < 64 MiB
  outbox rows still unsent         ${BACKLOG}
  closed loop, tracing exported    ${TRACED_RATE} orders/s           ($((TRACED_RATE * 100 / (RATE > 0 ? RATE : 1)))% of the rate without tracing)
  closed loop, collector down      ${OTEL_RATE} orders/s           ($((OTEL_RATE * 100 / (TRACED_RATE > 0 ? TRACED_RATE : 1)))% of the rate with a reachable collector)
REPORT
