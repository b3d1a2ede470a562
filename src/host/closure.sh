# The closure of store path $1 in this machine's store, one path a line.
exec nix-store --query --requisites "$1"
