#!/usr/bin/env bash
# bench/deploy.sh — deploy a generated network of N machines to N test hosts
# (tests/fleet) and report wall time and deploying-side CPU time per phase:
#
#   1. first deploy         fresh hosts (empty stores), fresh state
#   2. no-op, cold ssh      nothing changed; SSH master connections closed first
#   3. no-op, warm ssh      nothing changed; masters of phase 2 still open
#   4. one-line change      one line of the module every machine imports changed
#                           (masters closed first, like phase 2)
#
# With -p (bench/plan.sh), `nixops plan` of the unchanged network instead of
# phase 4, against the no-op deploys of the same run:
#   4. plan, warm ssh       right after phase 3 (its masters still open)
#   5. plan, cold ssh       masters closed first
#
# Deploying-side CPU = the tool and ALL its descendants (nix, ssh, builders,
# and the backgrounded ssh ControlMaster processes), measured with a cgroup v1
# cpuacct group; the test hosts' sshd run outside that group and are not
# counted.  Without cpuacct it falls back to bash's `times` (which misses the
# daemonized ssh masters) and says so.
#
# NIXOPS=/path/to/nixops measures that binary instead of building this
# checkout (cargo build --release) and using target/release/nixops.
#
# NIXOPS_DEPLOY_ARGS adds options to every `nixops deploy` (e.g.
# --no-magic-rollback, to compare like with like: Colmena has no rollback).
# SSH_KEX=ALG makes every ssh on the test fleets (both tools and the floor)
# use that key exchange, as a user's ~/.ssh/config would (e.g.
# curve25519-sha256, to see the cost of OpenSSH 9's post-quantum default).
#
# Colmena is measured the same way on its own fresh fleet, and the table
# shows ours/Colmena ratios: COLMENA=/path/to/colmena, or, when COLMENA is
# unset, Colmena built from ../shared/peers/colmena (COLMENA_SRC) with cargo
# into ~/.cache/nixops-bench (once per source). COLMENA=none: ours only.
#
# Ours runs with NIXOPS_TIMINGS=1, which prints where its wall time went
# (per stage: evaluation, builds, first contact, copy, activation,
# confirmation); the report shows it per phase. After ours' phases, on the
# same hosts, the floor: N fresh SSH logins in parallel as ours opens them
# (a master per host), then one `true` per host through those masters.
#
# With -t, ours is measured a second time on its own fresh fleet with
# --build-on-target (every machine builds its own system), and the table
# shows built-on-target beside built-here.
#
# The test hosts share this machine's /root, and every SSH session on them
# runs root's ~/.bashrc (bash does that for sshd-started shells).  If that
# file does expensive work (here: `pyenv init`, ~0.1 s CPU per session), it
# swamps what we measure, so by default the benchmark runs in a private
# mount namespace where ~/.bashrc is masked by an empty file (nothing on
# disk changes); -B keeps it.
#
# With -P, each phase is also sampled with `perf record -a` (the whole
# machine, deployer and test hosts alike), and PHASE.log.perf.txt beside its
# log lists where the CPU went by command name (ssh, sshd, nix-store, ...);
# the report prints each phase's top commands. Needs -k to keep the files.
#
# usage: bench/deploy.sh [-n N] [-r R] [-k] [-B] [-t] [-p] [-P]    (or N=... R=... bench/deploy.sh)
#   -n N   number of machines (default 30)
#   -r R   repeat everything R times (fresh hosts each time), report medians
#   -k     keep the work directory (logs, networks, state) under /tmp
#   -B     do not mask root's ~/.bashrc on the test hosts
#   -t     also deploy with --build-on-target and compare
#   -p     measure `nixops plan` (phases 4 and 5 above; ours only)
#   -P     profile each phase by command with perf (see above)
# Needs root (the test fleet does).
set -euo pipefail

N=${N:-30}
R=${R:-1}
KEEP=0
MASK_BASHRC=1
TARGET=0
PLAN=0
PROFILE=0
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
ARGS=("$@")
while getopts n:r:kBtpPh opt; do
  case $opt in
    n) N=$OPTARG ;;
    r) R=$OPTARG ;;
    k) KEEP=1 ;;
    B) MASK_BASHRC=0 ;;
    t) TARGET=1 ;;
    p) PLAN=1 ;;
    P) PROFILE=1 ;;
    *) usage ;;
  esac
