# Writes the store paths on stdin (one a line) to stdout in nix-store's
# export format, references first, for another machine's `import.sh`.
set -f
# Store paths hold no white space or glob characters but `?` (set -f).
# shellcheck disable=SC2046
exec nix-store --export $(cat)
