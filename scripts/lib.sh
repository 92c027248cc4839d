# Shared helpers for the scripts in this folder: progress output, state paths and
# "is it listening" checks. Sourced, never run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Everything a local run installs or writes lives outside the clone, so a fresh
# clone stays clean and CI caches survive between runs.
STATE_DIR="${ORDERFLOW_STATE_DIR:-$HOME/.cache/orderflow}"
RUN_DIR="$STATE_DIR/run"
mkdir -p "$STATE_DIR" "$RUN_DIR"

SQS_PORT="${SQS_PORT:-9324}"

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
ok() { printf '    \033[32mok\033[0m %s\n' "$*"; }
warn() { printf '    \033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT SECONDS NAME: wait until the port accepts connections.
wait_port() {
  local port=$1 secs=$2 name=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    port_open "$port" && return 0
    sleep 0.1
  done
  die "$name did not start listening on 127.0.0.1:$port within ${secs}s"
}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=0
apt_install() {
  if [ $apt_updated -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# pinned_venv VENV LABEL PIP_ARGS...: the Python venv VENV with `pip install
# PIP_ARGS` (pinned requirements), made once: a venv is complete only after its
# install succeeded, and is named after its pins by the caller, so older venvs
# beside it (other pins) are dropped.
pinned_venv() {
  local venv=$1 label=$2 old
  shift 2
  if [ -f "$venv/.complete" ]; then
    ok "$label (cached in $venv)"
    return
  fi
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  step "creating the Python venv of $label (about a minute)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  touch "$venv/.complete"
  for old in "$(dirname "$venv")"/venv-*; do
    [ "$old" = "$venv" ] || rm -rf "$old"
  done
  ok "$label installed in $venv"
}
