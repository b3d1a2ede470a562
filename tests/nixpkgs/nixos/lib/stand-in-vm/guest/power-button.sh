#!/bin/busybox sh
# shellcheck shell=sh
# acpid's action for the power button in the stand-in OS's VMs.
exec /bin/busybox poweroff
