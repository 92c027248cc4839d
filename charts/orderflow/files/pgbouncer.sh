#!/bin/sh
# Start script of the chart's PgBouncer (pgbouncer.enabled): writes the user
# list from the controller's database Secrets (ORDERS_DATABASE_URL and
# DELIVERY_DATABASE_URL, from <pipeline>-orders-db / -delivery-db), then runs
# PgBouncer with the ConfigMap's pgbouncer.ini. The passwords are in plain text
# in a memory-backed emptyDir: PgBouncer checks clients with SCRAM against them
# and logs in to PostgreSQL with them. A restarted pod reads rotated passwords.
set -eu
userlist=/run/pgbouncer/userlist.txt
umask 077
# Percent-decoding in plain POSIX sh (generated passwords are letters and digits;
# this is for others): %XX becomes the byte with that hex code.
decode() {
  _rest=$1
  out=
  while [ -n "$_rest" ]; do
    case $_rest in
      %[0-9A-Fa-f][0-9A-Fa-f]*)
        hex=${_rest#%}
        hex=${hex%"${hex#??}"}
        out="$out$(printf "\\$(printf '%03o' "0x$hex")")"
        _rest=${_rest#%??}
        ;;
      *)
        out="$out${_rest%"${_rest#?}"}"
        _rest=${_rest#?}
        ;;
    esac
  done
  printf '%s' "$out"
}
: >"$userlist"
for url in "$ORDERS_DATABASE_URL" "$DELIVERY_DATABASE_URL"; do
  rest=${url#*://}
  creds=${rest%%@*}
  user=${creds%%:*}
  pass=${creds#*:}
  pass=$(decode "$pass")
  printf '"%s" "%s"\n' "$(printf '%s' "$user" | sed 's/"/""/g')" "$(printf '%s' "$pass" | sed 's/"/""/g')" >>"$userlist"
done
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
