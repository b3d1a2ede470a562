#!/usr/bin/env bash
# Installs what nixops, its tests and its demo need on a Debian machine:
# Nix (the CLI the tool drives), OpenSSH (client for the tool, server for the
# test hosts), static busybox (the stand-in OS is built with it), sqlite3 (a
# test writes a NixOps state file with it), sudo (non-root deploys to test hosts),
# Debian's shellcheck (a test lints every shell script with it), postgresql (the
# tests' private PostgreSQL server, tests/postgres/server.sh) and git (the
# deploy history records a network's commit).
set -euo pipefail
packages=(nix-bin openssh-client openssh-server busybox-static sqlite3 sudo util-linux procps iproute2 psmisc shellcheck postgresql git)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package scripts may fail to start services where no init system
  # runs; the binaries are what we need.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || true
  for p in "${missing[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || { echo "error: could not install $p" >&2; exit 1; }
  done
fi
# Nix builds as root run as the nixbld build users (Debian's nix-setup-systemd
# creates them; where that package cannot run, e.g. without systemd, we do).
if ! getent group nixbld >/dev/null; then
  echo "creating Nix build users (group nixbld)" >&2
  groupadd --system nixbld
fi
for i in $(seq 1 8); do
  getent passwd "nixbld$i" >/dev/null && continue
  useradd --system --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
    --gid nixbld --groups nixbld --comment "Nix build user $i" "nixbld$i"
done
command -v cargo >/dev/null || { echo "error: cargo (Rust) is needed" >&2; exit 1; }
