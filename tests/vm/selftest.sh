#!/usr/bin/env bash
# Self-test of the VM foundation (docs/virtual-machines.md), as root: starts
# libvirt (tests/vm/libvirt.sh), builds a disk image of the stand-in OS with
# the stand-in nixpkgs' make-disk-image.nix, and boots it as a persistent
# libvirt domain (type kvm or qemu, as the probe says) on an overlay volume in
# a storage pool of its own, reached over SSH on a forwarded 127.0.0.1 port
# with a key given to the VM through SMBIOS; copies a system into it with Nix,
# switches to it, reboots it three ways (from inside, virsh reboot, destroy +
# start) and checks the boot id each time; then removes the domain, the volume
# and the pool and checks that nothing is left.
# Prints "N passed, M failed"; exit status 0 iff M=0.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LIBVIRT_SH=$HERE/libvirt.sh
URI=qemu:///system
T=$(mktemp -d /tmp/nixops-vm-selftest.XXXXXX)
NAME=nixops-selftest-$$
POOL=$NAME-pool
VOL=$NAME.qcow2
PASS=0 FAIL=0

ok()   { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
v() { virsh -q -c "$URI" "$@"; }

cleanup() {
  v destroy "$NAME" >/dev/null 2>&1
  v undefine "$NAME" --nvram >/dev/null 2>&1 || v undefine "$NAME" >/dev/null 2>&1
  v vol-delete "$VOL" --pool "$POOL" >/dev/null 2>&1
  v pool-destroy "$POOL" >/dev/null 2>&1
  v pool-undefine "$POOL" >/dev/null 2>&1
  rm -rf "$T"
}
trap cleanup EXIT

# ---- libvirt, and which domain type boots here
check "libvirt starts (libvirt.sh start)" bash "$LIBVIRT_SH" start
check "libvirt.sh start is idempotent" bash "$LIBVIRT_SH" start
TYPE=$(bash "$LIBVIRT_SH" domain-type)
check "domain type probed: $TYPE" test "$TYPE" = kvm -o "$TYPE" = qemu

# ---- the image and a system to deploy, with the stand-in nixpkgs
# shellcheck source=scripts/offline-nix.sh
source "$REPO/scripts/offline-nix.sh"
bash "$REPO/tests/nixpkgs/link-lib.sh" >/dev/null 2>&1
nixb() { nix-build --no-out-link -I "nixpkgs=$REPO/tests/nixpkgs" "$REPO/tests/vm/image.nix" "$@" 2>"$T/build.log" | tail -n 1; }
t0=$(now_ms)
IMAGE=$(nixb -A image)
echo "     (image built in $(( $(now_ms) - t0 )) ms: $IMAGE)"
check "make-disk-image made nixos.qcow2" test -f "$IMAGE/nixos.qcow2"
check "the image is qcow2" bash -c "qemu-img info '$IMAGE/nixos.qcow2' | grep -q '^file format: qcow2'"
SYSTEM=$(nixb -A deployed --argstr marker "selftest-$$")
check "built the system to deploy ($SYSTEM)" test -x "$SYSTEM/bin/switch-to-configuration"

# ---- a storage pool in a temporary directory, an overlay volume on the image
mkdir -p "$T/pool"
check "pool defined and started" bash -c "virsh -q -c '$URI' pool-define-as '$POOL' dir --target '$T/pool' >/dev/null && virsh -q -c '$URI' pool-start '$POOL' >/dev/null"
# At least as large as the image (or its boot partition, at the end, is cut
# off).
SIZE=$(qemu-img info --output=json "$IMAGE/nixos.qcow2" | sed -n 's/^ *"virtual-size": \([0-9]*\),*$/\1/p')
cat > "$T/volume.xml" <<XML
<volume>
  <name>$VOL</name>
  <capacity unit='bytes'>$SIZE</capacity>
  <target><format type='qcow2'/></target>
  <backingStore><path>$IMAGE/nixos.qcow2</path><format type='qcow2'/></backingStore>
</volume>
XML
check "overlay volume created" bash -c "virsh -q -c '$URI' vol-create '$POOL' '$T/volume.xml' >/dev/null"
VOLPATH=$(v vol-path "$VOL" --pool "$POOL")
check "the volume's backing file is the image" bash -c "qemu-img info '$VOLPATH' | grep -qF 'backing file: $IMAGE/nixos.qcow2'"

# ---- the domain: user-mode network forwarded to a free 127.0.0.1 port, the
# client key through SMBIOS
ssh-keygen -q -t ed25519 -N '' -C "$NAME" -f "$T/id_ed25519"
port=
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 12000))
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
  port=$p; break