done
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "deploy.sh: bad N: $N" >&2; exit 2; }
[[ $R =~ ^[1-9][0-9]*$ ]] || { echo "deploy.sh: bad R: $R" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "deploy.sh: must run as root (test fleet)" >&2; exit 1; }
((!PROFILE)) || command -v perf >/dev/null || { echo "deploy.sh: -P needs perf (linux-perf)" >&2; exit 1; }

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mask_bashrc "$MASK_BASHRC" "${ARGS[@]}"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
FLEET_SH=$REPO/tests/fleet/fleet.sh
NIXOPS=${NIXOPS:-}
NIXOPS_DEPLOY_ARGS=${NIXOPS_DEPLOY_ARGS:-}
BUILD_COLMENA=0
if [[ -z ${COLMENA+set} ]] && ((!PLAN)); then BUILD_COLMENA=1; fi
COLMENA=${COLMENA:-}
[[ $COLMENA == none ]] && COLMENA=

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { echo "deploy.sh: $*" >&2; exit 1; }

if ((PLAN)) && { [[ -n $COLMENA ]] || ((TARGET)); }; then
  die "-p measures nixops plan of ours only: not with COLMENA or -t"
fi
resolve_tools
if ((BUILD_COLMENA)); then build_colmena; fi

# ---------------------------------------------------------------- setup

