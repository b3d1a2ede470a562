#!/usr/bin/env bash
# Self-test for fleet.sh.  Run as root:  bash tests/fleet/selftest.sh
# Uses only 127.0.0.1.  Prints "N passed, M failed"; exit status 0 iff M=0.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FLEET_SH=$HERE/fleet.sh
F=$(mktemp -d /tmp/fleet-selftest.XXXXXX)
F30=$(mktemp -d /tmp/fleet-selftest30.XXXXXX)
PASS=0 FAIL=0

ok()   { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }

fleet() { "$FLEET_SH" "$@"; }
# ssh to a test host through the fleet's ~/.ssh/config
fssh() { timeout 30 "$FLEET_SH" run "$F" -- ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new "$@"; }
no_procs() { ! pgrep -f "$1" >/dev/null; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

cleanup() {
  "$FLEET_SH" stop "$F" >/dev/null 2>&1 || true
  "$FLEET_SH" stop "$F30" >/dev/null 2>&1 || true
  rm -rf "$F" "$F30"
}
trap cleanup EXIT

# ---- state of the real machine, to check it is left alone
REAL_BOOT=$(cat /proc/sys/kernel/random/boot_id)
REAL_RUN=$(find /run -mindepth 1 -maxdepth 1 -printf '%f\n' | sort)
# What a host's nix-env writes must stay in its private /nix. (Not a count of
# /nix/store: other builds on this machine may add paths meanwhile.)
REAL_PROFILE=$(readlink /nix/var/nix/profiles/system 2>/dev/null || echo none)
REAL_SYSTEMCTL=$(sha256sum /usr/bin/systemctl)

# ---- build a trivial store path on the deployer (the real machine)
# shellcheck disable=SC2016 # $out is the builder's
P=$(nix-build --no-out-link --option substituters '' -E \
  'derivation { name="fleet-selftest"; system=builtins.currentSystem; builder="/bin/busybox"; args=["sh" "-c" "echo hi > $out"]; }' 2>/dev/null | tail -n1)
check "built a trivial store path ($P)" test -f "$P"

# ---- start 3 hosts
t0=$(now_ms)
check "start 3 hosts" fleet start "$F" a b c:$((20000 + RANDOM % 10000))
echo "     (start of 3 hosts took $(( $(now_ms) - t0 )) ms)"
for h in a b c; do
  check "port file for $h" test -s "$F/hosts/$h/port"
done
check "ssh config has Host a" grep -q '^Host a$' "$F/ssh/config"
check "ssh config ends with Host *" bash -c "grep '^Host' '$F/ssh/config' | tail -n1 | grep -qx 'Host \*'"
check "env file sources and lists hosts" bash -c "source '$F/env' && [ \"\$FLEET_HOSTS\" = 'a b c' ] && [ \"\$FLEET_DIR\" = '$F' ] && [ -n \"\$FLEET_PORT_a\" ]"
check "client key exists" test -f "$F/ssh/id_ed25519"
check "status says 3 up" bash -c "[ \$('$FLEET_SH' status '$F' | grep -c ' up\$') = 3 ]"

# ---- boot ids: private, distinct
declare -A BOOT
for h in a b c; do
  BOOT[$h]=$(fssh "$h" cat /proc/sys/kernel/random/boot_id)
  check "ssh $h works and boot id is private (${BOOT[$h]})" test -n "${BOOT[$h]}" -a "${BOOT[$h]}" != "$REAL_BOOT"
done
check "boot ids differ between hosts" test "${BOOT[a]}" != "${BOOT[b]}" -a "${BOOT[b]}" != "${BOOT[c]}" -a "${BOOT[a]}" != "${BOOT[c]}"
check "exec sees the same boot id as ssh" test "$(fleet exec "$F" a -- cat /proc/sys/kernel/random/boot_id)" = "${BOOT[a]}"

# ---- private, empty /nix; private /run; fake binaries; nix.conf
check "ls /nix on host a is empty" test -z "$(fssh a ls -A /nix)"
check "/run on host a holds only sshd" test "$(fssh a ls -A /run)" = sshd
check "host sees its own /etc/nix/nix.conf" bash -c "$(declare -f fssh); FLEET_SH='$FLEET_SH' F='$F' fssh a cat /etc/nix/nix.conf | grep -q '^build-users-group =\$'"
check "PATH on host starts with host bin (systemctl resolves to fake)" test "$(fssh a 'command -v systemctl')" = "$F/hosts/a/bin/systemctl"
check "/usr/bin/systemctl on host is the fake" test "$(fssh a head -c 17 /usr/bin/systemctl)" = '#!/bin/busybox sh'
# shellcheck disable=SC2016 # expanded on the host
check "STUB_HOST_DIR is set on host" test "$(fssh a 'echo $STUB_HOST_DIR')" = "$F/hosts/a"

# ---- exit code and stdio passthrough of `run`
fleet run "$F" -- sh -c 'exit 7'; rc=$?
check "run passes exit code through (7)" test "$rc" = 7
check "run passes stdin/stdout through" test "$(echo piped | fleet run "$F" -- cat)" = piped
check "run mounts the fleet ssh dir as ~/.ssh" test "$(fleet run "$F" -- sh -c 'cat ~/.ssh/config' | head -n1)" = "$(head -n1 "$F/ssh/config")"

fleet exec "$F" a -- sh -c 'exit 3'; rc=$?
check "exec passes exit code through (3)" test "$rc" = 3
check "exec passes stdin/stdout through" test "$(echo piped | fleet exec "$F" a -- cat)" = piped

# ---- ssh-count
n0=$(fleet ssh-count "$F" b)
fssh b true; fssh b true
n1=$(fleet ssh-count "$F" b)
check "ssh-count counts logins ($n0 -> $n1)" test "$n1" = $((n0 + 2))

# ---- nix-copy-closure into host a only
export NIX_SSHOPTS="-o BatchMode=yes"
check "nix-copy-closure --to a" timeout 60 "$FLEET_SH" run "$F" -- nix-copy-closure --to a "$P"
check "path exists on host a" fssh a test -f "$P"
check "path content on host a" test "$(fssh a cat "$P")" = hi
check "path is valid in host a's store" fssh a nix-store --check-validity "$P"
check "path absent on host b" bash -c "! $FLEET_SH run $F -- ssh -o BatchMode=yes b test -e $P"
check "path stored in the host dir" test -f "$F/hosts/a/nix/store/${P#/nix/store/}"

# ---- fake systemctl
printf 'foo.service Foo Service\nbar.mount\n' > "$F/hosts/a/failed-units"
out=$(fssh a systemctl --failed --no-legend --plain --no-pager)
check "systemctl --failed lists failed units" test "$out" = $'foo.service loaded failed failed Foo Service\nbar.mount loaded failed failed bar.mount'
out=$(fssh a systemctl list-units --failed --no-legend --plain)
check "systemctl list-units --failed lists failed units" test "$(echo "$out" | awk '{print $1}' | tr '\n' ' ')" = "foo.service bar.mount "
check "systemctl --failed on b is empty" test -z "$(fssh b systemctl --failed --no-legend --plain)"
check "systemctl is-system-running" test "$(fssh a systemctl is-system-running)" = running
fssh a systemctl restart sshd.service
check "other systemctl calls are logged" grep -qx 'restart sshd.service' "$F/hosts/a/systemctl.log"

# ---- fake reboot via `systemctl reboot`
fleet exec "$F" a -- nix-env -p /nix/var/nix/profiles/system --set "$P" >/dev/null 2>&1
check "system profile set on a" fleet exec "$F" a -- test -L /nix/var/nix/profiles/system
fssh a touch /run/marker
check "marker in host /run" test -e "$F/hosts/a/run/marker"
timeout 30 "$FLEET_SH" run "$F" -- ssh -o BatchMode=yes a 'sleep 25' >/dev/null 2>&1 &
bgpid=$!
sleep 0.5
t0=$(now_ms)
fssh a systemctl reboot; rc=$?
dt=$(( $(now_ms) - t0 ))
check "ssh a systemctl reboot returns 0 at once (${dt} ms)" test "$rc" = 0 -a "$dt" -lt 3000
wait $bgpid; rc=$?
dt=$(( $(now_ms) - t0 ))
check "existing ssh connection dropped (rc $rc after ${dt} ms)" test "$rc" = 255 -a "$dt" -lt 5000
newboot=
for _ in $(seq 100); do
  newboot=$(timeout 5 "$FLEET_SH" run "$F" -- ssh -o BatchMode=yes -o ConnectTimeout=2 a cat /proc/sys/kernel/random/boot_id 2>/dev/null) && break
  sleep 0.1
done
dt=$(( $(now_ms) - t0 ))
check "host a back after reboot with new boot id (${dt} ms)" test -n "$newboot" -a "$newboot" != "${BOOT[a]}" -a "$dt" -lt 10000
check "boot id file updated" test "$(cat "$F/hosts/a/boot_id")" = "$newboot"
check "/run emptied by reboot" bash -c "! test -e '$F/hosts/a/run/marker'"
check "/run/sshd recreated" test -d "$F/hosts/a/run/sshd"
check "/run/booted-system -> system profile" test "$(fssh a readlink /run/booted-system)" = "$P"
check "/run/current-system -> system profile" test "$(fssh a readlink /run/current-system)" = "$P"
check "reboot recorded" test "$(wc -l < "$F/hosts/a/reboots.log")" = 1
check "store survives reboot" fssh a test -f "$P"
check "exec works after reboot" test "$(fleet exec "$F" a -- cat /proc/sys/kernel/random/boot_id)" = "$newboot"

# ---- `reboot` on PATH, /sbin/reboot, and fleet.sh reboot --wait
old=$(fleet exec "$F" b -- cat /proc/sys/kernel/random/boot_id)
check "ssh b reboot returns 0" fssh b reboot
for _ in $(seq 100); do
  nb=$(timeout 5 "$FLEET_SH" run "$F" -- ssh -o BatchMode=yes -o ConnectTimeout=2 b cat /proc/sys/kernel/random/boot_id 2>/dev/null) && [ "$nb" != "$old" ] && break
  sleep 0.1
done
check "b rebooted via 'reboot'" test -n "$nb" -a "$nb" != "$old"
old=$(fleet exec "$F" c -- cat /proc/sys/kernel/random/boot_id)
check "ssh c /sbin/reboot returns 0" fssh c /sbin/reboot
for _ in $(seq 100); do
  [ "$(cat "$F/hosts/c/boot_id")" != "$old" ] && fssh c true 2>/dev/null && break
  sleep 0.1
done
check "c rebooted via /sbin/reboot" test "$(cat "$F/hosts/c/boot_id")" != "$old"
check "fleet.sh reboot --wait on c" fleet reboot "$F" c --wait
check "c rebooted twice" test "$(wc -l < "$F/hosts/c/reboots.log")" = 2
check "c answers ssh after reboots" test "$(fssh c cat /proc/sys/kernel/random/boot_id)" = "$(cat "$F/hosts/c/boot_id")"

# ---- the real machine is untouched
check "real boot id unchanged" test "$(cat /proc/sys/kernel/random/boot_id)" = "$REAL_BOOT"
check "real /run unchanged" test "$(find /run -mindepth 1 -maxdepth 1 -printf '%f\n' | sort)" = "$REAL_RUN"
check "real /run has no booted-system/marker" bash -c "! test -e /run/marker && ! test -e /run/booted-system"
check "real system profile unchanged" test "$(readlink /nix/var/nix/profiles/system 2>/dev/null || echo none)" = "$REAL_PROFILE"
check "host's profile is in its own /nix" test -L "$F/hosts/a/nix/var/nix/profiles/system"
check "real systemctl unchanged" test "$(sha256sum /usr/bin/systemctl)" = "$REAL_SYSTEMCTL"

# ---- stop / restart
timeout 30 "$FLEET_SH" run "$F" -- ssh -o BatchMode=yes a 'sleep 25' >/dev/null 2>&1 &
bgpid=$!
sleep 0.5
check "stop a" fleet stop "$F" a
wait $bgpid; rc=$?
check "session of a dropped by stop (rc $rc)" test "$rc" = 255
# By the host's own /run, not the namespace id: ids are reused at once by
# the next namespace anyone makes.
check "no process left in a's namespace" bash -c "for p in /proc/[0-9]*; do [ \"\$p/root/run\" -ef '$F/hosts/a/run' ] && exit 1; done; exit 0"
check "status says a down" bash -c "'$FLEET_SH' status '$F' | grep -qx 'a [0-9]* down'"
porta=$(cat "$F/hosts/a/port")
check "restart a" fleet start "$F" a
check "a keeps its port" test "$(cat "$F/hosts/a/port")" = "$porta"
check "a: new boot after restart" test "$(fssh a cat /proc/sys/kernel/random/boot_id)" != "$newboot"
check "a: store persists across stop/start" fssh a test -f "$P"
check "start of a running host is a no-op" fleet start "$F" a
check "stop all" fleet stop "$F"
check "stop is idempotent" fleet stop "$F"
check "no process of the fleet left (pgrep -f)" no_procs "$F"
left=0
for h in a b c; do
  ns=$(cat "$F/hosts/$h/mntns" 2>/dev/null || true)
  # shellcheck disable=SC2010 # ls -l shows where the links point
  [ -n "$ns" ] && ls -l /proc/[0-9]*/ns/mnt 2>/dev/null | grep -qF "$ns" && left=1
done
check "no mntns files / processes left" test "$left" = 0

# ---- 30 hosts
mapfile -t names < <(seq -f 'h%02g' 1 30)
t0=$(now_ms)
fleet start "$F30" "${names[@]}" >/dev/null; rc=$?
t_start=$(( $(now_ms) - t0 ))
check "start 30 hosts (${t_start} ms)" test "$rc" = 0
check "30 hosts up" test "$(fleet status "$F30" | grep -c ' up$')" = 30
check "30 distinct ports" test "$(cat "$F30"/hosts/*/port | sort -u | wc -l)" = 30
check "ssh to h17 and h30" bash -c "[ -n \"\$(timeout 20 '$FLEET_SH' run '$F30' -- ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new h17 cat /proc/sys/kernel/random/boot_id)\" ] && timeout 20 '$FLEET_SH' run '$F30' -- ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new h30 true"
t0=$(now_ms)
fleet stop "$F30"; rc=$?
t_stop=$(( $(now_ms) - t0 ))
check "stop 30 hosts (${t_stop} ms)" test "$rc" = 0
check "no process of the 30-host fleet left (pgrep -f)" no_procs "$F30"
echo "     timing: 30 hosts start ${t_start} ms, stop ${t_stop} ms"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
