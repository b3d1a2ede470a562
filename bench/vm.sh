#!/usr/bin/env bash
# bench/vm.sh — from `nixops create` to deployed VMs (targetEnv libvirtd),
# against the same network deployed to existing test hosts, in one run:
#
#   1. VMs: a network of N libvirtd machines (QEMU's user-mode network) made
#      and deployed by one `nixops deploy` (key, image, volume, domain,
#      boot, then the deploy); then `nixops destroy`
#   2. hosts: the same machines as targetEnv "none" on N fresh test hosts
#      (tests/fleet), one `nixops deploy`
#
# Each is repeated R times (fresh VMs, fresh hosts); the report gives the
# medians and VMs ÷ hosts. The VMs boot under the domain type that
# tests/vm/libvirt.sh finds working here (KVM or emulation) and say which.
#
# usage: bench/vm.sh [-n N] [-r R]      (N machines, default 2; R rounds, default 1)
# NIXOPS=/path/to/nixops measures that binary instead of building this checkout.
# Needs root (libvirt's qemu:///system and the test fleet).
set -euo pipefail

N=2
R=1
while getopts n:r:h opt; do
  case $opt in
    (n) N=$OPTARG ;;
    (r) R=$OPTARG ;;
    (*) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "bench/vm: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
# shellcheck source=scripts/offline-nix.sh
source "$REPO/scripts/offline-nix.sh"
[[ $(id -u) == 0 ]] || die "run as root"
resolve_tools
bash "$REPO/tests/nixpkgs/link-lib.sh" >/dev/null
URI=$(bash "$REPO/tests/vm/libvirt.sh" start)
TYPE=$(bash "$REPO/tests/vm/libvirt.sh" domain-type)
FLEET_SH=$REPO/tests/fleet/fleet.sh

WORK=$(mktemp -d /tmp/nixops-bench-vm.XXXXXX)
POOL=nixops-bench-$$
cleanup() {
  NIXOPS_STATE=$WORK/vm.nixops "$NIXOPS" destroy -d vms --confirm >/dev/null 2>&1 || true
  virsh -q -c "$URI" pool-destroy "$POOL" >/dev/null 2>&1 || true
  virsh -q -c "$URI" pool-undefine "$POOL" >/dev/null 2>&1 || true
  [[ -d $WORK/fleet ]] && "$FLEET_SH" stop "$WORK/fleet" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/pool"
virsh -q -c "$URI" pool-define-as "$POOL" dir --target "$WORK/pool" >/dev/null
virsh -q -c "$URI" pool-start "$POOL" >/dev/null

NAMES=()
for ((i = 1; i <= N; i++)); do NAMES+=("$(printf 'm%02d' "$i")"); done

# network ENV NONCE: the machines, as VMs (ENV=libvirtd) or existing hosts.
network() {
  local env=$1 nonce=$2 n
  echo "{"
  echo "  network.nixpkgs = $REPO/tests/nixpkgs;"
  for n in "${NAMES[@]}"; do
    if [[ $env == libvirtd ]]; then
      echo "  $n = { deployment.targetEnv = \"libvirtd\"; deployment.libvirtd = { domainType = \"$TYPE\"; memorySize = 384; headless = true; storagePool = \"$POOL\"; networks = [ { type = \"user\"; } ]; }; environment.etc.bench.text = \"$nonce\"; };"
    else
      echo "  $n = { deployment.targetHost = \"$n\"; environment.etc.bench.text = \"$nonce\"; };"
    fi
  done
  echo "}"
}

now() { date +%s.%N; }
vm_times=()
host_times=()
for ((round = 1; round <= R; round++)); do
  nonce="bench-vm-$$-$round"
  # VMs: create → deployed.
  network libvirtd "$nonce" > "$WORK/vm.nix"
  rm -f "$WORK/vm.nixops"
  export NIXOPS_STATE=$WORK/vm.nixops
  "$NIXOPS" create "$WORK/vm.nix" -d vms >/dev/null 2>&1
  t0=$(now)
  "$NIXOPS" deploy -d vms > "$WORK/vm-deploy.log" 2>&1 || { tail -20 "$WORK/vm-deploy.log" >&2; die "deploying the VMs failed"; }
  t1=$(now)
  vm_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')")
  "$NIXOPS" destroy -d vms --confirm >/dev/null 2>&1
  # Existing hosts: the same machines, deployed.
  network none "$nonce-hosts" > "$WORK/hosts.nix"
  "$FLEET_SH" start "$WORK/fleet" "${NAMES[@]}" >/dev/null
  export NIXOPS_STATE=$WORK/hosts.nixops
  rm -f "$NIXOPS_STATE"
  "$FLEET_SH" run "$WORK/fleet" -- "$NIXOPS" create "$WORK/hosts.nix" -d hosts >/dev/null 2>&1
  t0=$(now)
  "$FLEET_SH" run "$WORK/fleet" -- "$NIXOPS" deploy -d hosts > "$WORK/hosts-deploy.log" 2>&1 || { tail -20 "$WORK/hosts-deploy.log" >&2; die "deploying the hosts failed"; }
  t1=$(now)
  host_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')")
  "$FLEET_SH" stop "$WORK/fleet" >/dev/null
  rm -rf "$WORK/fleet"
  log "round $round: VMs ${vm_times[-1]} s, hosts ${host_times[-1]} s"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
vm=$(median "${vm_times[@]}")
hosts=$(median "${host_times[@]}")
printf '\nN=%s machines, %s round(s), domain type %s (%s), load before: %s\n\n' \
  "$N" "$R" "$TYPE" "$([[ $TYPE == kvm ]] && echo KVM || echo emulation)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| what | wall s (median) |\n|---|---|\n'
printf '| create → deployed VMs | %.2f |\n' "$vm"
printf '| deploy to existing test hosts | %.2f |\n' "$hosts"
printf '| VMs ÷ hosts | %s |\n' "$(awk -v a="$vm" -v b="$hosts" 'BEGIN { printf "%.1f", a / b }')"