WORK=$(mktemp -d /tmp/nixops-bench.XXXXXX)
RUN_ID=${WORK##*.}
export NIX_PATH=nixpkgs=$REPO/tests/nixpkgs
bash "$REPO/tests/nixpkgs/link-lib.sh" >/dev/null  # says which lib
source "$REPO/scripts/offline-nix.sh"
unset NIXOPS_DEPLOYMENT NIXOPS_STATE
# Where nixops keeps its control sockets (see src/ssh/mod.rs).
if [[ -n ${XDG_RUNTIME_DIR:-} && -d $XDG_RUNTIME_DIR ]]; then
  CTL_DIR=$XDG_RUNTIME_DIR/nixops-ssh-$(id -u)
else
  CTL_DIR=/tmp/nixops-ssh-$(id -u)
fi
touch "$WORK/start-marker"

# cgroup v1 cpuacct groups: CG for the deploying side, CG_HOSTS for the test
# hosts (sshd and everything it runs; only reported, never added to the
# deployer's CPU).  The root group's usage minus both is "other" CPU: work
# outside the benchmark, which makes wall times unreliable.
CG='' CG_HOSTS='' CG_ROOT=/sys/fs/cgroup/cpuacct
CPU_METHOD="bash 'times' (no cgroup cpuacct: daemonized ssh masters NOT counted)"
if [[ -w $CG_ROOT && -r $CG_ROOT/cpuacct.usage ]]; then
  if mkdir "$CG_ROOT/nixops-bench-$RUN_ID" 2>/dev/null; then
    CG=$CG_ROOT/nixops-bench-$RUN_ID
    CPU_METHOD="cgroup v1 cpuacct ($CG): tool + all descendants incl. ssh masters; test hosts excluded"
    mkdir "$CG_ROOT/nixops-bench-$RUN_ID-hosts" 2>/dev/null && CG_HOSTS=$CG_ROOT/nixops-bench-$RUN_ID-hosts
  fi
fi

FLEETS=()
cleanup() {
  set +e
  close_masters
  local f
  for f in "${FLEETS[@]}"; do "$FLEET_SH" stop "$f" >/dev/null 2>&1; done
  [[ -n $CG ]] && rmdir "$CG" 2>/dev/null
  [[ -n $CG_HOSTS ]] && rmdir "$CG_HOSTS" 2>/dev/null
  if ((KEEP)); then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Closes the SSH master connections left by the deploying side: in cgroup
# mode every process still in our group once the tool has exited is one of
# them (all were started by this script); otherwise `ssh -O exit` on the
# control sockets created since this benchmark started.
# shellcheck disable=SC2086 # $pids: a list of pids, split on purpose
close_masters() {
  local pids i s
  if [[ -n $CG ]]; then
    for ((i = 0; i < 100; i++)); do
      pids=$(<"$CG/cgroup.procs")
      [[ -z $pids ]] && return 0
      if ((i < 40)); then ((i == 0)) && kill -TERM $pids 2>/dev/null; else kill -KILL $pids 2>/dev/null; fi
      sleep 0.05
    done
    echo "deploy.sh: could not empty $CG" >&2
  else
    [[ -d $CTL_DIR ]] || return 0
    while IFS= read -r s; do
      ssh -o ControlPath="$s" -O exit bench-dummy >/dev/null 2>&1 || true
    done < <(find "$CTL_DIR" -maxdepth 1 -type s -newer "$WORK/start-marker" 2>/dev/null)
  fi
  return 0
}

# run_phase LOG CMD... — runs CMD (output to LOG), setting WALL and CPU
# (seconds, as decimals), HCPU (test hosts' CPU) and OCPU (CPU of everything
# else on the machine) when cgroups are available, and RC.
run_phase() {
  local logf=$1; shift
  local t0 t1 u0=0 u1=0 h0=0 h1=0 r0=0 r1=0
  RC=0 HCPU=- OCPU=-
  [[ -n $CG ]] && u0=$(<"$CG/cpuacct.usage") r0=$(<"$CG_ROOT/cpuacct.usage")
  [[ -n $CG_HOSTS ]] && h0=$(<"$CG_HOSTS/cpuacct.usage")
  local perf_pid="" forks0=""
  if ((PROFILE)); then
    forks0=$(awk '$1 == "processes" { print $2 }' /proc/stat)
    perf record -a -F 499 -q -o "$logf.perf" -- sleep 100000 2>/dev/null &
    perf_pid=$!
    sleep 0.3
  fi
  t0=$EPOCHREALTIME
  if [[ -n $CG ]]; then
    ( echo "$BASHPID" > "$CG/cgroup.procs"; "$@" ) </dev/null >"$logf" 2>&1 || RC=$?
  else
    ( rc=0; ( "$@" ) </dev/null >"$logf" 2>&1 || rc=$?; times > "$logf.times"; exit $rc ) || RC=$?
  fi
  t1=$EPOCHREALTIME
  if [[ -n $perf_pid ]]; then
    pkill -INT -P "$perf_pid" sleep 2>/dev/null || kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
    perf report -i "$logf.perf" --sort comm --stdio 2>/dev/null |
      awk '/^ +[0-9.]+%/ { print $1, $2 }' > "$logf.perf.txt" || true
    rm -f "$logf.perf"
    log "  $(basename "$logf" .log) CPU by command: $(head -8 "$logf.perf.txt" | tr '\n' ' ')"
    log "  $(basename "$logf" .log) processes started: $(($(awk '$1 == "processes" { print $2 }' /proc/stat) - forks0))"
  fi
  WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  if [[ -n $CG ]]; then
    u1=$(<"$CG/cpuacct.usage") r1=$(<"$CG_ROOT/cpuacct.usage")
    CPU=$(awk -v a="$u0" -v b="$u1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    if [[ -n $CG_HOSTS ]]; then
      h1=$(<"$CG_HOSTS/cpuacct.usage")
      HCPU=$(awk -v a="$h0" -v b="$h1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
      OCPU=$(awk -v a="$r0" -v b="$r1" -v u="$((u1 - u0))" -v h="$((h1 - h0))" \
        'BEGIN { o = (b - a - u - h) / 1e9; printf "%.2f", o < 0 ? 0 : o }')
    fi
  else
    # second line of `times`: children's user and system time, "XmY.YYYs"
    CPU=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); s += p[1] * 60 + p[2] } printf "%.2f", s }' "$logf.times")
  fi
  if ((RC != 0)); then
    echo "deploy.sh: command failed (exit $RC): $*" >&2
    tail -n 30 "$logf" >&2
    exit 1
  fi
}

NAMES=()
width=${#N}
for ((i = 1; i <= N; i++)); do NAMES+=("$(printf 'm%0*d' "$width" "$i")"); done

# The module every machine imports (identical for both tools; `nonce` makes
# each tool's systems distinct so neither finds the other's builds).
# The network's files live in net/ of the run's directory, as in a project:
# the fleet, the logs and the state beside them change with every phase,
# which the evaluation cache would have to count as possible inputs.
write_machine_module() {
  local dir=$1 nonce=$2
  mkdir -p "$dir/net"
  cat > "$dir/net/machine.nix" <<EOF
# Generated by bench/deploy.sh.
name: { ... }: {
  deployment.targetHost = name;
  deployment.targetUser = "root";
  networking.hostName = name;
  services.openssh.enable = true;
  networking.firewall.allowedTCPPorts = [ 22 80 443 ];
  environment.etc."bench/run".text = "$nonce";
  environment.etc."bench/motd".text = "Welcome to \${name}, revision 1";
}
EOF
}
# Phase 4: the one-line change.
change_machine_module() {
  sed -i 's/revision 1/revision 2/' "$1/net/machine.nix"
  grep -q 'revision 2' "$1/net/machine.nix"
}

start_fleet() {
  local f=$1
  FLEETS+=("$f")
  log "starting $N test hosts in $f"
  if [[ -n $CG_HOSTS ]]; then
    ( echo "$BASHPID" > "$CG_HOSTS/cgroup.procs"; exec "$FLEET_SH" start "$f" "${NAMES[@]}" ) >/dev/null
  else
    "$FLEET_SH" start "$f" "${NAMES[@]}" >/dev/null
  fi
  # SSH_KEX: every ssh on this fleet (both tools, the floor) uses that key
  # exchange, as a user's ~/.ssh/config would make it.
  if [[ -n ${SSH_KEX:-} ]]; then
    printf '\nHost *\n  KexAlgorithms %s\n' "$SSH_KEX" >> "$f/ssh/config"
  fi
}

# Every host runs a system whose motd says revision $2.
check_hosts() {
  local f=$1 rev=$2 n bad=0
  for n in "${NAMES[@]}"; do
    if ! "$FLEET_SH" exec "$f" "$n" -- grep -q "revision $rev" /run/current-system/etc/bench/motd 2>/dev/null; then
      echo "deploy.sh: host $n does not run revision $rev" >&2; bad=1
    fi
  done
  ((bad == 0)) || exit 1
}

declare -A W C H O  # [tool,phase]: wall, deployer CPU, hosts' CPU, other CPU; space-separated, one per run
PHASES=(first cold warm change)
((PLAN)) && PHASES=(first cold warm plan-warm plan-cold)
declare -A LABEL=([first]="first deploy" [cold]="no-op, cold ssh" [warm]="no-op, warm ssh" [change]="one-line change"
  [plan-warm]="plan, warm ssh" [plan-cold]="plan, cold ssh"
  [floor-fresh]="floor: N logins" [floor-warm]="floor: N via master"
  [floor-confirm]="floor: N confirmations")
declare -A TM  # [phase]: ours' stage timings, one "a b c ..." per run, ';'-separated

# split_timings LOG — from the NIXOPS_TIMINGS lines of a deploy's log, the
# columns of the report's "where the time went" table, space-separated (-
# when a stage did not happen): last machine evaluated, Nix builds run, their
# summed wall time, last build's end, last machine reached, last copy's end,
# activation's start and end, median activation and confirmation of one
# machine, end.
split_timings() {
  awk -F'\t' '
    $1 != "timing:" { next }
    { cnt[$2] = $3; from[$2] = $4; to[$2] = $5; med[$2] = $6; sum[$2] = $8 }
    function t(x) { return (x in to) ? to[x] : "-" }
    END {
      if (!("total" in to)) exit  # a nixops without NIXOPS_TIMINGS
      ev = "-"
      if ("evaluated" in to) ev = to["evaluated"]
      if ("evaluated (cache)" in to && (ev == "-" || to["evaluated (cache)"] > ev)) ev = to["evaluated (cache)"]
      r = "nix-store --realise"
      printf "%s %s %s %s %s %s %s %s %s %s %s\n", ev, (r in cnt) ? cnt[r] : 0, (r in sum) ? sum[r] : "-", t(r),
        t("connecting"), t("copying"),
        ("activation (all machines)" in from) ? from["activation (all machines)"] : "-", t("activation (all machines)"),
        ("activating" in med) ? med["activating"] : "-", ("confirming" in med) ? med["confirming"] : "-", t("total")
    }' "$1"
}

# floor_ssh DIR PHASE — what any deploy of N machines costs at least, on the
# same hosts: floor-fresh, N new logins in parallel, each opening a master
# connection (ControlPersist) as ours does on first contact, with ssh's
# default algorithms; floor-warm, right after, one `true` per host through
# those masters; floor-confirm, N more new logins without a master, as magic
# rollback's confirmation opens them (curve25519 preferred): with the
# first, the SSH a deploy of a change must pay (a new login per machine to
# carry it, and one more to prove it).
# shellcheck disable=SC2016 # expanded by the inner shell
floor_ssh() {
  local dir=$1
  local how=(-o ControlMaster=auto -o ControlPath="$dir/floor-ctl/%h" -o ControlPersist=60)
  [[ $2 == floor-confirm ]] && how=(-o ControlMaster=no -o ControlPath=none -o KexAlgorithms=^curve25519-sha256)
  mkdir -p "$dir/floor-ctl"
  exec "$FLEET_SH" run "$dir/fleet" -- bash -c '
    n=$1; shift
    how=("${@:1:n}"); shift "$n"
    pids=()
    for n in "$@"; do
      ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        "${how[@]}" "$n" true &
      pids+=($!)
    done
    rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    exit $rc' floor "${#how[@]}" "${how[@]}" "${NAMES[@]}"
}

# bench_tool TOOL RUN SETUP_FN DEPLOY_FN
bench_tool() {
  local tool=$1 run=$2 setup=$3 deploy=$4 dir=$WORK/$1-$2
  mkdir -p "$dir"
  start_fleet "$dir/fleet"
  "$setup" "$dir" "$tool $RUN_ID run $run"
  local p
  for p in "${PHASES[@]}"; do
    case $p in
      cold|change|plan-cold) close_masters ;;
    esac
    [[ $p == change ]] && change_machine_module "$dir"
    log "$tool (run $run/$R): ${LABEL[$p]}"
    case $p in
      plan-*) run_phase "$dir/$p.log" "${tool}_plan" "$dir" ;;
      *) run_phase "$dir/$p.log" "$deploy" "$dir" ;;
    esac
    W[$tool,$p]+="$WALL "; C[$tool,$p]+="$CPU "; H[$tool,$p]+="$HCPU "; O[$tool,$p]+="$OCPU "
    [[ $tool == ours ]] && TM[$p]+="$(split_timings "$dir/$p.log");"
    log "$tool (run $run/$R): ${LABEL[$p]}: wall ${WALL}s, deployer CPU ${CPU}s (test hosts ${HCPU}s, other ${OCPU}s)"
    case $p in
      first) check_hosts "$dir/fleet" 1 ;;
      change) check_hosts "$dir/fleet" 2 ;;
      plan-*)
        grep -qx "0 changed, $N unchanged, 0 new, 0 unreachable" "$dir/$p.log" ||
          die "plan did not find $N unchanged machines: $(tail -n 3 "$dir/$p.log")"
        ;;
    esac
  done
  if [[ $tool == ours ]]; then
    for p in floor-fresh floor-warm floor-confirm; do
      [[ $p == floor-fresh ]] && close_masters
      log "floor (run $run/$R): ${LABEL[$p]}"
      run_phase "$dir/$p.log" floor_ssh "$dir" "$p"
      W[ours,$p]+="$WALL "; C[ours,$p]+="$CPU "; H[ours,$p]+="$HCPU "; O[ours,$p]+="$OCPU "
      log "floor (run $run/$R): ${LABEL[$p]}: wall ${WALL}s, deployer CPU ${CPU}s (test hosts ${HCPU}s, other ${OCPU}s)"
    done
  fi
  close_masters
  "$FLEET_SH" stop "$dir/fleet" >/dev/null
}

