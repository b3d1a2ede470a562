#!/bin/busybox sh
# shellcheck shell=sh
# Stage 1 of the stand-in OS's VMs (the initrd's /init): load the virtio
# drivers Debian's cloud kernel has as modules, find the root file system by
# the root= of the kernel command line (LABEL=, UUID= or a device) and hand
# over to its /sbin/init.
PATH=/bin
export PATH
mkdir -p /proc /sys /dev /sysroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# In dependency order (virtio_ring first). The list is written by the image
# builder, one module name a line.
while read -r m; do
  insmod "/lib/modules/$m.ko" || echo "stage 1: could not load $m" >&2
done < /lib/modules/order
root=
read -r cmdline < /proc/cmdline
# shellcheck disable=SC2086 # the command line's words
for arg in $cmdline; do
  case "$arg" in
    root=*) root=${arg#root=} ;;
  esac
done
[ -n "$root" ] || root=LABEL=nixos
dev=
i=0
while [ $i -lt 100 ]; do
  case "$root" in
    LABEL=*|UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
    *) [ -b "$root" ] && dev=$root ;;
  esac
  [ -n "$dev" ] && break
  sleep 0.1
  i=$((i + 1))
done
if [ -z "$dev" ] || ! mount -t ext4 -o rw "$dev" /sysroot; then
  echo "stage 1: cannot mount the root file system ($root)" >&2
  exec sh
fi
mount --move /dev /sysroot/dev
umount /sys /proc
exec switch_root /sysroot /sbin/init
