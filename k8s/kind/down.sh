#!/usr/bin/env bash
# `make kind-down`: deletes the kind cluster `orderflow` and the local registry
# container that `make kind-up` created (images pushed to it are lost).
set -euo pipefail
command -v kind >/dev/null && kind delete cluster --name orderflow
command -v docker >/dev/null && docker rm -f kind-registry >/dev/null 2>&1 || true
echo "kind cluster orderflow and registry kind-registry removed"
