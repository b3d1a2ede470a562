# First contact in one round trip (after activation-lib.sh): the boot id;
# whether PATH ($1) is valid in the store ("present"/"missing"; no Nix
# process when the profile already points at it or it does not even exist);
# what /run/current-system points at (an empty line for nothing); and, when
# the newest activation is final, "kept DEPLOYMENT TOPLEVEL".
first_line /proc/sys/kernel/random/boot_id
echo "$line"
p=$1
if [ "$(readlink -f "$profile" 2>/dev/null)" = "$p" ]; then
  echo present
elif [ -e "$p" ] && nix-store --check-validity "$p" >/dev/null 2>&1; then
  echo present
else
  echo missing
fi
readlink /run/current-system 2>/dev/null || echo
newest_kept
