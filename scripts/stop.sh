#!/usr/bin/env bash
# Stops what `make run` started: the services, the SQS emulator, and PostgreSQL
# or Redis only if `make run` was the one that started them.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/pgbouncer.sh"

stop_pidfile() {
  local name=$1 pidfile="$RUN_DIR/$1.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill -TERM "$(cat "$pidfile")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    ok "$name stopped"
  fi
  rm -f "$pidfile"
}

step "stopping orderflow"
stop_pidfile delivery-service
stop_pidfile order-service
pgbouncer_stop
"$ROOT/scripts/sqs-emulator.sh" stop
if [ -f "$RUN_DIR/started-redis" ]; then
  stop_pidfile redis
  rm -f "$RUN_DIR/started-redis"
fi
if [ -f "$RUN_DIR/started-postgres" ]; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main stop && ok "PostgreSQL stopped"
  rm -f "$RUN_DIR/started-postgres"
fi
