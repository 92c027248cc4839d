#!/usr/bin/env bash
# Tilt resource `demo-client`: registers the development OAuth2 client demo /
# demo-secret inside the cluster, with the API pod's own binary and DATABASE_URL
# (the controller's Secret), so the CLI, the demo order and the cluster e2e
# tests can get tokens. Development only; `--replace` makes it repeatable.
set -euo pipefail
kubectl -n "${NAMESPACE:-orderflow}" exec "deploy/${API_DEPLOYMENT:-orderflow-order-api}" -- \
  env ORDERFLOW_NEW_CLIENT_SECRET=demo-secret LOG_FORMAT=pretty RUST_LOG=warn \
  order-service clients create --client-id demo --customer-id 01900000-0000-7000-8000-00000000d3a0 \
  --scope "orders:read orders:write" --replace
