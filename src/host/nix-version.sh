# The version of this machine's Nix (first contact with a build host).
if ! command -v nix-store >/dev/null 2>&1; then
  echo "error: nix-store not found: this machine has no Nix to build with" >&2
  exit 127
fi
exec nix-store --version
