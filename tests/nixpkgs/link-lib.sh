#!/usr/bin/env bash
# Points tests/nixpkgs/lib (a generated, git-ignored symlink) at nixpkgs' real
# `lib`, so that the stand-in nixpkgs evaluates every network with the module
# system real NixOS machines use. The one place that decides which lib a run
# uses: scripts/test.sh, scripts/demo.sh, the bench scripts, check.sh and
# tests/common/mod.rs (before any integration test) all call it.
#
# Looked for, in this order (the first with default.nix and modules.nix wins):
#   1. $NIXOPS_TEST_NIXPKGS_LIB (an error if set but not a lib)
#   2. <repo>/../shared/nixpkgs-lib/lib
#   3. /work/shared/nixpkgs-lib/lib
# and only then the small look-alike kept in tests/nixpkgs/minimal-lib, with a
# warning (NIXOPS_TEST_NIXPKGS_LIB=minimal asks for it). Says on stderr which
# one it uses; prints its path on stdout. Never writes into the real lib.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
link="$here/lib"

is_lib() { [[ -f "$1/default.nix" && -f "$1/modules.nix" ]]; }

minimal() {
  # Relative, so that the link survives moving the checkout.
  target="minimal-lib"
  {
    echo "WARNING: $1; the stand-in nixpkgs uses its MINIMAL lib (tests/nixpkgs/minimal-lib),"
    echo "WARNING: so the tool's Nix code is NOT checked against nixpkgs' real module system in this run."
  } >&2
}

target=""
if [[ "${NIXOPS_TEST_NIXPKGS_LIB:-}" == minimal ]]; then
  minimal "NIXOPS_TEST_NIXPKGS_LIB=minimal"
elif [[ -n "${NIXOPS_TEST_NIXPKGS_LIB:-}" ]]; then
  if ! is_lib "$NIXOPS_TEST_NIXPKGS_LIB"; then
    echo "error: NIXOPS_TEST_NIXPKGS_LIB=$NIXOPS_TEST_NIXPKGS_LIB is not nixpkgs' lib (no default.nix and modules.nix there)" >&2
    exit 1
  fi
  target="$(cd "$NIXOPS_TEST_NIXPKGS_LIB" && pwd)"
  echo "nixpkgs lib: $target (from \$NIXOPS_TEST_NIXPKGS_LIB)" >&2
else
  for c in "$repo/../shared/nixpkgs-lib/lib" /work/shared/nixpkgs-lib/lib; do
    if is_lib "$c"; then
      target="$(cd "$c" && pwd)"
      echo "stand-in nixpkgs: evaluating with nixpkgs' real lib ($target)" >&2
      break
    fi
  done
  [[ -n "$target" ]] || minimal "nixpkgs' real lib not found (\$NIXOPS_TEST_NIXPKGS_LIB unset, no $repo/../shared/nixpkgs-lib/lib, no /work/shared/nixpkgs-lib/lib)"
fi

if [[ -e "$link" && ! -L "$link" ]]; then
  echo "error: $link is not a symlink (a leftover of an older checkout?); remove it and run again" >&2
  exit 1
fi
# Replaced atomically, and only when it changes: tests may be reading it.
if [[ "$(readlink "$link" 2>/dev/null || true)" != "$target" ]]; then
  tmp="$here/.lib.tmp.$$"
  ln -sfn "$target" "$tmp"
  mv -fT "$tmp" "$link"
fi
readlink -f "$link"