done
MAC=52:54:00:$(od -An -N3 -tx1 /dev/urandom | sed 's/^ //; s/ /:/g')
cat > "$T/domain.xml" <<XML
<domain type='$TYPE' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$NAME</name>
  <memory unit='MiB'>384</memory>
  <vcpu>1</vcpu>
  <sysinfo type='smbios'>
    <oemStrings>
      <entry>io.systemd.credential:ssh.authorized_keys.root=$(cut -d' ' -f1,2 "$T/id_ed25519.pub")</entry>
    </oemStrings>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
    <smbios mode='sysinfo'/>
  </os>
  <features><acpi/></features>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='$POOL' volume='$VOL'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'><log file='$T/console.log' append='on'/></serial>
    <console type='pty'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=nixops-net0,net=198.51.100.0/24,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=nixops-net0,id=nixops-nic0,mac=$MAC,bus=pci.0,addr=0x10'/>
  </qemu:commandline>
</domain>
XML
check "domain defined (persistent)" bash -c "virsh -q -c '$URI' define '$T/domain.xml' >/dev/null"
check "domain is persistent" bash -c "virsh -q -c '$URI' dominfo '$NAME' | grep -q '^Persistent: *yes'"

SSH=(ssh -i "$T/id_ed25519" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=2
  -o UserKnownHostsFile="$T/known_hosts" -o StrictHostKeyChecking=yes -o LogLevel=ERROR)
vssh() { timeout 60 "${SSH[@]}" root@127.0.0.1 "$@"; }
# The host key as the VM shows it on its console (the last boot's).
pin_host_key() {
  local key
  key=$(sed -n '/-----BEGIN SSH HOST KEY KEYS-----/,/-----END SSH HOST KEY KEYS-----/p' "$T/console.log" 2>/dev/null |
    grep '^ssh-ed25519 ' | tail -n 1 | cut -d' ' -f1,2)
  [[ -n $key ]] && printf '[127.0.0.1]:%s %s\n' "$port" "$key" > "$T/known_hosts"
}
# wait_boot OLD_BOOT_ID: until the VM answers SSH with another boot id
# (prints it); at most 60 s.
wait_boot() {
  local old=$1 id deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    if pin_host_key; then
      id=$(timeout 5 "${SSH[@]}" root@127.0.0.1 cat /proc/sys/kernel/random/boot_id 2>/dev/null) &&
        [[ -n $id && $id != "$old" ]] && { echo "$id"; return 0; }
    fi
    sleep 0.2
  done
  return 1
}

t0=$(now_ms)
check "domain started" bash -c "virsh -q -c '$URI' start '$NAME' >/dev/null"
BOOT1=$(wait_boot none)
BOOT_MS=$(( $(now_ms) - t0 ))
check "VM answers SSH on 127.0.0.1:$port with the pinned host key (boot took ${BOOT_MS} ms, type $TYPE)" test -n "$BOOT1"
if [[ -z $BOOT1 ]]; then
  echo "     the VM's console:"; tail -n 30 "$T/console.log" | sed 's/^/     | /'
fi
check "the boot id is the VM's own" test "$BOOT1" != "$(cat /proc/sys/kernel/random/boot_id)"
check "contents of make-disk-image are in the image" test "$(vssh cat /etc/image-marker)" = "made by make-disk-image"
check "with their mode and owner" test "$(vssh stat -c %a:%U:%G /etc/image-marker)" = 640:root:root
IMGSYS=$(vssh readlink -f /nix/var/nix/profiles/system)
check "the image's system profile is its configuration's system, booted" test -n "$IMGSYS" -a "$(vssh readlink /run/booted-system)" = "$IMGSYS"
check "the image's system is valid in the VM's Nix" vssh nix-store --check-validity "$IMGSYS"
check "the network is QEMU's user-mode one" bash -c "$(declare -p SSH); $(declare -f vssh); vssh ip -4 addr show eth0 | grep -q 'inet 198\.51\.100\.'"

