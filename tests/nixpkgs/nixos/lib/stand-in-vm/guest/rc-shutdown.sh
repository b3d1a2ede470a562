#!/bin/busybox sh
# shellcheck shell=sh
# Busybox init's shutdown action in the stand-in OS's VMs: stop the
# services, then leave the root file system clean.
PATH=/usr/bin:/bin:/usr/sbin:/sbin
export PATH
echo "stand-in OS: shutting down" > /dev/console
killall sshd acpid 2>/dev/null
sync
umount -a -r 2>/dev/null
mount -o remount,ro / 2>/dev/null
sync
