#!/usr/bin/env bash
# Builds the stand-in OS's VM files, shared by every image: Debian's cloud
# kernel, an initrd with busybox and the virtio modules, and the root file
# system's tree (busybox, Debian's sshd and Nix with the libraries they link,
# the boot scripts). Run by Nix outside its sandbox (__noChroot): it takes
# all of it from this machine's Debian packages (scripts/install-deps.sh).
# Inputs (environment): out, scripts (guest/ beside this file).
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
: "${out:?}" "${scripts:?}"

die() { echo "stand-in OS image: $*" >&2; exit 1; }

kver=$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
[[ -n $kver ]] || die "no Debian cloud kernel in /boot (apt-get install linux-image-cloud-amd64)"
[[ -d /usr/lib/modules/$kver ]] || die "no modules for kernel $kver"
for tool in /bin/busybox /usr/sbin/sshd /usr/bin/ssh-keygen /usr/bin/nix-store; do
  [[ -x $tool ]] || die "missing $tool (scripts/install-deps.sh installs it)"
done
mkdir -p "$out"
cp "/boot/vmlinuz-$kver" "$out/kernel"
printf '%s\n' "$kver" > "$out/kernel-version"

# ---- the initrd
ird=$PWD/initrd
mkdir -p "$ird/bin" "$ird/lib/modules"
cp /bin/busybox "$ird/bin/busybox"
for a in $(/bin/busybox --list); do
  [[ -e $ird/bin/$a ]] || ln -s busybox "$ird/bin/$a"
done
# The drivers of a VM's disk, network, entropy source and power button, in
# dependency order.
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
  failover net_failover virtio_net virtio_blk virtio-rng button evdev)
for m in "${modules[@]}"; do
  f=$(modinfo -k "$kver" -n "$m") || die "kernel $kver has no module $m"
  case "$f" in
    (builtin) continue ;;
    (*.ko) cp "$f" "$ird/lib/modules/$m.ko" ;;
    (*.ko.xz) xz -dc "$f" > "$ird/lib/modules/$m.ko" ;;
    (*.ko.zst) zstd -qdc "$f" > "$ird/lib/modules/$m.ko" ;;
    (*) die "unknown module file $f" ;;
  esac
  echo "$m" >> "$ird/lib/modules/order"
done
install -m 0755 "$scripts/initrd-init.sh" "$ird/init"
(cd "$ird" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet --reproducible) | gzip -1 -n > "$out/initrd"

# ---- the root file system's tree
root=$out/root
mkdir -p "$root"/{bin,sbin,usr/lib64,etc/ssh/authorized_keys.d,etc/nix,etc/acpi/PWRF,usr/bin,usr/sbin,usr/lib,root,proc,sys,dev,run,tmp,var/empty,var/log,mnt,boot}
mkdir -p "$root"/nix/store "$root"/nix/var/nix/profiles "$root"/nix/var/nix/gcroots
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do
  [[ -e $root/bin/$a ]] || ln -s busybox "$root/bin/$a"
done
ln -s ../bin/busybox "$root/sbin/init"

# Debian's binaries with every library they load (ldd), at the same paths.
copy_file() {  # copy_file PATH: the file (and the links to it) into the tree
  local p=$1 t
  while :; do
    mkdir -p "$root$(dirname "$p")"
    if [[ -L $p ]]; then
      t=$(readlink "$p")
      [[ -e $root$p || -L $root$p ]] || ln -s "$t" "$root$p"
      [[ $t == /* ]] || t=$(dirname "$p")/$t
      p=$t
    else
      [[ -e $root$p ]] || cp "$p" "$root$p"
      return 0
    fi
  done
}
copy_elf() {
  local lib
  copy_file "$1"
  while read -r lib; do
    [[ -n $lib ]] && copy_file "$lib"
  done < <(ldd "$1" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p')
}
# flock (util-linux): what nixops activates under (busybox has none here).
bins=(/usr/sbin/sshd /usr/bin/ssh-keygen /usr/lib/openssh/sftp-server /usr/bin/nix /usr/bin/flock)
for b in "${bins[@]}"; do copy_elf "$b"; done
for b in /usr/bin/nix-*; do copy_file "$b"; done
[[ -e /usr/libexec/nix/build-remote ]] && copy_file /usr/libexec/nix/build-remote
# The dynamic loader at the path the binaries name.
copy_file /lib64/ld-linux-x86-64.so.2
# The name services Nix and sshd look up (/etc/nsswitch.conf).
for l in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2; do
  [[ -e $l ]] && copy_file "$l"
done

install -m 0755 "$scripts/rc-boot.sh" "$root/etc/rc.boot"
install -m 0755 "$scripts/rc-shutdown.sh" "$root/etc/rc.shutdown"
install -m 0755 "$scripts/udhcpc.sh" "$root/etc/udhcpc.script"
install -m 0755 "$scripts/power-button.sh" "$root/etc/acpi/PWRF/00000080"
install -m 0755 "$scripts/systemctl.sh" "$root/usr/bin/systemctl"

cat > "$root/etc/inittab" <<'TAB'
::sysinit:/etc/rc.boot
::respawn:/usr/sbin/sshd -D -e
::ctrlaltdel:/bin/reboot
::shutdown:/etc/rc.shutdown
TAB
cat > "$root/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
sshd:x:100:65534:sshd privilege separation:/run/sshd:/bin/false
nobody:x:65534:65534:nobody:/var/empty:/bin/false
PW
cat > "$root/etc/group" <<'GR'
root:x:0:
nogroup:x:65534:
GR
cat > "$root/etc/shadow" <<'SH'
root:*:19000:0:99999:7:::
sshd:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
SH
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
echo nixos > "$root/etc/hostname"
cat > "$root/etc/ssh/sshd_config" <<'SSHD'
# The stand-in OS's sshd (Debian's), as NixOS configures its own: root may log
# in with a key, from ~/.ssh/authorized_keys or /etc/ssh/authorized_keys.d/.
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys.d/%u
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxSessions 100
MaxStartups 100
Subsystem sftp /usr/lib/openssh/sftp-server
SetEnv PATH=/run/current-system/sw/bin:/usr/bin:/bin:/usr/sbin:/sbin
SSHD
cat > "$root/etc/nix/nix.conf" <<'NIX'
# The stand-in OS's Nix: offline, single-user (root), no build sandbox.
substituters =
build-users-group =
sandbox = false
experimental-features = nix-command
NIX
chmod 0600 "$root/etc/shadow"
chmod 0700 "$root/root"
chmod 1777 "$root/tmp"
