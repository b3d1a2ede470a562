#!/usr/bin/env bash
# bench/eval.sh — evaluating a fleet: wall time and peak memory of the
# network's evaluation for a generated network of N machines over a heavier
# stand-in OS (tests/nixpkgs with M generated modules on nixpkgs' real lib,
# built into the work directory, buildable offline like the normal one).
#
# Measured with `nixops deploy --dry-run` (evaluation, then one
# `nix-store --dry-run`; no machine is contacted), in the same run:
#
#   single             the tool before pooled evaluation (BASELINE_REV):
#                      one nix-instantiate for every machine
#   pooled, J workers  --no-eval-cache --eval-jobs J, for each J of -j:
#                      chunks of machines per Nix process
#   cold cache         --eval-jobs CORES, empty cache: one machine per Nix
#                      process, each recording what it read
#   warm cache         the same again: nothing changed, nothing evaluated
#   ... at N/4         single and pooled (2 workers) on a quarter of the
#                      machines: memory grows with N for one, not the other
#   colmena eval       with COLMENA=/path/to/colmena: `colmena eval` of every
#                      node's toplevel .drv on the same machines (hive.nix)
#
# and, on the first INFO_N (30) machines (issue 16: `info` is cheap):
# `info` without flags against `deploy --dry-run`, both with and without
# the evaluation cache, after `deploy --create-only` recorded the machines.
#
# Peak memory is the whole process tree's: a cgroup v1 memory group's
# max_usage_in_bytes (emptied before each phase; includes the page cache the
# phase brought in), else the peak of the summed RSS of the phase's session,
# sampled every 0.2 s.
#
# With -c, only the evaluation cache, against the cache before the
# evaluation trace (BEFORE_REV, default 78eecf4; or NIXOPS_BEFORE=/path),
# both in the same run, each on its own state:
#
#   cold cache         empty cache: every machine evaluated and recorded
#   warm cache         nothing changed: nothing evaluated
#   beside changed     a file nothing reads is written beside the network
#                      (the cache before watched the whole directory)
#
# usage: bench/eval.sh [-n N] [-m M] [-j "1 2 4"] [-i INFO_N] [-c] [-k]
#   -n N       machines (default 200)     -m M   generated modules (default 2000)
#   -j LIST    worker counts for the pooled evaluation (default "1 2 4")
#   -i INFO_N  machines of the info benchmark (default 30)
#   -c         the evaluation cache only, against the one before the trace
#   -k         keep the work directory (/tmp/nixops-bench-eval.*)
# NIXOPS=/path/to/nixops measures that binary instead of this checkout's
# (cargo build --release). The baseline is built from BASELINE_REV
# (default a667029, the commit before pooled evaluation) into
# target/bench-baseline, unless NIXOPS_BASELINE=/path/to/nixops names one.
set -euo pipefail

N=${N:-200}
M=${M:-2000}
JOBS=${JOBS:-"1 2 4"}
INFO_N=${INFO_N:-30}
KEEP=0
CACHE_ONLY=0
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while getopts n:m:j:i:ckh opt; do
  case $opt in
    n) N=$OPTARG ;;
    m) M=$OPTARG ;;
    j) JOBS=$OPTARG ;;
    i) INFO_N=$OPTARG ;;
    c) CACHE_ONLY=1 ;;
    k) KEEP=1 ;;
    *) usage ;;
  esac
done
for v in N M INFO_N; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "eval.sh: bad $v: ${!v}" >&2; exit 2; }; done
((INFO_N <= N)) || INFO_N=$N

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
NIXOPS=${NIXOPS:-}
NIXOPS_BASELINE=${NIXOPS_BASELINE:-}
BASELINE_REV=${BASELINE_REV:-a667029}
NIXOPS_BEFORE=${NIXOPS_BEFORE:-}
BEFORE_REV=${BEFORE_REV:-78eecf4}
COLMENA=${COLMENA:-}
CORES=$(nproc)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { echo "eval.sh: $*" >&2; exit 1; }

# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
resolve_tools
# build_rev REV DIR: this repository's nixops at REV, built in target/DIR;
# prints the binary's path.
build_rev() {
  local src=$REPO/target/$2/src
  log "building nixops at $1 (target/$2)"
  rm -rf "$src" && mkdir -p "$src"
  git -C "$REPO" archive "$1" | tar -x -C "$src"
  (cd "$src" && CARGO_TARGET_DIR=$REPO/target/$2 cargo build --release --locked --quiet) >&2
  echo "$REPO/target/$2/release/nixops"
}
if ((CACHE_ONLY)); then
  [[ -n $NIXOPS_BEFORE ]] || NIXOPS_BEFORE=$(build_rev "$BEFORE_REV" bench-before)
elif [[ -z $NIXOPS_BASELINE ]]; then
  NIXOPS_BASELINE=$(build_rev "$BASELINE_REV" bench-baseline)
fi

WORK=$(mktemp -d /tmp/nixops-bench-eval.XXXXXX)
CG='' CG_ROOT=/sys/fs/cgroup/memory CPU_CG=''
cleanup() {
  set +e
  [[ -n $CG ]] && rmdir "$CG" 2>/dev/null
  [[ -n $CPU_CG ]] && rmdir "$CPU_CG" 2>/dev/null
  if ((KEEP)); then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ -w $CG_ROOT ]] && mkdir "$CG_ROOT/nixops-bench-eval-${WORK##*.}" 2>/dev/null; then
  CG=$CG_ROOT/nixops-bench-eval-${WORK##*.}
  MEM_METHOD="cgroup v1 memory max_usage_in_bytes of the phase's process tree"
else
  MEM_METHOD="summed RSS of the phase's session, sampled every 0.2 s"
fi
# CPU used by others meanwhile (the machine's busy time less the phase's)
# makes wall times unreliable: each phase says how much there was.
if [[ -n $CG && -w /sys/fs/cgroup/cpuacct ]] && mkdir "/sys/fs/cgroup/cpuacct/nixops-bench-eval-${WORK##*.}" 2>/dev/null; then
  CPU_CG=/sys/fs/cgroup/cpuacct/nixops-bench-eval-${WORK##*.}
fi
busy() { awk '/^cpu / { printf "%.0f\n", ($2 + $3 + $4 + $7 + $8) * 10000000 }' /proc/stat; }

# ---------------------------------------------------------------- the OS

# A copy of the stand-in nixpkgs (its lib a link to nixpkgs' real one) with
# M generated modules: each declares five options (a bool, a port, a
# string, an attribute set of settings, a package), and when enabled (the
# summary module enables all, as a NixOS profile would) defines settings
# that read its neighbour's options; every 20th adds its package (a
# derivation built with busybox) to environment.systemPackages; the summary
# module writes all settings to /etc/heavy/summary.json.
gen_os() {
  local np=$WORK/nixpkgs i prev pkg
  bash "$REPO/tests/nixpkgs/link-lib.sh" >/dev/null
  cp -r "$REPO/tests/nixpkgs" "$np"
  mkdir -p "$np/nixos/modules/heavy"
  for ((i = 0; i < M; i++)); do
    prev=$((i > 0 ? i - 1 : 0))
    pkg=""
    ((i % 20 == 0)) && pkg="environment.systemPackages = [ cfg.package ];"
    cat > "$np/nixos/modules/heavy/g$i.nix" <<EOF
# Generated by bench/eval.sh.
{ config, lib, pkgs, ... }:
let inherit (lib) mkOption mkIf types; cfg = config.heavy.g$i; in
{
  options.heavy.g$i = {
    enable = mkOption { type = types.bool; default = false; description = "Enable g$i."; };
    port = mkOption { type = types.port; default = $((1000 + i)); description = "Port of g$i."; };
    name = mkOption { type = types.str; default = "g$i"; description = "Name of g$i."; };
    settings = mkOption {
      type = types.attrsOf (types.oneOf [ types.str types.int types.bool ]);
      default = { };
      description = "Settings of g$i.";
    };
    package = mkOption {
      type = types.package;
      default = pkgs.writeText "heavy-g$i" "g$i";
      description = "Package of g$i.";
    };
  };
  config = mkIf cfg.enable {
    heavy.g$i.settings = { port = cfg.port; peer = config.heavy.g$prev.name; enabled = true; };
    $pkg
  };
}
EOF
  done
  {
    echo "# Generated by bench/eval.sh."
    echo "["
    for ((i = 0; i < M; i++)); do echo "  ./g$i.nix"; done
    echo "  ./summary.nix"
    echo "]"
  } > "$np/nixos/modules/heavy/list.nix"
  cat > "$np/nixos/modules/heavy/summary.nix" <<EOF
# Generated by bench/eval.sh.
{ config, lib, ... }:
{
  heavy = lib.genAttrs (map (i: "g\${toString i}") (lib.range 0 $((M - 1)))) (_: { enable = lib.mkDefault true; });
  environment.etc."heavy/summary.json".text = builtins.toJSON
    (lib.mapAttrs (_: c: { inherit (c) enable port name settings; }) config.heavy);
}
EOF
  sed -i 's|^\]$|] ++ import ./heavy/list.nix|' "$np/nixos/modules/module-list.nix"
  grep -q 'heavy/list.nix' "$np/nixos/modules/module-list.nix" || die "cannot extend the stand-in's module list"
}

NAMES=()
for ((i = 1; i <= N; i++)); do NAMES+=("$(printf 'm%03d' "$i")"); done

# gen_network DIR COUNT: a network (and a Colmena hive) of the first COUNT
# machines, each in its own file, all importing one shared module.
gen_network() {
  local dir=$1 count=$2 n i
  mkdir -p "$dir/machines"
  cat > "$dir/common.nix" <<'EOF'
# Generated by bench/eval.sh.
{ ... }: { heavy.g1.port = 2001; services.openssh.enable = true; }
EOF
  for ((i = 0; i < count; i++)); do
    n=${NAMES[$i]}
    cat > "$dir/machines/$n.nix" <<EOF
# Generated by bench/eval.sh.
{ ... }: {
  imports = [ ../common.nix ];
  deployment.targetHost = "$n";
  networking.hostName = "$n";
  environment.etc.motd.text = "machine $n";
  heavy.g$((i % M)).settings.owner = "$n";
}
EOF
  done
  {
    echo "# Generated by bench/eval.sh."
    echo "{"
    echo "  network.description = \"bench/eval.sh: $count machines\";"
    for ((i = 0; i < count; i++)); do echo "  ${NAMES[$i]} = import ./machines/${NAMES[$i]}.nix;"; done
    echo "}"
  } > "$dir/network.nix"
  {
    echo "# Generated by bench/eval.sh."
    echo "{"
    echo "  meta.nixpkgs = import <nixpkgs> { };"
    for ((i = 0; i < count; i++)); do echo "  ${NAMES[$i]} = import ./machines/${NAMES[$i]}.nix;"; done
    echo "}"
  } > "$dir/hive.nix"
}

# ---------------------------------------------------------------- measuring

# measure LABEL CMD... — runs CMD (output in $WORK/LABEL.log); sets WALL (s),
# PEAK (MiB) and OTHER (CPU seconds others used meanwhile, or -).
measure() {
  local label=$1; shift
  local logf=$WORK/${label//[^a-zA-Z0-9]/_}.log t0 t1 rc=0 b0 b1 u0=0 u1=0
  OTHER=-
  if [[ -n $CG ]]; then
    echo 1 > "$CG/memory.force_empty" 2>/dev/null || true
    echo 0 > "$CG/memory.max_usage_in_bytes"
    [[ -n $CPU_CG ]] && u0=$(<"$CPU_CG/cpuacct.usage")
    b0=$(busy)
    t0=$EPOCHREALTIME
    ( echo "$BASHPID" > "$CG/cgroup.procs"; [[ -z $CPU_CG ]] || echo "$BASHPID" > "$CPU_CG/cgroup.procs"; exec "$@" ) </dev/null >"$logf" 2>&1 || rc=$?
    t1=$EPOCHREALTIME
    b1=$(busy)
    PEAK=$(awk '{ printf "%.0f", $1 / 1048576 }' "$CG/memory.max_usage_in_bytes")
    if [[ -n $CPU_CG ]]; then
      u1=$(<"$CPU_CG/cpuacct.usage")
      OTHER=$(awk -v b="$((b1 - b0))" -v u="$((u1 - u0))" 'BEGIN { o = (b - u) / 1e9; printf "%.1f", o < 0 ? 0 : o }')
    fi
  else
    t0=$EPOCHREALTIME
    setsid "$@" </dev/null >"$logf" 2>&1 &
    local pid=$! peak=0 now
    while kill -0 "$pid" 2>/dev/null; do
      now=$(ps -o rss= -s "$pid" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
      ((now > peak)) && peak=$now
      sleep 0.2
    done
    wait "$pid" || rc=$?
    t1=$EPOCHREALTIME
    PEAK=$((peak / 1024))
  fi
  WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  if ((rc != 0)); then
    tail -n 30 "$logf" >&2
    die "$label failed (exit $rc): $*"
  fi
  log "$label: ${WALL} s, peak ${PEAK} MiB, others' CPU meanwhile ${OTHER} s"
}

declare -A W P O
ORDER=()
record() { W[$1]=$WALL; P[$1]=$PEAK; O[$1]=$OTHER; ORDER+=("$1"); }

# ---------------------------------------------------------------- run

log "work directory: $WORK; generating the stand-in OS ($M modules) and $N machines"
gen_os
export NIX_PATH=nixpkgs=$WORK/nixpkgs
# shellcheck source=scripts/offline-nix.sh
source "$REPO/scripts/offline-nix.sh"
unset NIXOPS_DEPLOYMENT
export HOME=$WORK/home
mkdir -p "$HOME"
gen_network "$WORK/net" "$N"
gen_network "$WORK/quarter" $((N / 4 > 0 ? N / 4 : 1))
gen_network "$WORK/info" "$INFO_N"

# One machine's cost, alone in a process.
one=$WORK/one.nix
cat > "$one" <<EOF
(import $WORK/nixpkgs/nixos/lib/eval-config.nix {
  modules = [ $WORK/net/machines/${NAMES[0]}.nix { options.deployment = (import $WORK/nixpkgs/lib).mkOption { type = (import $WORK/nixpkgs/lib).types.attrs; }; } ];
}).config.system.build.toplevel.drvPath
EOF
measure "one machine" nix-instantiate --eval --read-write-mode "$one"
ONE=$WALL ONE_PEAK=$PEAK

# tool BIN STATEDIR ARGS...: the command line of BIN with its state (and
# cache) in STATEDIR.
tool() {
  local bin=$1 dir=$2; shift 2
  env NIXOPS_STATE="$dir/state.nixops" "$bin" "$@"
}
create() {  # create BIN STATEDIR NETWORK
  mkdir -p "$2"
  tool "$1" "$2" create "$3/network.nix" -d bench >/dev/null 2>&1 || die "create failed in $2"
}

if ((CACHE_ONLY)); then
  # Each cache is the owner's of its state's directory.
  create "$NIXOPS" "$WORK/c-new" "$WORK/net"
  create "$NIXOPS_BEFORE" "$WORK/c-old" "$WORK/net"
  log "writing every machine's derivations to the store first (not timed)"
  tool "$NIXOPS" "$WORK/c-new" deploy --dry-run --no-eval-cache >"$WORK/warmup.log" 2>&1 || { tail "$WORK/warmup.log" >&2; die "warm-up failed"; }
  for side in before now; do
    if [[ $side == before ]]; then bin=$NIXOPS_BEFORE dir=$WORK/c-old; else bin=$NIXOPS dir=$WORK/c-new; fi
    measure "cold cache, $side" env NIXOPS_STATE="$dir/state.nixops" "$bin" deploy --dry-run
    record "cold cache, $side"
    measure "warm cache, $side" env NIXOPS_STATE="$dir/state.nixops" "$bin" deploy --dry-run
    record "warm cache, $side"
    grep -q "$N of $N machines unchanged" "$WORK/warm_cache__$side.log" || die "the warm run ($side) evaluated machines"
    echo "$side $RANDOM" > "$WORK/net/notes-$side.txt"
    measure "beside changed, $side" env NIXOPS_STATE="$dir/state.nixops" "$bin" deploy --dry-run
    record "beside changed, $side"
  done
  echo
  echo "nixops evaluation cache benchmark — N=$N machines, $M generated modules, $CORES cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "now: $NIXOPS; before: $NIXOPS_BEFORE ($BEFORE_REV); $(nix-instantiate --version)"
  echo
  printf '%-24s %9s %10s %10s %12s %12s\n' "phase" "wall s" "peak MiB" "s/machine" "vs before" "others' CPU"
  for k in "${ORDER[@]}"; do
    b=${k/, now/, before}
    printf '%-24s %9s %10s %10s %12s %12s\n' "$k" "${W[$k]}" "${P[$k]}" \
      "$(awk -v w="${W[$k]}" -v n="$N" 'BEGIN { printf "%.4f", w / n }')" \
      "$(awk -v a="${W[$k]}" -v b="${W[$b]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')" "${O[$k]}"
  done
  echo
  echo "goals:"
  awk -v w="${W[warm cache, now]}" -v n="$N" 'BEGIN { v = w / n; printf "  %s warm cache hit: seconds per machine %.4f (<= 0.01)\n", (v <= 0.01) ? "ok  " : "MISS", v }'
  exit 0
fi

create "$NIXOPS" "$WORK/s-new" "$WORK/net"
create "$NIXOPS_BASELINE" "$WORK/s-old" "$WORK/net"
log "writing every machine's derivations to the store first (not timed)"
tool "$NIXOPS" "$WORK/s-new" deploy --dry-run --no-eval-cache >"$WORK/warmup.log" 2>&1 || { tail "$WORK/warmup.log" >&2; die "warm-up failed"; }

measure "single" env NIXOPS_STATE="$WORK/s-old/state.nixops" "$NIXOPS_BASELINE" deploy --dry-run
record "single"
for j in $JOBS; do
  measure "pooled $j" env NIXOPS_STATE="$WORK/s-new/state.nixops" "$NIXOPS" deploy --dry-run --no-eval-cache --eval-jobs "$j"
  record "pooled $j"
done
rm -rf "$WORK/s-new/eval-cache"
measure "cold cache" env NIXOPS_STATE="$WORK/s-new/state.nixops" "$NIXOPS" deploy --dry-run
record "cold cache"
measure "warm cache" env NIXOPS_STATE="$WORK/s-new/state.nixops" "$NIXOPS" deploy --dry-run
record "warm cache"
grep -q "$N of $N machines unchanged" "$WORK/warm_cache.log" || die "the warm run evaluated machines (see $WORK/warm_cache.log)"

create "$NIXOPS" "$WORK/q-new" "$WORK/quarter"
create "$NIXOPS_BASELINE" "$WORK/q-old" "$WORK/quarter"
measure "single at N/4" env NIXOPS_STATE="$WORK/q-old/state.nixops" "$NIXOPS_BASELINE" deploy --dry-run
record "single at N/4"
measure "pooled 2 at N/4" env NIXOPS_STATE="$WORK/q-new/state.nixops" "$NIXOPS" deploy --dry-run --no-eval-cache --eval-jobs 2
record "pooled 2 at N/4"

if [[ -n $COLMENA ]]; then
  measure "colmena eval" "$COLMENA" eval -f "$WORK/net/hive.nix" \
    -E '{ nodes, lib, ... }: lib.mapAttrs (_: n: n.config.system.build.toplevel.drvPath) nodes'
  record "colmena eval"
fi

# Issue 16: info against a dry-run deploy, machines recorded in state.
create "$NIXOPS" "$WORK/i" "$WORK/info"
tool "$NIXOPS" "$WORK/i" deploy --create-only --no-eval-cache >/dev/null 2>&1 || die "create-only failed"
measure "info, no cache" env NIXOPS_STATE="$WORK/i/state.nixops" "$NIXOPS" info --no-eval-cache
I_W=$WALL I_P=$PEAK
measure "dry-run, no cache" env NIXOPS_STATE="$WORK/i/state.nixops" "$NIXOPS" deploy --dry-run --no-eval-cache
D_W=$WALL D_P=$PEAK
tool "$NIXOPS" "$WORK/i" deploy --dry-run >/dev/null 2>&1 || die "filling the cache failed"
measure "info, warm cache" env NIXOPS_STATE="$WORK/i/state.nixops" "$NIXOPS" info
IW_W=$WALL IW_P=$PEAK
measure "dry-run, warm cache" env NIXOPS_STATE="$WORK/i/state.nixops" "$NIXOPS" deploy --dry-run
DW_W=$WALL DW_P=$PEAK
grep -q "Up-to-date\|Deployed\|New" "$WORK/info__warm_cache.log" || die "info printed no machines"

# ---------------------------------------------------------------- report

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
goal() {  # goal TEXT VALUE OP LIMIT
  local ok
  ok=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { r = (op == "<=") ? (v <= l) : (v >= l); print (v != "-" && r) ? "ok  " : "MISS" }')
  printf '  %s %-62s %s (%s %s)\n' "$ok" "$1" "$2" "$3" "$4"
}

echo
echo "nixops evaluation benchmark — N=$N machines, $M generated modules, $CORES cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "one machine alone: ${ONE} s, ${ONE_PEAK} MiB (nix-instantiate of its toplevel's .drv path)"
echo "peak memory: $MEM_METHOD"
echo "nixops: $NIXOPS; baseline: $NIXOPS_BASELINE ($BASELINE_REV); $(nix-instantiate --version)"
echo
printf '%-22s %9s %10s %11s %12s\n' "phase" "wall s" "peak MiB" "wall/single" "others' CPU"
for k in "${ORDER[@]}"; do
  printf '%-22s %9s %10s %11s %12s\n' "$k" "${W[$k]}" "${P[$k]}" "$(ratio "${W[$k]}" "${W[single]}")" "${O[$k]}"
done
echo "(others' CPU: seconds of CPU the rest of the machine used during the phase; much of it makes that wall time unreliable)"
echo
echo "info (issue 16), $INFO_N machines recorded by deploy --create-only:"
printf '  %-22s %9s %10s\n' "phase" "wall s" "peak MiB"
printf '  %-22s %9s %10s\n' "info, no cache" "$I_W" "$I_P" "dry-run, no cache" "$D_W" "$D_P" \
  "info, warm cache" "$IW_W" "$IW_P" "dry-run, warm cache" "$DW_W" "$DW_P"
echo
echo "goals:"
two=${W[pooled 2]:-}
if [[ -n $two ]]; then
  goal "pooled (2 workers) wall vs single" "$(ratio "$two" "${W[single]}")" "<=" 0.6
fi
goal "cold cache wall vs single" "$(ratio "${W[cold cache]}" "${W[single]}")" "<=" 0.6
goal "warm cache: seconds per machine" "$(awk -v w="${W[warm cache]}" -v n="$N" 'BEGIN { printf "%.4f", w / n }')" "<=" 0.05
for j in $JOBS; do
  goal "pooled $j peak MiB within $j workers x 4096 MiB cap" "${P[pooled $j]}" "<=" $((j * 4096))
done
goal "pooled 2 peak: N over N/4" "$(ratio "${P[pooled 2]:-0}" "${P[pooled 2 at N/4]}")" "<=" 1.5
echo "  (single peak: N over N/4 = $(ratio "${P[single]}" "${P[single at N/4]}"))"
goal "info vs dry-run wall, no cache (x cheaper)" "$(ratio "$D_W" "$I_W")" ">=" 10
goal "info vs dry-run peak memory, no cache (x cheaper)" "$(ratio "$D_P" "$I_P")" ">=" 10
# With a warm cache a dry-run evaluates nothing either: both are cheap, and
# their ratio is no goal.
echo "  (warm cache: info $IW_W s / $IW_P MiB, dry-run $DW_W s / $DW_P MiB; neither evaluates a machine)"
if [[ -z $COLMENA ]]; then
  echo "(Colmena not measured: COLMENA=/path/to/colmena adds \`colmena eval\` of the same machines)"
fi
