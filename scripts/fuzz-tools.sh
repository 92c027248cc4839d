#!/usr/bin/env bash
# Installs the schema fuzzer of `make test` (tests/e2e/fuzz.rs): schemathesis,
# pinned in tests/fuzz/requirements.txt, in a Python venv under
# ~/.cache/orderflow/fuzz-tools (never inside the clone). The venv is named after
# the pins, so a pin change never reuses a stale one. A second run installs nothing.
# Usage: fuzz-tools.sh          install what is missing, print where it is
#        fuzz-tools.sh --env    the same, then print SCHEMATHESIS=... for eval
source "$(dirname "$0")/lib.sh"

TOOLS_DIR="$STATE_DIR/fuzz-tools"
REQUIREMENTS="$ROOT/tests/fuzz/requirements.txt"
REQ_HASH=$(sha256sum "$REQUIREMENTS" | cut -c1-12)
VENV="$TOOLS_DIR/venv-$REQ_HASH"

# Progress goes to stderr so that `--env` output stays machine-readable.
exec 3>&1 1>&2

ensure_venv() {
  if [ -f "$VENV/.complete" ]; then
    ok "schemathesis (cached in $VENV)"
    return
  fi
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  step "creating the Python venv of the schema fuzzer (schemathesis, about a minute)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  "$VENV/bin/schemathesis" --version >/dev/null || die "schemathesis did not install into $VENV"
  touch "$VENV/.complete"
  local old
  for old in "$TOOLS_DIR"/venv-*; do
    [ "$old" = "$VENV" ] || rm -rf "$old"
  done
  ok "schemathesis installed in $VENV"
}

mkdir -p "$TOOLS_DIR"
ensure_venv
if [ "${1:-}" = "--env" ]; then
  printf 'SCHEMATHESIS=%q\n' "$VENV/bin/schemathesis" >&3
fi
