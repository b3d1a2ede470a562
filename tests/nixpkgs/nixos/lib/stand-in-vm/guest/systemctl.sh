#!/bin/busybox sh
# shellcheck shell=sh
# The stand-in OS's systemctl in VMs (there is no systemd): what a deployer
# asks of it. reboot, poweroff and halt are the real thing (busybox init);
# the system is always "running" and no unit ever failed; anything else is
# logged to /run/systemctl.log and succeeds.
verb=
for a in "$@"; do
  case "$a" in
    -*) ;;
    *) [ -z "$verb" ] && verb=$a ;;
  esac
done
case "$verb" in
  reboot|kexec) exec /bin/busybox reboot ;;
  poweroff|halt) exec /bin/busybox "$verb" ;;
  is-system-running) echo running ;;
  ""|list-units) ;;
  *) echo "$*" >> /run/systemctl.log ;;
esac
exit 0
