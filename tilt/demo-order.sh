#!/usr/bin/env bash
# Tilt button `demo-order`: places an order through the port-forwarded API with
# the `orderflow` CLI and watches it reach DELIVERED. The CLI runs here, so it is a
# build for this host (tilt/build.sh's binaries are for the kind node).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orderflow/target}" SQLX_OFFLINE=true
cargo build --quiet -p orderflow --bin orderflow
CLI="$CARGO_TARGET_DIR/debug/orderflow"
export ORDERFLOW_URL="${ORDERFLOW_URL:-http://localhost:8080}"
export ORDERFLOW_CLIENT_ID="${ORDERFLOW_CLIENT_ID:-demo}" ORDERFLOW_CLIENT_SECRET="${ORDERFLOW_CLIENT_SECRET:-demo-secret}"
ORDER=$("$CLI" --json orders create --idempotency-key "tilt-$(date +%s)-$$-$RANDOM" --currency EUR --item SKU-TILT:1:1299 \
  --name "Ada Lovelace" --line1 "12 Example Street" --city London --postal-code "N1 9GU" --country GB)
echo "$ORDER"
ID=$(printf '%s' "$ORDER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
# macOS has no timeout(1) unless coreutils is installed; the watch ends by itself at DELIVERED.
if command -v timeout >/dev/null; then timeout 120 "$CLI" orders watch "$ID"; else "$CLI" orders watch "$ID"; fi
