#!/usr/bin/env bash
# Tilt's `compile` resource: builds the deployable binaries on the host, where
# cargo's incremental cache lives (a Rust build inside `docker build` starts
# cold unless dependency layers are cached, and even then recompiles every
# workspace crate), then stages each binary in tilt/.build/ for the small
# runtime image (tilt/Dockerfile). A binary is copied only when it changed, so
# Tilt rebuilds only the images whose binary did.
set -euo pipefail
cd "$(dirname "$0")/.."
# Its own target dir: the dev profile without debug info (smaller images, faster
# pushes) would otherwise invalidate `make run`'s cache.
export CARGO_TARGET_DIR="${ORDERFLOW_TILT_TARGET_DIR:-$HOME/.cache/orderflow/target-tilt}"
export CARGO_PROFILE_DEV_DEBUG=0 SQLX_OFFLINE=true
BINS=(order-service delivery-service orderflow-controller orderflow)
cargo build $(printf -- '--bin %s ' "${BINS[@]}")
mkdir -p tilt/.build
for bin in "${BINS[@]}"; do
  if ! cmp -s "$CARGO_TARGET_DIR/debug/$bin" "tilt/.build/$bin"; then
    install -m 0755 "$CARGO_TARGET_DIR/debug/$bin" "tilt/.build/$bin"
    echo "staged $bin"
  fi
done
