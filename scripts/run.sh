#!/usr/bin/env bash
# `make run`: installs and starts what is missing, builds and (re)starts the
# services on 127.0.0.1, registers the demo OAuth2 client, places a demo order
# and prints it. Safe to run again: it restarts only the orderflow services.
# ORDERFLOW_PGBOUNCER=1: both services' pools go through PgBouncer (transaction
# pooling) on 127.0.0.1:6432, installed and started by scripts/pgbouncer.sh.
# RELEASE=1 (`make run RELEASE=1`): optimised builds, as `make bench` measures.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/pgbouncer.sh"

"$ROOT/scripts/deps.sh"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STATE_DIR/target}"
export SQLX_OFFLINE="${SQLX_OFFLINE:-true}"
PROFILE=(); BIN="$CARGO_TARGET_DIR/debug"
if [ "${RELEASE:-0}" = 1 ]; then PROFILE=(--release); BIN="$CARGO_TARGET_DIR/release"; fi
step "building the services and the controller (cargo build ${PROFILE[*]}; the first build takes a few minutes)"
cargo build --quiet "${PROFILE[@]}" --bin order-service --bin delivery-service --bin orderflow --bin orderflow-controller
ok "built into $BIN"

# The queues and databases are the controller's job, here as in a cluster: one
# reconcile of k8s/examples/local.yaml creates (or adopts, or repairs) them and
# prints the ConfigMap and Secrets the services read. The generated database
# passwords and the order API's keys (JWT signing key, client secret key) are
# kept in a state file, so every run publishes the same ones.
step "provisioning queues and databases (orderflow-controller reconcile-once --file k8s/examples/local.yaml)"
PIPELINE_DIR="$RUN_DIR/pipeline"
if ! "$BIN/orderflow-controller" reconcile-once --file "$ROOT/k8s/examples/local.yaml" \
  --state "$STATE_DIR/local-pipeline.state" --env-dir "$PIPELINE_DIR" >"$RUN_DIR/pipeline.yaml"; then
  die "the controller could not reconcile k8s/examples/local.yaml (see above)"
fi
ok "published config in $RUN_DIR/pipeline.yaml"
# What envFrom would give the pods: the ConfigMap for both, a Secret each.
set -a
# shellcheck disable=SC1091
source "$PIPELINE_DIR/demo-config.env"
set +a
ORDERS_DATABASE_URL=$(. "$PIPELINE_DIR/demo-orders-db.env" && echo "$DATABASE_URL")
DELIVERY_DATABASE_URL=$(. "$PIPELINE_DIR/demo-delivery-db.env" && echo "$DATABASE_URL")

# PgBouncer between the pools and PostgreSQL: DATABASE_URL stays the direct
# connection (LISTEN, migrations), DATABASE_POOLER sends the pools through it.
POOLER=()
if [ "${ORDERFLOW_PGBOUNCER:-0}" = "1" ]; then
  step "starting PgBouncer (ORDERFLOW_PGBOUNCER=1): both services' pools go through 127.0.0.1:$PGBOUNCER_PORT"
  role() { python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.unquote(p.username or "") + ":" + u.unquote(p.password or ""))' "$1"; }
  pgbouncer_start "$(role "$ORDERS_DATABASE_URL")" "$(role "$DELIVERY_DATABASE_URL")"
  POOLER=(DATABASE_POOLER="$PGBOUNCER_ADDR")
elif pgbouncer_running; then
  pgbouncer_stop
fi

# The controller's key Secrets as files, as their volumes give them to the API's pods:
# the signing key, and the key generated client secrets are stored under (HMAC-SHA-256),
# made once and kept, so tokens and clients from earlier runs keep working.
KEY="$PIPELINE_DIR/demo-jwt/jwt.pem"
CLIENT_KEY="$PIPELINE_DIR/demo-client-secret-key/client-secret.key"

# Shared settings of the local services (see docs/CONFIGURATION.md).
# The schema is the controller's: the services do not migrate, as in a cluster.
unset SQS_CREATE_QUEUES
export DATABASE_MIGRATE=false
# MIMALLOC_PURGE_DELAY=0: as in the images (Dockerfile), freed memory goes back at once.
export MIMALLOC_PURGE_DELAY=0
export REDIS_URL=redis://127.0.0.1:6379 LOG_FORMAT=json RUST_LOG="${RUST_LOG:-info,sqlx=warn,aws_config=warn}"

