#!/usr/bin/env bash
# libvirt for the VM tests, on a machine where no init system runs: starts
# Debian's libvirtd and virtlogd by hand, for the URI qemu:///system (as
# root), and tells which libvirt domain type boots a guest here.
#
#   libvirt.sh start         start virtlogd + libvirtd (idempotent); prints the URI
#   libvirt.sh stop          stop them (running domains keep running; the next
#                            start finds them again)
#   libvirt.sh status        "running" or "stopped" (exit 1)
#   libvirt.sh domain-type   "kvm" where a probe guest boots under KVM, else
#                            "qemu" (emulation, TCG); probed once per boot of
#                            this machine, with libvirt started
#
# Only loopback: no libvirt network is ever started (libvirtd refuses to
# start here if one would autostart), guests use QEMU's user-mode network
# (docs/virtual-machines.md). QEMU runs as root (/etc/libvirt/qemu.conf,
# written when absent): the images' backing files live in /nix/store and
# the pools in temporary directories, which libvirt must not chown.
set -euo pipefail

URI=qemu:///system
STATE=/run/nixops-vm
QEMU_CONF=/etc/libvirt/qemu.conf
MARK="# Written by nixops' tests/vm/libvirt.sh"

die() { echo "libvirt.sh: $*" >&2; exit 1; }

pid_of() {  # pid_of PIDFILE: the pid in it if that process runs
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

answers() { virsh -c "$URI" version >/dev/null 2>&1; }

cmd_start() {
  [[ $(id -u) == 0 ]] || die "must run as root (qemu:///system)"
  local tool
  for tool in /usr/sbin/libvirtd /usr/sbin/virtlogd /usr/bin/virsh /usr/bin/qemu-system-x86_64; do
    [[ -x $tool ]] || die "missing $tool (scripts/install-deps.sh installs it)"
  done
  if answers; then echo "$URI"; return 0; fi
  # libvirt's QEMU driver resolves its built-in user and group even when
  # qemu.conf names others (Debian's libvirt-daemon-system would make them).
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  getent passwd libvirt-qemu >/dev/null ||
    useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin \
      --gid libvirt-qemu --comment "libvirt QEMU (nixops tests)" libvirt-qemu
  mkdir -p /etc/libvirt /var/log/libvirt /var/lib/libvirt /var/cache/libvirt /run/libvirt "$STATE"
  if [[ ! -e $QEMU_CONF ]]; then
    cat > "$QEMU_CONF" <<CONF
$MARK: QEMU runs as root and libvirt changes no
# file's owner or label (backing files are in /nix/store), and makes no mount
# namespace per domain (none is possible in a container).
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
CONF
  elif ! grep -qF "$MARK" "$QEMU_CONF"; then
    echo "libvirt.sh: keeping $QEMU_CONF, which is not ours" >&2
  fi
  # A network that would autostart makes a bridge with a private address.
  local n
  for n in /etc/libvirt/qemu/networks/autostart/*.xml; do
    [[ -e $n ]] && die "libvirt network $(basename "$n" .xml) would autostart (a bridge); remove $n"
  done
  [[ -n $(pid_of /run/virtlogd.pid) ]] || /usr/sbin/virtlogd --daemon --pid-file /run/virtlogd.pid
  [[ -n $(pid_of /run/libvirtd.pid) ]] || /usr/sbin/libvirtd --daemon --pid-file /run/libvirtd.pid
  local i
  for ((i = 0; i < 150; i++)); do
    if answers; then echo "$URI"; return 0; fi
    sleep 0.1
  done
  tail -n 5 /var/log/libvirt/libvirtd.log >&2 2>/dev/null || true
  die "libvirtd does not answer on $URI"
}

cmd_stop() {
  local f pid i
  for f in /run/libvirtd.pid /run/virtlogd.pid; do
    pid=$(pid_of "$f") || continue
    kill -TERM "$pid"
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && die "$(basename "$f" .pid) ($pid) does not stop"
  done
  return 0
}

cmd_status() {
  if answers; then echo running; else echo stopped; return 1; fi
}

# A probe guest: Debian's cloud kernel and a busybox initrd that says a word
# on the serial console and powers off.
probe_boots() {
  local type=$1 dir=$2 kernel i
  kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' | sort -V | tail -n 1)
  [[ -n $kernel ]] || die "no Debian cloud kernel in /boot"
  rm -rf "$dir/initrd.d"
  mkdir -p "$dir/initrd.d/bin"
  cp /bin/busybox "$dir/initrd.d/bin/busybox"
  printf '#!/bin/busybox sh\n/bin/busybox mkdir -p /dev\n/bin/busybox mount -t devtmpfs dev /dev\n/bin/busybox echo NIXOPS-PROBE-BOOTED > /dev/ttyS0\n/bin/busybox poweroff -f\n' > "$dir/initrd.d/init"
  chmod 0755 "$dir/initrd.d/init"
  (cd "$dir/initrd.d" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -1 > "$dir/initrd"
  : > "$dir/console.log"
  local name=nixops-kvm-probe-$$
  cat > "$dir/probe.xml" <<XML
<domain type='$type'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>$kernel</kernel>
    <initrd>$dir/initrd</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <serial type='file'><source path='$dir/console.log'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
XML
  virsh -c "$URI" create "$dir/probe.xml" >/dev/null 2>"$dir/error" || return 1
  local ok=1
  for ((i = 0; i < 100; i++)); do
    if grep -q NIXOPS-PROBE-BOOTED "$dir/console.log" 2>/dev/null; then ok=0; break; fi
    sleep 0.1
  done
  virsh -c "$URI" destroy "$name" >/dev/null 2>&1 || true
  return $ok
}

cmd_domain_type() {
  answers || die "libvirtd is not running (libvirt.sh start)"
  mkdir -p "$STATE"
  local boot cached type dir=
  boot=$(cat /proc/sys/kernel/random/boot_id)
  cached=$(cat "$STATE/domain-type" 2>/dev/null || true)
  if [[ ${cached%% *} == "$boot" ]]; then echo "${cached##* }"; return 0; fi
  type=qemu
  if [[ -c /dev/kvm ]]; then
    dir=$(mktemp -d "$STATE/probe.XXXXXX")
    if probe_boots kvm "$dir"; then
      type=kvm
    else
      echo "libvirt.sh: /dev/kvm is there but a guest does not boot under KVM in 10 s; using emulation (TCG)" >&2
    fi
  else
    echo "libvirt.sh: no /dev/kvm; using emulation (TCG)" >&2
  fi
  if [[ $type == qemu ]]; then
    dir=${dir:-$(mktemp -d "$STATE/probe.XXXXXX")}
    probe_boots qemu "$dir" || die "the probe guest does not boot under emulation either: $(cat "$dir/error" 2>/dev/null)"
  fi
  rm -rf "$dir"
  echo "$boot $type" > "$STATE/domain-type"
  echo "$type"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  domain-type) cmd_domain_type ;;
  *) echo "usage: libvirt.sh start|stop|status|domain-type" >&2; exit 2 ;;
esac
