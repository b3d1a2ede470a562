# What `check` asks a machine, in one round trip (after activation-lib.sh):
# key=value lines for its boot id, current system, systemd's state, load,
# failed units, and the newest activation when it is final.
echo "boot=$(cat /proc/sys/kernel/random/boot_id)"
echo "current=$(readlink /run/current-system 2>/dev/null)"
echo "state=$(systemctl is-system-running 2>/dev/null)"
read -r a b c _ < /proc/loadavg && echo "load=$a $b $c"
systemctl --failed --no-legend --plain --no-pager 2>/dev/null | while read -r unit _; do
  case "$unit" in ''|'●'|'*') ;; *) echo "failed=$unit" ;; esac
done
k=$(newest_kept); [ -z "$k" ] || echo "newest=$k"
