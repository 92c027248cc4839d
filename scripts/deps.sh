#!/usr/bin/env bash
# Makes sure PostgreSQL, Redis and the SQS emulator run on loopback: installs
# (apt, PyPI) what is missing and starts what is down. Never restarts or
# reconfigures a server that is already running. Usage: deps.sh [--no-sqs]
source "$(dirname "$0")/lib.sh"

ensure_postgres() {
  if port_open 5432; then ok "PostgreSQL is running on 127.0.0.1:5432"; return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    step "installing PostgreSQL (apt)"
    apt_install postgresql
  fi
  step "starting PostgreSQL"
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  # Local development: trust connections from loopback, as the local defaults (docs/CONFIGURATION.md) assume.
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "orderflow-dev" "$hba" 2>/dev/null; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust # orderflow-dev\nhost all all ::1/128 trust # orderflow-dev' "$hba"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
  touch "$RUN_DIR/started-postgres"
  wait_port 5432 30 PostgreSQL
  ok "PostgreSQL started"
}

ensure_redis() {
  if port_open 6379; then ok "Redis is running on 127.0.0.1:6379"; return; fi
  if ! command -v redis-server >/dev/null; then
    step "installing Redis (apt)"
    apt_install redis-server
  fi
  step "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log"
  touch "$RUN_DIR/started-redis"
  wait_port 6379 10 Redis
  ok "Redis started"
}

ensure_tools() {
  local missing=()
  command -v curl >/dev/null || missing+=(curl)
  command -v psql >/dev/null || missing+=(postgresql-client)
  command -v python3 >/dev/null || missing+=(python3 python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]} (apt)"
    apt_install "${missing[@]}"
  fi
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
}

# The TLS tests start a private server (testkit::TlsPostgres, initdb and pg_ctl)
# with a CA they make (openssl): needed even when a PostgreSQL already runs.
ensure_tls_test_tools() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v openssl >/dev/null || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]} (apt)"
    apt_install "${missing[@]}"
  fi
}

ensure_tools
ensure_postgres
ensure_tls_test_tools
ensure_redis
[ "${1:-}" = "--no-sqs" ] || "$ROOT/scripts/sqs-emulator.sh" start
