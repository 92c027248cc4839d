#!/usr/bin/env bash
# `make test-k8s`: the offline Kubernetes checks of the chart and the image
# (charts/tests/: helm lint and template, values schema, kubernetes-validate,
# CRD schemas, checkov, hadolint, assertions on the rendered output). No cluster
# is needed. Tools come from scripts/k8s-tools.sh (cached in ~/.cache/orderflow).
# Extra arguments go to pytest, e.g. `scripts/test-k8s.sh -k ingress`.
source "$(dirname "$0")/lib.sh"

eval "$("$ROOT/scripts/k8s-tools.sh" --env)"
export HELM PROMTOOL
# No __pycache__ in the clone.
export PYTHONDONTWRITEBYTECODE=1
step "chart checks (helm $("$HELM" version --short), $("$VENV/bin/python" -m pytest --version 2>&1))"
cd "$ROOT/charts/tests"
exec "$VENV/bin/python" -m pytest "$@"
