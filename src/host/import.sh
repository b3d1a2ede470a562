# Adds the store paths of an export (export.sh on another machine) on stdin
# to this machine's store.
exec nix-store --import >/dev/null
