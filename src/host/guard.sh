# Magic rollback's guard, started detached on the machine by guard-start.sh
# (after activation-lib.sh). It activates the new system, then waits for a
# decision: the deployer confirms, or asks to roll back, or the deadline
# passes, or a later activation supersedes this one.
#
# The decision is the symlink $d/decision, made with `ln -s`, which is atomic
# and fails if it exists: whoever decides first wins and all read the same
# answer. Going back happens only under the activation lock and only while
# this is still the newest activation (see activation-lib.sh).
#
# Arguments: ID TOPLEVEL ACTION TIMEOUT SYNC DEPLOYMENT
me=$1
top=$2
action=$3
timeout=$4
sync=$5
# --no-sync: switch-to-configuration must not flush either.
if [ "$sync" = 0 ]; then export NIXOS_NO_SYNC=1; fi
d=$base/$me
record "$me" "$top" "$6"

say() { echo "$*" >> "$d/log"; }
# guard-start.sh shows this to the deployer while it waits.
waiting() { echo "$*" > "$d/waiting"; wake "$me" ready; }
ticker=
finish() {
  if [ -n "$ticker" ]; then kill "$ticker" 2>/dev/null; fi
  echo "$1" > "$d/outcome.tmp" && mv -f "$d/outcome.tmp" "$d/outcome"
  exit 0
}
nap() { sleep 0.2 2>/dev/null || sleep 1; }

rollback() {
  if ! lock; then
    say "nixops guard: cannot take the activation lock; leaving the machine as it is"
    finish "rolled-back $1 (but the activation lock could not be taken)"
  fi
  first_line "$base/newest"
  if [ "$line" != "$me" ]; then
    unlock
    say "nixops guard: a later activation took over; leaving the machine to it"
    finish superseded
  fi
  say "nixops guard: rolling back ($1)"
  if [ -n "$tprof" ] && [ "$(readlink -f "$profile" 2>/dev/null)" != "$tprof" ]; then
    nix-env -p "$profile" --set "$tprof" >> "$d/log" 2>&1 9>&- || say "nixops guard: could not reset the profile"
    "$tprof/bin/switch-to-configuration" boot >> "$d/log" 2>&1 9>&- || say "nixops guard: could not reset the boot default"
  fi
  if [ -z "$tcur" ]; then
    say "nixops guard: there is no previous system to go back to"
  elif [ "$(readlink -f /run/current-system 2>/dev/null)" != "$tcur" ]; then
    "$tcur/bin/switch-to-configuration" test >> "$d/log" 2>&1 9>&- || say "nixops guard: re-activating $tcur failed"
  fi
  unlock
  finish "rolled-back $1"
}

if ! lock; then
  echo 1 > "$d/rc"
  ln -s failed "$d/decision" 2>/dev/null
  say "nixops guard: cannot take the activation lock"
  finish "rolled-back nothing was activated: the activation lock could not be taken"
fi
take_over "$me"
printf '%s\n%s\n' "$tprof" "$tcur" > "$d/target"
rc=0
why=
if [ "$action" = switch ] && [ "$cprof" != "$top" ]; then
  if ! nix-env -p "$profile" --set "$top" >> "$d/log" 2>&1 9>&-; then
    rc=1
    why="setting the system profile failed"
  elif [ "$sync" = 1 ]; then
    sync
  fi
fi
if [ "$rc" -eq 0 ]; then
  "$top/bin/switch-to-configuration" "$action" >> "$d/log" 2>&1 9>&-
  rc=$?
  why="activation failed with exit code $rc"
fi
unlock
echo "$rc" > "$d/rc.tmp" && mv -f "$d/rc.tmp" "$d/rc"
wake "$me" ready
if [ "$rc" -ne 0 ] && [ "$rc" -ne 100 ]; then
  ln -s failed "$d/decision" 2>/dev/null
fi

end=$(( $(date +%s) + timeout ))
# Waiting for the decision on the FIFO "wake": guard-decide.sh writes to it
# at once; a ticker every 2 s (a decision made some other way, e.g. by
# hand) and every second from the deadline on. Without the FIFO, a poll
# every 0.2 s.
if [ -p "$d/wake" ] && exec 8<>"$d/wake"; then
  (
    trap 'exit 0' TERM
    n=0
    while sleep 1; do
      n=$((n + 1))
      if [ "$n" -ge "$timeout" ] || [ $((n % 2)) -eq 0 ]; then echo t >&8 || exit 0; fi
    done
  ) </dev/null >/dev/null 2>&1 9>&- &
  ticker=$!
fi
while :; do
  dec=$(readlink "$d/decision" 2>/dev/null || true)
  if [ -z "$dec" ] && [ "$(date +%s)" -ge "$end" ]; then
    ln -s timeout "$d/decision" 2>/dev/null
    dec=$(readlink "$d/decision")
  fi
  case "$dec" in
    '') if [ -n "$ticker" ]; then read -r _ <&8 || nap; else nap; fi ;;
    confirmed) finish kept ;;
    superseded)
      say "nixops guard: a later activation took over; leaving the machine to it"
      finish superseded
      ;;
    failed) rollback "$why" ;;
    timeout) rollback "no confirmation within ${timeout} s" ;;
    *) rollback "$dec" ;;
  esac
done