# ---- nixops (ours)
ours_setup() {
  local dir=$1 nonce=$2 n
  mkdir -p "$dir/home"
  write_machine_module "$dir" "$nonce"
  {
    echo "# Generated by bench/deploy.sh."
    echo "let machine = import ./machine.nix; in {"
    echo "  network.description = \"bench: $N machines\";"
    for n in "${NAMES[@]}"; do echo "  $n = machine \"$n\";"; done
    echo "}"
  } > "$dir/net/network.nix"
  HOME=$dir/home NIXOPS_STATE=$dir/state.nixops "$NIXOPS" create "$dir/net/network.nix" -d bench >"$dir/create.log" 2>&1
}
ours_deploy() {
  local dir=$1
  # shellcheck disable=SC2086 # options, split into words on purpose
  exec env HOME="$dir/home" NIXOPS_STATE="$dir/state.nixops" NIXOPS_SSH_PERSIST=60 NIXOPS_TIMINGS=1 \
    "$FLEET_SH" run "$dir/fleet" -- "$NIXOPS" deploy -d bench $NIXOPS_DEPLOY_ARGS
}
# ---- ours again, every machine building its own system (-t)
target_deploy() {
  NIXOPS_DEPLOY_ARGS="$NIXOPS_DEPLOY_ARGS --build-on-target" ours_deploy "$@"
}

