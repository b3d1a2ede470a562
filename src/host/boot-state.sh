# After a reboot: the boot id, and the system the machine runs (an empty
# line for none).
cat /proc/sys/kernel/random/boot_id
readlink /run/current-system 2>/dev/null || echo
