#!/usr/bin/env bash
# Tilt button `demo-order`: places an order through the port-forwarded API with
# the `orderflow` CLI (built by tilt/build.sh) and watches it reach DELIVERED.
set -euo pipefail
cd "$(dirname "$0")/.."
export ORDERFLOW_URL="${ORDERFLOW_URL:-http://localhost:8080}"
export ORDERFLOW_CLIENT_ID="${ORDERFLOW_CLIENT_ID:-demo}" ORDERFLOW_CLIENT_SECRET="${ORDERFLOW_CLIENT_SECRET:-demo-secret}"
CLI=tilt/.build/orderflow
ORDER=$("$CLI" --json orders create --idempotency-key "tilt-$(date +%s%N)" --currency EUR --item SKU-TILT:1:1299 \
  --name "Ada Lovelace" --line1 "12 Example Street" --city London --postal-code "N1 9GU" --country GB)
echo "$ORDER"
ID=$(printf '%s' "$ORDER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
timeout 120 "$CLI" orders watch "$ID"
