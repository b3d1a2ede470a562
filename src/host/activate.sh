# Activation without a guard, in the SSH session itself (after
# activation-lib.sh): profile, sync, switch-to-configuration, under the
# machine's activation lock, as the newest activation (so no guard of an
# earlier, interrupted deploy can undo it).
#
# Arguments: ID TOPLEVEL ACTION MODE SYNC DEPLOYMENT
# MODE: 0 activate; 1 skip when current (below); 2 only when current: a
# re-activation, needing no guard (below).
me=$1
top=$2
action=$3
skip=$4
sync=$5
# --no-sync: switch-to-configuration must not flush either.
if [ "$sync" = 0 ]; then export NIXOS_NO_SYNC=1; fi
# alwaysActivate off: nothing to do when the machine already runs the system
# (test), boots it (boot), or both (switch).
if [ "$skip" = 1 ]; then
  runs=0 boots=0
  [ "$(readlink -f /run/current-system 2>/dev/null)" = "$top" ] && runs=1
  [ "$(readlink -f "$profile" 2>/dev/null)" = "$top" ] && boots=1
  case "$action:$runs:$boots" in
    test:1:*|boot:*:1|switch:1:1)
      echo __NIXOPS_UNCHANGED__
      exit 0
      ;;
  esac
fi
if [ "$action" = dry-activate ]; then
  exec "$top/bin/switch-to-configuration" dry-activate
fi
need_flock
lock || exit 1
# A re-activation: the machine runs this system, boots it (switch), and its
# newest activation is final. A guard could only go back to this same
# system, so none is needed; anything else (a guard still waiting, another
# system) and nothing is done here: the deployer activates under a guard.
if [ "$skip" = 2 ]; then
  kept=$(newest_kept)
  if [ "$(readlink -f /run/current-system 2>/dev/null)" != "$top" ] ||
     { [ "$action" = switch ] && [ "$(readlink -f "$profile" 2>/dev/null)" != "$top" ]; } ||
     [ "${kept##* }" != "$top" ]; then
    echo __NIXOPS_NOT_CURRENT__
    exit 0
  fi
fi
take_over "$me"
record "$me" "$top" "$6"
rc=0
case "$action" in
  switch|boot)
    if [ "$cprof" != "$top" ]; then
      nix-env -p "$profile" --set "$top" 9>&- || rc=$?
      if [ "$rc" -eq 0 ] && [ "$sync" = 1 ]; then sync; fi
    fi
    ;;
esac
if [ "$rc" -eq 0 ]; then
  "$top/bin/switch-to-configuration" "$action" 9>&-
  rc=$?
fi
case "$rc:$action" in
  0:switch|0:test|100:switch|100:test) ln -s unguarded "$base/$me/decision" ;;
  *) ln -s failed "$base/$me/decision" ;;
esac
echo "$rc" > "$base/$me/outcome"
exit "$rc"
