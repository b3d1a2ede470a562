# Which of the store paths on stdin (one a line) this machine's store lacks,
# one a line. With SUBSTITUTE ($1) = 1, its substituters first provide what
# they can (best effort, quietly: what they cannot is copied to it).
set -f
paths=$(cat)
[ -n "$paths" ] || exit 0
# shellcheck disable=SC2086
missing=$(nix-store --check-validity --print-invalid $paths) || exit 1
if [ "$1" = 1 ] && [ -n "$missing" ]; then
  # shellcheck disable=SC2086
  nix-store --realise $missing >/dev/null 2>&1
  # shellcheck disable=SC2086
  missing=$(nix-store --check-validity --print-invalid $missing) || exit 1
fi
[ -z "$missing" ] || printf '%s\n' "$missing"
