#!/usr/bin/env bash
# bench/state.sh — the state backends side by side: a no-op deploy of N
# machines (default 30) with the state in NixOps' SQLite file, and with the
# same deployment moved (export | import) into a PostgreSQL database on a
# private server on 127.0.0.1 (tests/postgres/server.sh, fsync on).
#
# One fleet of N test hosts; the first deploy (from SQLite) is not timed.
# Then R rounds (default 5), each a no-op deploy from SQLite and one from
# PostgreSQL, SSH master connections warm (so the state's share shows), and
# the medians are reported: wall time and the deployer's CPU (the tool and
# its children, bash `times`; the PostgreSQL server's own CPU is not in it,
# and is reported apart from the server's process times).
#
# usage: bench/state.sh [-n N] [-r R] [-B]
#   -B   do not mask root's ~/.bashrc on the test hosts (see bench/lib.sh)
# Needs root (the test fleet does) and Debian's postgresql.
set -euo pipefail

N=${N:-30}
R=${R:-5}
MASK_BASHRC=1
ARGS=("$@")
while getopts n:r:Bh opt; do
  case $opt in
    n) N=$OPTARG ;;
    r) R=$OPTARG ;;
    B) MASK_BASHRC=0 ;;
    *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
[[ $N =~ ^[1-9][0-9]*$ && $R =~ ^[1-9][0-9]*$ ]] || { echo "state.sh: bad -n or -r" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "state.sh: must run as root (test fleet)" >&2; exit 1; }

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mask_bashrc "$MASK_BASHRC" "${ARGS[@]}"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
FLEET_SH=$REPO/tests/fleet/fleet.sh
PG_SH=$REPO/tests/postgres/server.sh
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

log "building nixops (cargo build --release)"
(cd "$REPO" && cargo build --release --quiet) >&2
NIXOPS=$REPO/target/release/nixops

WORK=$(mktemp -d /tmp/nixops-bench-state.XXXXXX)
PGDIR=$(mktemp -d /tmp/nixops-bench-pg.XXXXXX)  # the server's user must reach it
cleanup() {
  set +e
  "$FLEET_SH" stop "$WORK/fleet" >/dev/null 2>&1
  bash "$PG_SH" stop "$PGDIR" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export NIX_PATH=nixpkgs=$REPO/tests/nixpkgs
bash "$REPO/tests/nixpkgs/link-lib.sh" >/dev/null
source "$REPO/scripts/offline-nix.sh"
unset NIXOPS_DEPLOYMENT NIXOPS_STATE PGPASSWORD PGHOST PGPORT PGUSER PGDATABASE

NAMES=()
for ((i = 1; i <= N; i++)); do NAMES+=("$(printf 'm%0*d' "${#N}" "$i")"); done
log "starting $N test hosts and a PostgreSQL server"
"$FLEET_SH" start "$WORK/fleet" "${NAMES[@]}" >/dev/null
PG_FSYNC=on NIXOPS_TEST_PG_PASSWORD=bench-password bash "$PG_SH" start "$PGDIR"
PORT=$(cat "$PGDIR/port")
psql -X -q -h "$(cat "$PGDIR/socket-dir")" -p "$PORT" -U postgres -d postgres \
  -c "create database bench owner nixops" >/dev/null
mkdir -p "$WORK/home"
printf '127.0.0.1:%s:*:nixops:bench-password\n' "$PORT" >"$WORK/home/.pgpass"
chmod 600 "$WORK/home/.pgpass"
SQLITE=$WORK/state.nixops
PG=postgresql://nixops@127.0.0.1:$PORT/bench

{
  echo "{"
  echo "  network.description = \"bench: $N machines\";"
  for n in "${NAMES[@]}"; do
    echo "  $n = { ... }: { deployment.targetHost = \"$n\"; services.openssh.enable = true; };"
  done
  echo "}"
} >"$WORK/network.nix"

nixops() {  # nixops STATE ARGS...
  local state=$1; shift
  env HOME="$WORK/home" NIXOPS_STATE="$state" NIXOPS_SSH_PERSIST=600 \
    "$FLEET_SH" run "$WORK/fleet" -- "$NIXOPS" "$@"
}

log "first deploy (not timed), then moving the deployment to PostgreSQL"
nixops "$SQLITE" create "$WORK/network.nix" -d bench >/dev/null 2>&1
nixops "$SQLITE" deploy >"$WORK/first.log" 2>&1 || { tail -n 30 "$WORK/first.log" >&2; exit 1; }
nixops "$SQLITE" export --all | nixops "$PG" import 2>/dev/null

# server_cpu: the PostgreSQL server's processes' user+system seconds so far
# (those that ended are in the postmaster's children's times).
server_cpu() {
  local pid ticks=0 t
  pid=$(head -n 1 "$PGDIR/data/postmaster.pid")
  for t in $(pgrep -s "$(ps -o sid= -p "$pid")" 2>/dev/null || echo "$pid"); do
    ticks=$((ticks + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$t/stat" 2>/dev/null || echo 0)))
  done
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# timed STATE: one no-op deploy; sets WALL and CPU.
timed() {
  local t0 t1 logf=$WORK/round.log
  t0=$EPOCHREALTIME
  ( rc=0; ( nixops "$1" deploy ) </dev/null >"$logf" 2>&1 || rc=$?; times >"$logf.times"; exit $rc ) \
    || { tail -n 30 "$logf" >&2; exit 1; }
  t1=$EPOCHREALTIME
  WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  CPU=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); s += p[1] * 60 + p[2] } printf "%.2f", s }' "$logf.times")
}

declare -A W C
SERVER=0
nixops "$PG" deploy >/dev/null 2>&1  # warm both once
for ((r = 1; r <= R; r++)); do
  timed "$SQLITE"; W[sqlite]+="$WALL "; C[sqlite]+="$CPU "
  s0=$(server_cpu)
  timed "$PG"; W[pg]+="$WALL "; C[pg]+="$CPU "
  SERVER=$(awk -v a="$SERVER" -v b="$s0" -v c="$(server_cpu)" 'BEGIN { printf "%.2f", a + c - b }')
  log "round $r/$R done"
done
histories=$(nixops "$PG" history --json | grep -c '"action": "deploy"')

median() { tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "state backends, no-op deploy of $N machines (warm ssh), median of $R — $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "$BASHRC_NOTE"
printf '%-22s %9s %9s\n' state "wall s" "CPU s"
printf '%-22s %9s %9s\n' "SQLite file" "$(median "${W[sqlite]}")" "$(median "${C[sqlite]}")"
printf '%-22s %9s %9s\n' "PostgreSQL (local)" "$(median "${W[pg]}")" "$(median "${C[pg]}")"
echo "(CPU: the deployer and its children; the PostgreSQL server used $(awk -v s="$SERVER" -v r="$R" 'BEGIN { printf "%.2f", s / r }') s per deploy on top)"
echo "PostgreSQL history holds $histories deploy entries"
