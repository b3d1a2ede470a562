# Shared by the activation scripts run on a machine (prepended to them):
# the machine's activation lock and the record of its newest activation.
#
# Every activation that may change the system profile or the running system,
# guarded by magic rollback or not, first takes the lock and makes itself
# the newest activation ($base/newest holds its id). A guard touches the
# profile or the running system only while it holds the lock *and* is still
# the newest, so a guard left behind by an interrupted deploy can never undo
# a later one: whichever takes the lock first acts, and the other sees it.
#
# $base/<id>/ is an activation's directory: toplevel and deployment (what
# it activates, for whom), decision (a symlink: "confirmed", "unguarded" for
# a finished activation without a guard, or why it is not kept), outcome
# (how it ended); a guard's also has guard.sh, log, rc (activation's exit
# code) and target (the system to go back to).

base=/run/nixops-guard
profile=/nix/var/nix/profiles/system

# Exclusive, on fd 9; released when the holder exits, however it exits.
# Commands run while holding it get 9>&- so they cannot keep it alive.
# Waiting for it is said (through `waiting`, which a script may redefine):
# an interrupted deploy's activation may still be running on the machine.
lock() {
  { [ -d "$base" ] || mkdir -p "$base"; } && exec 9>>"$base/lock" || return 1
  flock -n -x 9 && return 0
  waiting "waiting for the machine's activation lock: another activation is still running there (an interrupted deploy's, or a guard going back)"
  flock -x 9
}

waiting() { echo "$*" >&2; }

# first_line FILE: its first line in $line ("" when it cannot be read),
# without starting a process (a fleet's activations start thousands).
first_line() {
  line=
  if [ -r "$1" ]; then { IFS= read -r line || :; } < "$1"; fi
  return 0
}

# wake ID FIFO: a line to activation ID's FIFO FIFO, for whoever waits on it
# ("wake": its guard, for a decision; "ready": guard-start.sh, for the end of
# activation). Opened read-write, so it never blocks; nothing happens when
# there is no FIFO or nobody has it open.
wake() {
  [ -p "$base/$1/$2" ] || return 0
  { echo w >&6; } 6<>"$base/$1/$2" 2>/dev/null || true
}

unlock() {
  flock -u 9
  exec 9>&-
}

need_flock() {
  command -v flock >/dev/null 2>&1 && return 0
  echo "error: this machine has no flock(1) (util-linux), which nixops needs to activate safely" >&2
  exit 1
}

# take_over ID (with the lock held): makes activation ID the newest. A guard
# of an earlier activation that has not decided yet is superseded: it exits
# without touching anything. Sets tprof and tcur to the system to go back to
# should ID's system not be kept: what runs now, or, when the previous
# activation was never confirmed, where that one would have gone back to;
# and cprof to what the profile points at now.
# shellcheck disable=SC2034 # tprof, tcur and cprof are its results
take_over() {
  tprof=$(readlink -f "$profile" 2>/dev/null || true)
  cprof=$tprof
  tcur=$(readlink -f /run/current-system 2>/dev/null || true)
  first_line "$base/newest"
  old=$line
  if [ -n "$old" ] && [ -d "$base/$old" ]; then
    ln -s superseded "$base/$old/decision" 2>/dev/null || true
    wake "$old" wake
    if [ "$(readlink "$base/$old/decision")" != confirmed ] && [ -f "$base/$old/target" ]; then
      { read -r tprof; read -r tcur; } < "$base/$old/target"
    fi
  fi
  echo "$1" > "$base/newest.tmp" && mv -f "$base/newest.tmp" "$base/newest"
  # Guards that ended a while ago are of no more use to anyone (looked for
  # once a few have ended: a process less for every other activation).
  set -- "$base"/*/outcome
  if [ $# -gt 8 ]; then
    find "$base" -mindepth 2 -maxdepth 2 -name outcome -mmin +30 2>/dev/null |
      while read -r f; do rm -rf "${f%/outcome}"; done
  fi
}

# record ID TOPLEVEL DEPLOYMENT: what activation ID is about, for whoever
# asks later which system an interrupted deploy left behind.
record() {
  mkdir -p "$base/$1" &&
    echo "$2" > "$base/$1/toplevel" &&
    echo "$3" > "$base/$1/deployment"
}

# Prints "kept DEPLOYMENT TOPLEVEL" when the newest activation is final
# (confirmed, or done without a guard), so the deployer can record what the
# machine runs even if the deploy that activated it died before it could.
newest_kept() {
  first_line "$base/newest"
  n=$line
  [ -n "$n" ] || return 0
  case "$(readlink "$base/$n/decision" 2>/dev/null)" in
    confirmed|unguarded)
      first_line "$base/$n/deployment"
      kd=$line
      first_line "$base/$n/toplevel"
      echo "kept $kd $line" ;;
  esac
}