start_service() {
  local name=$1 port=$2
  shift 2
  local pidfile="$RUN_DIR/$name.pid" log="$RUN_DIR/$name.log"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill -TERM "$(cat "$pidfile")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    ok "stopped the previous $name"
  fi
  port_open "$port" && die "127.0.0.1:$port is in use by another program; stop it or set the port"
  step "starting $name on 127.0.0.1:$port (log: $log)"
  env "$@" nohup "$BIN/$name" >>"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && { ok "$name ready"; return; }
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -20 "$log" >&2; die "$name exited during start-up"; }
    sleep 0.1
  done
  tail -20 "$log" >&2
  die "$name did not become ready within 30s"
}

start_service order-service 8080 HTTP_ADDR=127.0.0.1:8080 DATABASE_URL="$ORDERS_DATABASE_URL" "${POOLER[@]}" JWT_PRIVATE_KEY_FILE="$KEY" \
  CLIENT_SECRET_KEY_FILE="$CLIENT_KEY"
start_service delivery-service 8081 HTTP_ADDR=127.0.0.1:8081 DATABASE_URL="$DELIVERY_DATABASE_URL" "${POOLER[@]}"

step "registering the demo client (id demo, secret demo-secret; development only)"
DATABASE_URL="$ORDERS_DATABASE_URL" JWT_PRIVATE_KEY_FILE="$KEY" CLIENT_SECRET_KEY_FILE="$CLIENT_KEY" LOG_FORMAT=pretty RUST_LOG=warn \
  ORDERFLOW_NEW_CLIENT_SECRET=demo-secret "$BIN/order-service" clients create --client-id demo \
  --customer-id 01900000-0000-7000-8000-00000000d3a0 --scope "orders:read orders:write" --replace >/dev/null
ok "client demo registered"

export ORDERFLOW_URL=http://127.0.0.1:8080 ORDERFLOW_CLIENT_ID=demo ORDERFLOW_CLIENT_SECRET=demo-secret
step "placing a demo order (orderflow orders create)"
ORDER=$("$BIN/orderflow" --json orders create --idempotency-key "demo-$(date +%s)" --currency EUR \
  --item SKU-123:2:1299 --name "Ada Lovelace" --line1 "12 Example Street" --city London --postal-code "N1 9GU" --country GB)
echo "$ORDER" | python3 -m json.tool
ORDER_ID=$(echo "$ORDER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

step "watching order $ORDER_ID live until DELIVERED (orderflow orders watch)"
timeout 120 "$BIN/orderflow" orders watch "$ORDER_ID" || warn "the order did not reach DELIVERED in time; see $RUN_DIR/*.log"
"$BIN/orderflow" orders get "$ORDER_ID"

cat <<MSG

$(printf '\033[1;32m')orderflow is running.$(printf '\033[0m') Try the CLI ($BIN/orderflow) or curl:

  export ORDERFLOW_URL=http://127.0.0.1:8080 ORDERFLOW_CLIENT_ID=demo ORDERFLOW_CLIENT_SECRET=demo-secret
  $BIN/orderflow orders list
  $BIN/orderflow orders create --item SKU-9:1:500 --name "Grace Hopper" --line1 "1 Navy Way" --city Arlington --postal-code 22201 --country US
  $BIN/orderflow orders watch $ORDER_ID

  TOKEN=\$(curl -s -u demo:demo-secret -d grant_type=client_credentials http://127.0.0.1:8080/auth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s http://127.0.0.1:8080/orders/$ORDER_ID -H "Authorization: Bearer \$TOKEN"
  curl -s http://127.0.0.1:8080/orders -H "Authorization: Bearer \$TOKEN"
  curl -N http://127.0.0.1:8080/orders/$ORDER_ID/events -H "Authorization: Bearer \$TOKEN"
  curl -s http://127.0.0.1:8080/readyz
  curl -s http://127.0.0.1:8080/openapi.json
  curl -s http://127.0.0.1:8081/shipments/$ORDER_ID      # delivery-service, internal

Logs: $RUN_DIR/*.log    Stop: make stop
MSG
