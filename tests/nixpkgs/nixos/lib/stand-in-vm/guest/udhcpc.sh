#!/bin/busybox sh
# shellcheck shell=sh
# udhcpc's script in the stand-in OS's VMs: configure the lease.
# shellcheck disable=SC2154 # udhcpc's variables
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "${router:-}" ]; then
      for r in $router; do ip -4 route add default via "$r" dev "$interface" && break; done
    fi
    if [ -n "${dns:-}" ]; then
      for d in $dns; do echo "nameserver $d"; done > /etc/resolv.conf
    fi
    ;;
esac
exit 0
