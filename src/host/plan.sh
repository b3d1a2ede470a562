# What `plan` asks a machine, in one round trip (after closure-lib.sh), changing
# nothing there (a dry-activate writes only what NixOS' own does).
#
# Arguments: TOPLEVEL CLOSURE DRY NEWCLOSURE
#
# Prints what it runs (__NIXOPS_CURRENT__=) and boots (__NIXOPS_PROFILE__=),
# and stops there when it runs TOPLEVEL. Otherwise: whether TOPLEVEL is in
# its store (__NIXOPS_NEW__=present or missing; no Nix process when the
# profile points at it); with CLOSURE = 1, the closure of what it runs
# (closure-lib.sh's lines between __NIXOPS_CLOSURE__ and __NIXOPS_END__); with
# DRY = 1, when TOPLEVEL is there and it runs a system, what TOPLEVEL's
# switch-to-configuration dry-activate says (on stderr, where NixOS' goes),
# then __NIXOPS_DRY__=<its exit code>; with NEWCLOSURE = 1, when TOPLEVEL is
# there, its closure (between __NIXOPS_NEW_CLOSURE__ and __NIXOPS_END__).
new=$1
profile=/nix/var/nix/profiles/system
cur=$(readlink /run/current-system 2>/dev/null || true)
prof=$(readlink -f "$profile" 2>/dev/null || true)
echo "__NIXOPS_CURRENT__=$cur"
echo "__NIXOPS_PROFILE__=$prof"
[ "$cur" = "$new" ] && exit 0
if [ "$prof" = "$new" ] || { [ -e "$new" ] && nix-store --check-validity "$new" >/dev/null 2>&1; }; then
  has=present
else
  has=missing
fi
echo "__NIXOPS_NEW__=$has"
if [ "$2" = 1 ] && [ -n "$cur" ]; then
  echo "__NIXOPS_CLOSURE__"
  closure "$cur"
  echo "__NIXOPS_END__"
fi
if [ "$4" = 1 ] && [ "$has" = present ]; then
  echo "__NIXOPS_NEW_CLOSURE__"
  closure "$new"
  echo "__NIXOPS_END__"
fi
if [ "$3" = 1 ] && [ "$has" = present ] && [ -n "$cur" ]; then
  "$new/bin/switch-to-configuration" dry-activate </dev/null 1>&2
  echo "__NIXOPS_DRY__=$?"
fi
exit 0
