# Starts magic rollback's guard (guard.sh, read from stdin) detached, so it
# survives the SSH connection dropping, then waits until it has activated
# and shows activation's output. Runs after activation-lib.sh.
#
# Arguments: ID TOPLEVEL ACTION TIMEOUT SYNC DEPLOYMENT (passed on to guard.sh)
need_flock
umask 077
d=$base/$1
mkdir -p "$d" && cat > "$d/guard.sh" || exit 1
# The guard wakes us through "ready" (when it has activated, or waits for
# the lock) and waits for its decision on "wake" (guard.sh): no polling,
# which on a fleet of small machines costs more than the activation. Where
# there is no mkfifo, both poll.
ready=
mkfifo "$d/wake" 2>/dev/null
if mkfifo "$d/ready" 2>/dev/null && exec 7<>"$d/ready"; then ready=1; fi
if command -v setsid >/dev/null 2>&1; then detach="setsid"; else detach="nohup"; fi
# Twice detached: the guard's parent is gone at once, so it belongs to no
# SSH session that something might kill.
( $detach sh "$d/guard.sh" "$@" </dev/null >/dev/null 2>&1 7>&- & )
echo __NIXOPS_GUARD_STARTED__
i=0
said=
while [ ! -e "$d/rc" ]; do
  if [ -z "$said" ] && [ -s "$d/waiting" ]; then cat "$d/waiting" >&2; said=1; fi
  if [ -n "$ready" ]; then
    read -r _ <&7 || ready=
  elif [ $i -lt 40 ]; then sleep 0.05 2>/dev/null || sleep 1; else sleep 0.2 2>/dev/null || sleep 1; fi
  i=$((i + 1))
done
cat "$d/log" 2>/dev/null
first_line "$d/rc"
echo "__NIXOPS_RC__ $line"
