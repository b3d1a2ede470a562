#!/usr/bin/env bash
# Installs what nixops, its tests and its demo need on a Debian machine:
# Nix (the CLI the tool drives), OpenSSH (client for the tool, server for the
# test hosts), static busybox (the stand-in OS is built with it), sqlite3 (a
# test writes a NixOps state file with it), sudo (non-root deploys to test hosts),
# Debian's shellcheck (a test lints every shell script with it), postgresql (the
# tests' private PostgreSQL server, tests/postgres/server.sh), git (the
# deploy history records a network's commit), rsync (NixOps 2.0 sends keys
# with it in tests/nixops_systems.rs) and inotify-tools (that test runs
# NixOps' key units' scripts on the test hosts); for the virtual machines
# (docs/virtual-machines.md): QEMU, libvirt's daemon with its QEMU driver and
# virsh (tests/vm/libvirt.sh starts them), Debian's cloud kernel (the VMs'
# kernel), and what the stand-in's make-disk-image.nix makes disk images
# with: e2fsprogs, dosfstools, mtools, syslinux, fdisk, fakeroot, cpio and
# qemu-utils. (passt is not needed: libvirt 9.0 here does not take it.)
set -euo pipefail
packages=(nix-bin openssh-client openssh-server busybox-static sqlite3 sudo util-linux procps iproute2 psmisc shellcheck postgresql git rsync inotify-tools sshfs tmux
  qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients linux-image-cloud-amd64
  e2fsprogs dosfstools mtools syslinux syslinux-common fdisk fakeroot cpio)
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
# NixOps 2.0 itself, which the interchange tests drive: from the team's copy
# in ../shared/peers/nixops (absent on a user's fresh clone: those tests then
# say they are skipped), with its dependency pins, into target/nixops-2.0.
repo=$(cd "$(dirname "$0")/.." && pwd)
peer=$repo/../shared/peers/nixops
venv=$repo/target/nixops-2.0
if [[ -d $peer && ! -x $venv/bin/nixops ]]; then
  echo "installing NixOps 2.0 from $peer into $venv (for the interchange tests)" >&2
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    pluggy==1.4.0 prettytable==3.9.0 typeguard==4.1.5 typing_extensions==4.9.0
  # Built from a copy: the shared tree is read-only.
  src=$(mktemp -d)
  cp -r "$peer/." "$src/"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$src"
  rm -rf "$src"
  "$venv/bin/nixops" --version >/dev/null
fi
# Its AWS plugin, which the EC2 tests drive (tests/ec2.rs): nixops-aws from
# ../shared/peers/nixops-aws with the boto versions it was written for, and
# the tests' own plugin declaring deployment.autoLuks/autoRaid0 (which
# nixops-aws defines on every machine; NixOps 2.0 moved them into
# nixos-modules-contrib, which is not on PyPI).
aws=$repo/../shared/peers/nixops-aws
if [[ -d $aws && -x $venv/bin/nixops ]] && ! "$venv/bin/python" -c 'import nixops_aws, nixops_contrib_options' 2>/dev/null; then
  echo "installing nixops-aws from $aws into $venv (for the EC2 tests)" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check boto==2.49.0 boto3
  for plugin in "$aws" "$repo/tests/nixops-contrib-options"; do
    src=$(mktemp -d)
    cp -r "$plugin/." "$src/"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$src"
    rm -rf "$src"
  done
  "$venv/bin/python" -c 'import nixops_aws.plugin'
fi
