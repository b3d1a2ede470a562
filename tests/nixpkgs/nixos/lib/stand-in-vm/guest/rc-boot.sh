#!/bin/busybox sh
# shellcheck shell=sh
# Stage 2 of the stand-in OS's VMs (busybox init's sysinit): file systems,
# network by DHCP, first-boot set-up, SSH host key and authorized keys; then
# init starts sshd (/etc/inittab).
PATH=/usr/bin:/bin:/usr/sbin:/sbin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -o remount,rw /
mkdir -p /run/sshd /var/empty /root
chmod 0700 /root
[ -s /etc/hostname ] && hostname -F /etc/hostname

# The network: the loopback, and eth0 by DHCP (QEMU's user-mode network
# answers it).
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
  udhcpc -i eth0 -s /etc/udhcpc.script -q -n -t 20 -T 1 -A 1 >/dev/null 2>&1 ||
    echo "stand-in OS: no DHCP lease on eth0" >/dev/console
fi

# First boot of an image: make Nix know the store paths the image came with
# (as NixOS' stage 2 does with /nix-path-registration).
if [ -f /nix-path-registration ]; then
  nix-store --register-validity < /nix-path-registration && rm -f /nix-path-registration
fi

# The SSH host key, made on first boot, and shown on the console between
# markers (the deployer pins it from there).
if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
  rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub
  ssh-keygen -q -t ed25519 -N '' -C "root@$(hostname)" -f /etc/ssh/ssh_host_ed25519_key
fi
{
  echo "-----BEGIN SSH HOST KEY KEYS-----"
  cat /etc/ssh/ssh_host_ed25519_key.pub
  echo "-----END SSH HOST KEY KEYS-----"
} > /dev/console

# Authorized keys given to this VM by its hypervisor, as systemd's
# credentials in SMBIOS OEM strings (type 11):
#   io.systemd.credential:ssh.authorized_keys.root=<key lines>
# They are added to /etc/ssh/authorized_keys.d/root on every boot.
mkdir -p /etc/ssh/authorized_keys.d
for raw in /sys/firmware/dmi/entries/11-*/raw; do
  [ -f "$raw" ] || continue
  # The strings follow the 5-byte structure, each ended by a NUL.
  tail -c +6 "$raw" | tr '\0' '\n' | sed -n 's/^io\.systemd\.credential:ssh\.authorized_keys\.root=//p'
done > /run/smbios-authorized-keys
if [ -s /run/smbios-authorized-keys ]; then
  touch /etc/ssh/authorized_keys.d/root
  while IFS= read -r key; do
    grep -qxF "$key" /etc/ssh/authorized_keys.d/root || printf '%s\n' "$key" >> /etc/ssh/authorized_keys.d/root
  done < /run/smbios-authorized-keys
fi

# The system this machine boots: the system profile, as NixOS' boot loader
# entries point at it.
if [ -e /nix/var/nix/profiles/system ]; then
  sys=$(readlink -f /nix/var/nix/profiles/system)
  ln -sfn "$sys" /run/booted-system
  ln -sfn "$sys" /run/current-system
fi

# The power button (virsh shutdown, virsh reboot) powers off.
acpid -c /etc/acpi
echo "stand-in OS: up, boot id $(cat /proc/sys/kernel/random/boot_id)" > /dev/console
