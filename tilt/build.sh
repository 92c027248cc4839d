#!/usr/bin/env bash
# Tilt's `compile` resource: builds the images' binaries as Linux binaries for
# the kind node's CPU, whatever the host (Linux x86_64/arm64, macOS Intel/Apple
# silicon), and stages each in tilt/.build/ for the small runtime image
# (tilt/Dockerfile). A binary is copied only when it changed, so Tilt rebuilds
# only the images whose binary did.
#
# How: `cargo zigbuild --target <arch>-unknown-linux-gnu.<glibc>` (cargo-zigbuild
# and Zig from PyPI, pinned in tilt/requirements.txt, installed by
# scripts/zig-tools.sh): Zig links against the glibc named in the target, never
# the host's, so the binary runs on any base image with that glibc or newer. The
# build stays on the host, where cargo's incremental cache makes a one-line change
# a seconds-long rebuild (a Rust build inside `docker build` starts cold).
#
# The node's architecture, first found wins: $ORDERFLOW_TILT_ARCH (amd64, arm64,
# x86_64 or aarch64), the node of the running kind cluster, the Docker engine's
# (kind's node images run on the engine's own platform), `uname -m`. A target
# other than the host's needs its standard library once:
# `rustup target add aarch64-unknown-linux-gnu` (or x86_64-unknown-linux-gnu).
#
# Usage: tilt/build.sh [BIN...]           build and stage BIN (default: all three)
#        tilt/build.sh --print [BIN...]   print the stage dir and the cargo command only
# ORDERFLOW_TILT_STAGE_DIR stages elsewhere (the tests use it).
set -euo pipefail
cd "$(dirname "$0")/.."

BINS=(order-service delivery-service orderflow-controller)
# Debian 12's glibc, as in the release image (distroless cc-debian12); the Tilt
# image's Debian 13 (2.41) is newer, so the binaries run there too.
GLIBC=2.36
KIND_CONTEXT=kind-orderflow
STAGE_DIR="${ORDERFLOW_TILT_STAGE_DIR:-tilt/.build}"
# The shared target dir: a cross build lands in target/<triple>/, beside (never
# over) the host build of `make run` and `make test`.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orderflow/target}"
# No debug info in the workspace's crates: smaller images, faster pushes.
export CARGO_PROFILE_DEV_DEBUG=0 SQLX_OFFLINE=true

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# node_arch: the kind node's architecture as its first source names it.
node_arch() {
  local arch
  if [ -n "${ORDERFLOW_TILT_ARCH:-}" ]; then
    echo "$ORDERFLOW_TILT_ARCH"
    return
  fi
  if arch=$(kubectl --context "$KIND_CONTEXT" get nodes --request-timeout=5s \
    -o jsonpath='{.items[0].status.nodeInfo.architecture}' 2>/dev/null) && [ -n "$arch" ]; then
    echo "$arch"
    return
  fi
  if arch=$(docker info --format '{{.Architecture}}' 2>/dev/null) && [ -n "$arch" ]; then
    echo "$arch"
    return
  fi
  uname -m
}

# rust_triple ARCH: the Rust target of a Linux node of that architecture.
rust_triple() {
  case "$1" in
    amd64 | x86_64) echo x86_64-unknown-linux-gnu ;;
    arm64 | aarch64) echo aarch64-unknown-linux-gnu ;;
    *) die "the kind node's architecture '$1' is not supported (amd64 or arm64; set ORDERFLOW_TILT_ARCH)" ;;
  esac
}

# require_target TRIPLE: the toolchain has the target's standard library.
require_target() {
  command -v rustup >/dev/null || return 0
  rustup target list --installed | grep -qx "$1" && return 0
  die "the kind node needs $1 binaries and this toolchain lacks that target: run
  rustup target add $1
once (in this repository, so it goes to the toolchain of rust-toolchain.toml), then retry"
}

PRINT=0
if [ "${1:-}" = "--print" ]; then
  PRINT=1
  shift
fi
[ $# -eq 0 ] || BINS=("$@")
TRIPLE=$(rust_triple "$(node_arch)")
CMD=(cargo zigbuild --target "$TRIPLE.$GLIBC")
for bin in "${BINS[@]}"; do CMD+=(--bin "$bin"); done
if [ $PRINT -eq 1 ]; then
  echo "stage $STAGE_DIR"
  echo "${CMD[*]}"
  exit 0
fi

require_target "$TRIPLE"
eval "$(scripts/zig-tools.sh --env)"
# cargo finds `cargo-zigbuild` on PATH, and cargo-zigbuild runs Zig as `python3 -m ziglang`.
export PATH="$ZIG_TOOLS_BIN:$PATH"
echo "building ${BINS[*]} for $TRIPLE (glibc $GLIBC)"
"${CMD[@]}"
mkdir -p "$STAGE_DIR"
for bin in "${BINS[@]}"; do
  built="$CARGO_TARGET_DIR/$TRIPLE/debug/$bin"
  if ! cmp -s "$built" "$STAGE_DIR/$bin"; then
    install -m 0755 "$built" "$STAGE_DIR/$bin"
    echo "staged $bin"
  fi
done