ours_plan() {
  local dir=$1
  exec env HOME="$dir/home" NIXOPS_STATE="$dir/state.nixops" NIXOPS_SSH_PERSIST=60 \
    "$FLEET_SH" run "$dir/fleet" -- "$NIXOPS" plan -d bench
}

# ---- Colmena (baseline)
colmena_setup() {
  local dir=$1 nonce=$2 n
  write_machine_module "$dir" "$nonce"
  {
    echo "# Generated by bench/deploy.sh."
    echo "let machine = import ./machine.nix; in {"
    echo "  meta.nixpkgs = import <nixpkgs> { };"
    for n in "${NAMES[@]}"; do echo "  $n = machine \"$n\";"; done
    echo "}"
  } > "$dir/net/hive.nix"
}
colmena_deploy() {
  local dir=$1
  cd "$dir/net"
  exec "$FLEET_SH" run "$dir/fleet" -- "$COLMENA" apply --on '*' -f "$dir/net/hive.nix"
}

log "work directory: $WORK; CPU accounting: $CPU_METHOD"
for ((run = 1; run <= R; run++)); do
  bench_tool ours "$run" ours_setup ours_deploy
  if ((TARGET)); then
    bench_tool target "$run" ours_setup target_deploy
  fi
  if [[ -n $COLMENA ]]; then
    bench_tool colmena "$run" colmena_setup colmena_deploy
  fi
