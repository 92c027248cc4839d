#!/usr/bin/env bash
# Installs the cross-linker of the Tilt loop (tilt/build.sh): cargo-zigbuild and
# Zig (PyPI ziglang), pinned in tilt/requirements.txt, in a Python venv under
# ~/.cache/orderflow/zig-tools (never inside the clone). The venv is named after
# the pins, so a pin change never reuses a stale one; a second run installs
# nothing. Runs on Linux and macOS (bash 3.2, no sha256sum needed).
# Usage: zig-tools.sh          install what is missing, print where it is
#        zig-tools.sh --env    the same, then print ZIG_TOOLS_BIN=... for eval
source "$(dirname "$0")/lib.sh"

TOOLS_DIR="$STATE_DIR/zig-tools"
REQUIREMENTS="$ROOT/tilt/requirements.txt"
REQ_HASH=$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()[:12])' "$REQUIREMENTS")
VENV="$TOOLS_DIR/venv-$REQ_HASH"

# Progress goes to stderr so that `--env` output stays machine-readable.
exec 3>&1 1>&2

mkdir -p "$TOOLS_DIR"
pinned_venv "$VENV" "the Linux cross-linker (cargo-zigbuild, Zig)" --no-deps -r "$REQUIREMENTS"
# --no-deps above: the file must hold the whole closure, which pip check proves.
if ! "$VENV/bin/pip" check >/dev/null; then
  "$VENV/bin/pip" check >&2 || true
  rm -rf "$VENV"
  die "tilt/requirements.txt is missing a dependency of the packages it pins (see above)"
fi
"$VENV/bin/cargo-zigbuild" --version >/dev/null || die "cargo-zigbuild did not install into $VENV"
"$VENV/bin/python" -m ziglang version >/dev/null || die "Zig (ziglang) did not install into $VENV"
if [ "${1:-}" = "--env" ]; then
  printf 'ZIG_TOOLS_BIN=%q\n' "$VENV/bin" >&3
fi
