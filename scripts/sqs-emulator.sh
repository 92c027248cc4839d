#!/usr/bin/env bash
# Installs and starts the SQS emulator (LocalStack's SQS, host mode, no Docker) on
# 127.0.0.1:$SQS_PORT. Usage: sqs-emulator.sh install|start|stop|status
#
# LocalStack is pinned to 4.7.0, the last release that runs on Python 3.11, and
# its dependencies are resolved as of that release's date (uv --exclude-newer), so
# later releases of its dependencies cannot break the install.
source "$(dirname "$0")/lib.sh"

LS_VERSION=4.7.0
LS_DEPS_DATE=2025-08-05
VENV="$STATE_DIR/localstack-$LS_VERSION"
UV_VENV="$STATE_DIR/uv"
PIDFILE="$RUN_DIR/sqs-emulator.pid"
LOG="$RUN_DIR/sqs-emulator.log"

install() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import localstack' 2>/dev/null; then
    ok "LocalStack $LS_VERSION already installed"
    return
  fi
  command -v python3 >/dev/null || apt_install python3 python3-venv
  step "installing LocalStack $LS_VERSION (SQS emulator) into $VENV"
  if [ ! -x "$UV_VENV/bin/uv" ]; then
    python3 -m venv "$UV_VENV"
    "$UV_VENV/bin/pip" install -q 'uv==0.8.4'
  fi
  "$UV_VENV/bin/uv" venv -q --python "$(command -v python3)" "$VENV"
  VIRTUAL_ENV="$VENV" "$UV_VENV/bin/uv" pip install -q --exclude-newer "$LS_DEPS_DATE" \
    "localstack-core[runtime]==$LS_VERSION"
  ok "LocalStack installed"
}

healthy() { curl -fsS "http://127.0.0.1:$SQS_PORT/_localstack/health" 2>/dev/null | grep -q '"sqs"'; }

start() {
  if healthy; then ok "SQS emulator already running on 127.0.0.1:$SQS_PORT"; return; fi
  port_open "$SQS_PORT" && die "127.0.0.1:$SQS_PORT is taken by something that is not LocalStack"
  install
  step "starting the SQS emulator on 127.0.0.1:$SQS_PORT"
  mkdir -p "$STATE_DIR/localstack-data"
  (
    cd "$STATE_DIR"
    SERVICES=sqs GATEWAY_LISTEN="127.0.0.1:$SQS_PORT" LOCALSTACK_HOST="127.0.0.1:$SQS_PORT" \
      DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 DNS_ADDRESS=0 EAGER_SERVICE_LOADING=1 \
      SQS_ENDPOINT_STRATEGY=path LOCALSTACK_VOLUME_DIR="$STATE_DIR/localstack-data" \
      FILESYSTEM_ROOT="$STATE_DIR/localstack-data/fs" \
      nohup "$VENV/bin/python" -m localstack.runtime.main >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
  )
  local i
  for ((i = 0; i < 600; i++)); do
    healthy && { ok "SQS emulator ready (log: $LOG)"; return; }
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -20 "$LOG" >&2; die "the SQS emulator exited"; }
    sleep 0.1
  done
  tail -20 "$LOG" >&2
  die "the SQS emulator did not become healthy within 60s"
}

stop() {
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")" && ok "SQS emulator stopped"
  fi
  rm -f "$PIDFILE"
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) healthy && echo "running" || { echo "not running"; exit 1; } ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