# ---- deploy: copy the closure with Nix over SSH, switch
export NIX_SSHOPTS="-i $T/id_ed25519 -p $port -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile=$T/known_hosts -o StrictHostKeyChecking=yes -o LogLevel=ERROR"
t0=$(now_ms)
check "nix-copy-closure --to the VM" timeout 120 nix-copy-closure --to root@127.0.0.1 "$SYSTEM"
echo "     (copy took $(( $(now_ms) - t0 )) ms)"
check "the system is valid in the VM's Nix" vssh nix-store --check-validity "$SYSTEM"
check "system profile set" vssh nix-env -p /nix/var/nix/profiles/system --set "$SYSTEM"
check "switch-to-configuration switch" vssh "$SYSTEM/bin/switch-to-configuration" switch
check "current system is the deployed one" test "$(vssh readlink /run/current-system)" = "$SYSTEM"
check "its /etc file is there" test "$(vssh cat /run/current-system/etc/vm-selftest)" = "selftest-$$"
check "activation logged" bash -c "$(declare -p SSH); $(declare -f vssh); vssh cat /run/stub-os/activations.log | grep -qxF 'switch $SYSTEM'"

# ---- reboots: the boot id changes, the deployed system is booted
vssh systemctl reboot >/dev/null 2>&1
BOOT2=$(wait_boot "$BOOT1")
check "reboot from inside (systemctl reboot): new boot id" test -n "$BOOT2" -a "$BOOT2" != "$BOOT1"
check "after reboot the deployed system is booted" test "$(vssh readlink /run/booted-system)" = "$SYSTEM"
t0=$(now_ms)
check "virsh reboot" bash -c "virsh -q -c '$URI' reboot '$NAME' >/dev/null"
BOOT3=$(wait_boot "$BOOT2")
check "virsh reboot (ACPI): new boot id ($(( $(now_ms) - t0 )) ms)" test -n "$BOOT3" -a "$BOOT3" != "$BOOT2"
check "virsh destroy (power off)" bash -c "virsh -q -c '$URI' destroy '$NAME' >/dev/null"
check "domain shut off" bash -c "virsh -q -c '$URI' domstate '$NAME' | grep -qx 'shut off'"
t0=$(now_ms)
check "virsh start" bash -c "virsh -q -c '$URI' start '$NAME' >/dev/null"
BOOT4=$(wait_boot "$BOOT3")
check "destroy + start: new boot id ($(( $(now_ms) - t0 )) ms)" test -n "$BOOT4" -a "$BOOT4" != "$BOOT3"
check "the store survives a power cycle" vssh nix-store --check-validity "$SYSTEM"
check "the host key survives a power cycle" test "$(wc -l < "$T/known_hosts")" = 1

# ---- removal: nothing left
check "virsh destroy" bash -c "virsh -q -c '$URI' destroy '$NAME' >/dev/null"
check "virsh undefine" bash -c "virsh -q -c '$URI' undefine '$NAME' >/dev/null"
check "volume deleted" bash -c "virsh -q -c '$URI' vol-delete '$VOL' --pool '$POOL' >/dev/null"
check "pool removed" bash -c "virsh -q -c '$URI' pool-destroy '$POOL' >/dev/null && virsh -q -c '$URI' pool-undefine '$POOL' >/dev/null"
check "no domain left (virsh list --all)" bash -c "! virsh -q -c '$URI' list --all --name | grep -qxF '$NAME'"
check "no pool left" bash -c "! virsh -q -c '$URI' pool-list --all --name | grep -qxF '$POOL'"
check "no volume file left" test -z "$(ls -A "$T/pool")"
# ([g]: pgrep's pattern must not match the shell that runs it.)
check "no QEMU process of the domain left" bash -c "! pgrep -f '[g]uest=$NAME' >/dev/null"
check "the port is free again" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"
echo "     timing: boot to SSH ${BOOT_MS} ms (domain type $TYPE)"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
