#!/usr/bin/env bash
# A private PostgreSQL server for the tests and benchmarks: its own data
# directory under DIR, listening on 127.0.0.1 only, on a free port, with its
# Unix socket in DIR; run as an unprivileged user (PostgreSQL refuses root).
#
#   server.sh start DIR      start it; DIR/port, DIR/socket say where it is
#   server.sh stop DIR       stop it and remove DIR
#   server.sh supervise DIR  start it, print "ready", stop it when stdin closes
#                            (so it dies with the test process that started it)
#
# Roles: "postgres" (superuser, no password, Unix socket only) and "nixops"
# (password $NIXOPS_TEST_PG_PASSWORD, TCP with scram-sha-256), which may
# create databases. $PG_FSYNC=on keeps fsync (benchmarks); tests turn it off.
set -euo pipefail

PASSWORD=${NIXOPS_TEST_PG_PASSWORD:-nixops-test-password}

die() { echo "postgres server: $*" >&2; exit 1; }

bindir() {
  local d
  d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [[ -n $d && -x $d/pg_ctl ]]; then echo "$d"; return; fi
  d=$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/x)")
  [[ -x $d/pg_ctl ]] || die "PostgreSQL's server programs (pg_ctl, initdb) are not installed; scripts/install-deps.sh installs Debian's postgresql"
  echo "$d"
}

# The user the server runs as: ourselves unless root; then the package's
# "postgres" user, or one made for it.
server_user() {
  if (( EUID != 0 )); then id -un; return; fi
  if getent passwd postgres >/dev/null; then echo postgres; return; fi
  getent passwd nixops-pg >/dev/null \
    || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nixops-pg
  echo nixops-pg
}

as_user() {
  local user=$1; shift
  if [[ $user == "$(id -un)" ]]; then "$@"; else runuser -u "$user" -- "$@"; fi
}

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    [[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]] && { echo "$p"; return; }
  done
  die "no free port found"
}

start() {
  local dir=$1 bin user port
  bin=$(bindir)
  user=$(server_user)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  mkdir -p "$dir/socket"
  chown "$user" "$dir" "$dir/socket"
  chmod 0755 "$dir"
  as_user "$user" test -x "$dir" || die "$user cannot reach $dir (a parent directory is private)"
  local pwfile="$dir/pw"
  printf '%s\n' "$PASSWORD" >"$pwfile"
  chown "$user" "$pwfile"
  as_user "$user" "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  local fsync=${PG_FSYNC:-off}
  local ok=
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    if as_user "$user" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-p $port -k $dir/socket -c listen_addresses=127.0.0.1 -c fsync=$fsync -c full_page_writes=$fsync -c synchronous_commit=$fsync" \
      start >/dev/null 2>&1; then
      ok=1; break
    fi
  done
  [[ -n $ok ]] || { cat "$dir/server.log" >&2 || true; die "the server did not start"; }
  echo "$port" >"$dir/port"
  echo "$dir/socket" >"$dir/socket-dir"
  "$bin/psql" -X -q -h "$dir/socket" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "create role nixops login createdb password '$PASSWORD'" >/dev/null
  rm -f "$pwfile"
}

stop() {
  local dir=$1 bin user
  [[ -d $dir/data ]] || { rm -rf "$dir"; return 0; }
  bin=$(bindir)
  user=$(server_user)
  as_user "$user" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case ${1:-} in
  start) (($# == 2)) || die "usage: $0 start DIR"; start "$2"; echo "PostgreSQL for tests on 127.0.0.1:$(cat "$2/port")" >&2 ;;
  stop) (($# == 2)) || die "usage: $0 stop DIR"; stop "$2" ;;
  supervise)
    (($# == 2)) || die "usage: $0 supervise DIR"
    trap 'stop "$2"' EXIT
    start "$2"
    echo ready
    cat >/dev/null || true
    ;;
  *) die "usage: $0 start|stop|supervise DIR" ;;
esac