done

# Medians of the runs.
median() { tr ' ' '\n' <<< "$1" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A RAW_W RAW_C
BUSY=0   # phases during which other work used more than 10% of the machine
for k in "${!W[@]}"; do
  RAW_W[$k]=${W[$k]}; RAW_C[$k]=${C[$k]}
  read -ra ws <<< "${W[$k]}"; read -ra os <<< "${O[$k]}"
  for i in "${!ws[@]}"; do
    awk -v o="${os[$i]}" -v w="${ws[$i]}" -v n="$(nproc)" 'BEGIN { exit !(o != "-" && o > 0.1 * w * n) }' && BUSY=$((BUSY + 1))
  done
  W[$k]=$(median "${W[$k]}"); C[$k]=$(median "${C[$k]}")
  if [[ ${H[$k]} == *-* ]]; then H[$k]=-; else H[$k]=$(median "${H[$k]}"); fi
done

# ---------------------------------------------------------------- report

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "nixops deploy benchmark — N=$N machines, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
if ((R > 1)); then echo "median of $R runs (fresh hosts and state each run)"; fi
if ((BUSY)); then
  echo "WARNING: in $BUSY phase run(s) other work used >10% of this machine's CPU: wall times are unreliable (CPU times much less so)"
fi
echo "deployer CPU: $CPU_METHOD"
echo "$BASHRC_NOTE"
echo "nixops: $NIXOPS ($("$NIXOPS" --version 2>/dev/null | head -n1))${NIXOPS_DEPLOY_ARGS:+, deploy $NIXOPS_DEPLOY_ARGS}"
if ((TARGET)); then
  echo
  echo "built here vs --build-on-target (each machine builds its own system):"
  printf '%-18s %9s %9s %9s %11s %11s %11s\n' phase "wall s" "CPU s" "hosts s" "target wall" "target CPU" "target hosts"
  for p in "${PHASES[@]}"; do
    printf '%-18s %9s %9s %9s %11s %11s %11s\n' "${LABEL[$p]}" \
      "${W[ours,$p]}" "${C[ours,$p]}" "${H[ours,$p]}" "${W[target,$p]}" "${C[target,$p]}" "${H[target,$p]}"
  done
  echo "(CPU s: the deploying side's; hosts s: the test hosts', where --build-on-target builds)"
fi
if [[ -n $COLMENA ]]; then
  echo "baseline: Colmena ($COLMENA, $("$COLMENA" --version 2>/dev/null | head -n1))"
  echo
  printf '%-18s %9s %9s %11s %11s %10s %10s\n' phase "wall s" "CPU s" "colm wall" "colm CPU" "wall ×" "CPU ×"
  for p in "${PHASES[@]}"; do
    printf '%-18s %9s %9s %11s %11s %10s %10s\n' "${LABEL[$p]}" \
      "${W[ours,$p]}" "${C[ours,$p]}" "${W[colmena,$p]}" "${C[colmena,$p]}" \
      "$(ratio "${W[ours,$p]}" "${W[colmena,$p]}")" "$(ratio "${C[ours,$p]}" "${C[colmena,$p]}")"
  done
  echo "(× = ours / Colmena; Colmena keeps no connections, so its warm no-op is another cold one)"
  if [[ -n $CG_HOSTS ]]; then
    echo "test hosts' CPU s (sshd and the remote commands; not in the deployer CPU, but on the same $(nproc) cores):"
    for p in "${PHASES[@]}"; do
      printf '  %-18s ours %6s   Colmena %6s\n' "${LABEL[$p]}" "${H[ours,$p]}" "${H[colmena,$p]}"
    done
  fi
  echo
  goal() {  # goal TEXT VALUE LIMIT
    local ok; ok=$(awk -v v="$2" -v l="$3" 'BEGIN { print (v != "-" && v <= l) ? "ok  " : "MISS" }')
    printf '  %s %-52s %s (≤ %s)\n' "$ok" "$1" "$2" "$3"
  }
  echo "goals:"
  goal "first deploy wall vs Colmena" "$(ratio "${W[ours,first]}" "${W[colmena,first]}")" 0.5
  goal "first deploy CPU vs Colmena" "$(ratio "${C[ours,first]}" "${C[colmena,first]}")" 0.5
  goal "cold no-op wall vs Colmena no-op" "$(ratio "${W[ours,cold]}" "${W[colmena,cold]}")" 0.5
  goal "cold no-op CPU vs Colmena no-op" "$(ratio "${C[ours,cold]}" "${C[colmena,cold]}")" 0.5
  goal "warm no-op wall vs Colmena no-op" "$(ratio "${W[ours,warm]}" "${W[colmena,warm]}")" 0.3
  if [[ -n ${W[ours,change]:-} ]]; then
    goal "one-line change wall vs Colmena's (issue 23: at N=100)" "$(ratio "${W[ours,change]}" "${W[colmena,change]}")" 0.5
    goal "warm no-op wall vs Colmena no-op (issue 23: at N=100)" "$(ratio "${W[ours,warm]}" "${W[colmena,warm]}")" 0.2
  fi
else
  echo "baseline: none (set COLMENA=/path/to/colmena to measure Colmena too)"
  echo
  printf '%-18s %9s %9s %9s\n' phase "wall s" "CPU s" "hosts s"
  for p in "${PHASES[@]}"; do
    printf '%-18s %9s %9s %9s\n' "${LABEL[$p]}" "${W[ours,$p]}" "${C[ours,$p]}" "${H[ours,$p]}"
  done
  echo "(hosts s: the test hosts' CPU — sshd and remote commands — not part of the deployer CPU)"
  if ((PLAN)); then
    echo
    echo "plan ÷ no-op deploy of the same run (wall / deployer CPU):"
    printf '  warm ssh  %s / %s\n' "$(ratio "${W[ours,plan-warm]}" "${W[ours,warm]}")" "$(ratio "${C[ours,plan-warm]}" "${C[ours,warm]}")"
    printf '  cold ssh  %s / %s\n' "$(ratio "${W[ours,plan-cold]}" "${W[ours,cold]}")" "$(ratio "${C[ours,plan-cold]}" "${C[ours,cold]}")"
  fi
fi
if [[ -n ${W[ours,floor-fresh]:-} ]]; then
  echo
  echo "floor, on ours' hosts right after its phases (wall / deployer CPU / hosts' CPU s):"
  for p in floor-fresh floor-warm floor-confirm; do
    printf '  %-22s %6s / %6s / %6s\n' "${LABEL[$p]/N/$N}" "$(median "${W[ours,$p]}")" "$(median "${C[ours,$p]}")" "$(median "${H[ours,$p]}")"
  done
  fresh=$(median "${W[ours,floor-fresh]}")
  guarded=$(awk -v a="$fresh" -v b="$(median "${W[ours,floor-confirm]}")" 'BEGIN { printf "%.2f", a + b }')
  for p in "${PHASES[@]}"; do
    printf '  %-22s %6s× the floor of %s fresh logins, %s× that of %s logins and %s confirmations (%s s)\n' "${LABEL[$p]}" \
      "$(ratio "$(median "${W[ours,$p]}")" "$fresh")" "$N" "$(ratio "$(median "${W[ours,$p]}")" "$guarded")" "$N" "$N" "$guarded"
  done
fi
if [[ -n ${TM[first]//;/} ]]; then
  echo
  echo "ours: where the wall time went (NIXOPS_TIMINGS; seconds since the tool started, median of runs):"
  printf '%-18s %7s %6s %7s %7s %7s %7s %13s %7s %7s %7s\n' phase evaluated builds "build s" built reached copied "activation" "act/m" "conf/m" end
  for p in "${PHASES[@]}"; do
    [[ -n ${TM[$p]//;/} ]] || continue
    cols=()
    for ((c = 1; c <= 11; c++)); do
      vals=$(tr ';' '\n' <<< "${TM[$p]}" | awk -v c="$c" 'NF && $c != "-" { print $c }' | tr '\n' ' ')
      if [[ -z ${vals// /} ]]; then cols+=(-); else cols+=("$(median "$vals")"); fi
    done
    printf '%-18s %7s %6s %7s %7s %7s %7s %13s %7s %7s %7s\n' "${LABEL[$p]}" "${cols[0]}" "${cols[1]}" "${cols[2]}" \
      "${cols[3]}" "${cols[4]}" "${cols[5]}" "${cols[6]}–${cols[7]}" "${cols[8]}" "${cols[9]}" "${cols[10]}"
  done
  echo "(evaluated/built/reached/copied: when the last machine was; builds: Nix builds run (build s: their wall"
  echo " time summed); activation: from–to for all machines; act/m, conf/m: one machine's activation and"
  echo " confirmation over a new connection, median)"
fi
if ((R > 1)); then
  echo
  echo "all runs (wall s / CPU s):"
  tools=(ours); ((TARGET)) && tools+=(target); [[ -n $COLMENA ]] && tools+=(colmena)
  for t in "${tools[@]}"; do
    for p in "${PHASES[@]}"; do
      read -ra ws <<< "${RAW_W[$t,$p]}"; read -ra cs <<< "${RAW_C[$t,$p]}"
      line=; for i in "${!ws[@]}"; do line+=" ${ws[$i]}/${cs[$i]}"; done
      printf '  %-8s %-18s%s\n' "$t" "${LABEL[$p]}" "$line"
    done
  done
fi
