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

mkdir -p "$TOOLS_DIR"
pinned_venv "$VENV" "the schema fuzzer (schemathesis)" -r "$REQUIREMENTS"
"$VENV/bin/schemathesis" --version >/dev/null || die "schemathesis did not install into $VENV"
if [ "${1:-}" = "--env" ]; then
  printf 'SCHEMATHESIS=%q\n' "$VENV/bin/schemathesis" >&3
fi
