#!/usr/bin/env bash
# fleet.sh — a fleet of fake "machines" for testing the nixops deployer.
#
# Each test host is an OpenSSH sshd on 127.0.0.1:<port> running in its own
# private mount namespace with its own /nix (empty store), /run, /etc/nix,
# boot id and fake systemctl/reboot.  See usage() for the interface.
#
# Requires root, util-linux (unshare, nsenter, mount), openssh-server,
# busybox (static) at /bin/busybox, and nix for the hosts' nix-store.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
START_TIMEOUT=${FLEET_START_TIMEOUT:-10}
HOST_PATH_TAIL=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin

usage() {
  cat >&2 <<'EOF'
usage:
  fleet.sh start    FLEET_DIR NAME[:PORT]...   start (or create) hosts
  fleet.sh stop     FLEET_DIR [NAME...]        stop hosts (default: all)
  fleet.sh run      FLEET_DIR [--] CMD...      run CMD with FLEET_DIR/ssh as ~/.ssh
  fleet.sh exec     FLEET_DIR NAME [--] CMD... run CMD inside host NAME's namespace
  fleet.sh reboot   FLEET_DIR NAME [--wait]    fake-reboot host NAME
  fleet.sh freeze   FLEET_DIR NAME             SIGSTOP every process of host NAME
  fleet.sh thaw     FLEET_DIR NAME             SIGCONT them again
  fleet.sh ssh-count FLEET_DIR NAME            number of accepted SSH logins so far
  fleet.sh status   FLEET_DIR                  "<name> <port> up|down" per host
EOF
  exit 2
}

die() { echo "fleet.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

# Resolve FLEET_DIR to an absolute, physical path (creating it if asked).
fleet_dir() {
  local d=$1 create=${2:-}
  [[ -n $d ]] || die "missing FLEET_DIR"
  if [[ -n $create ]]; then mkdir -p "$d"; fi
  [[ -d $d ]] || die "no such fleet dir: $d"
  d=$(cd "$d" && pwd -P)
  # Paths are embedded unquoted-ish in sshd/ssh configs and scripts.
  [[ $d =~ ^/[A-Za-z0-9/._+-]+$ ]] || die "fleet dir path must match [A-Za-z0-9/._+-]: $d"
  case "$d/" in
    /run/*|/nix/*|/etc/nix/*|/proc/*|/sys/*|/dev/*|/usr/*) die "fleet dir must not live under /run, /nix, /etc/nix, /proc, /sys, /dev or /usr: $d" ;;
  esac
  printf '%s\n' "$d"
}

check_name() {
  [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "bad host name: $1"
}

# Fork-free file helpers (starting 30 hosts on 2 cores: forks add up).
# emit FILE <<EOF ... EOF  — write stdin to FILE (emit_append: append).
emit() { local _c; IFS= read -r -d '' _c || true; printf '%s' "$_c" > "$1"; }
emit_append() { local _c; IFS= read -r -d '' _c || true; printf '%s' "$_c" >> "$1"; }
# readf VAR FILE — first line of FILE into VAR (empty if unreadable).
readf() { printf -v "$1" '%s' ''; { IFS= read -r "$1" < "$2"; } 2>/dev/null || true; }

host_dir() { printf '%s/hosts/%s\n' "$1" "$2"; }

all_hosts() {
  local f=$1 d
  [[ -d $f/hosts ]] || return 0
  for d in "$f"/hosts/*/; do
    [[ -d $d ]] || continue
    d=${d%/}; printf '%s\n' "${d##*/}"
  done
}

self_ns() { readlink /proc/self/ns/mnt; }

# Print "<pid> <mntns>" for every process we can inspect.
ns_table() {
  { ls -l /proc/[0-9]*/ns/mnt 2>/dev/null || true; } |
    awk '$(NF-1) == "->" { split($(NF-2), a, "/"); print a[3], $NF }'
}

# Pids of all processes in mount namespace $1 (never our own namespace).
ns_pids() {
  local ns=$1
  [[ -n $ns && $ns != "$(self_ns)" ]] || return 0
  ns_table | awk -v ns="$ns" '$2 == ns { print $1 }'
}

# Alive and not a zombie (orphans are reaped by pid 1, maybe not promptly).
pid_alive() {
  local st
  st=
  [[ -n ${1:-} ]] && readf st "/proc/$1/stat"
  [[ -n $st ]] || return 1
  st=${st##*) }
  [[ ${st:0:1} != Z ]]
}

# Pid of the running sshd listener of host dir $1 (empty if down).
listener_pid() {
  local h=$1 pid='' ns='' comm=''
  readf pid "$h/sshd.pid"
  pid_alive "$pid" || return 0
  readf comm "/proc/$pid/comm"
  [[ $comm == sshd* ]] || return 0
  readf ns "$h/mntns"
  [[ -z $ns || $(readlink "/proc/$pid/ns/mnt" 2>/dev/null) == "$ns" ]] || return 0
  printf '%s\n' "$pid"
}

# Of the pids in $1 (whitespace separated), those whose /run is one of the
# host run directories given after it.  Namespace ids are reused as soon as
# a namespace dies, so a recorded id alone may name someone else's processes
# (a test's `fleet.sh run` namespace, say); the host's /run cannot lie.
host_procs() {
  local pids=$1 p r out=""; shift
  for p in $pids; do
    for r in "$@"; do
      if [[ /proc/$p/root/run -ef $r ]]; then out+=" $p"; break; fi
    done
  done
  printf '%s\n' "$out"
}

# Any pid inside the host's namespace (listener preferred); empty if none.
host_ns_pid() {
  local h=$1 pid ns p
  pid=$(listener_pid "$h")
  if [[ -n $pid ]]; then printf '%s\n' "$pid"; return 0; fi
  ns=$(cat "$h/mntns" 2>/dev/null || true)
  [[ -n $ns ]] || return 0
  for p in $(host_procs "$(ns_pids "$ns")" "$h/run"); do printf '%s\n' "$p"; return 0; done
}

tcp_probe() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ports with a listening TCP socket (IPv4 + IPv6), from /proc/net.
listening_ports() {
  local f _sl laddr _rem st _rest
  for f in /proc/net/tcp /proc/net/tcp6; do
    [[ -r $f ]] || continue
    while read -r _sl laddr _rem st _rest; do
      [[ $st == 0A ]] && printf '%d\n' "$((16#${laddr##*:}))"
    done < <(tail -n +2 "$f")
  done
}

# Pick a free port in 20000-60000 outside the kernel's ephemeral range (so
# no outgoing connection can hold it), not listening and not in $used
# (space separated, padded with spaces).  Random start, linear scan.
# shellcheck disable=SC2086 # `set -- $range` splits "lo hi" on purpose
pick_port() {
  local used=$1 lo=20000 hi=60000 elo=32768 ehi=60999 busy n p i k
  read -r elo ehi < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  busy=${BUSY_PORTS:-}
  [[ -n $busy ]] || busy=" $(listening_ports | tr '\n' ' ') "
  local cand=()   # allowed ranges as "lo hi"
  ((elo > lo)) && cand+=("$lo $(( elo - 1 < hi ? elo - 1 : hi ))")
  ((ehi < hi)) && cand+=("$(( ehi + 1 > lo ? ehi + 1 : lo )) $hi")
  ((${#cand[@]})) || cand=("$lo $hi")
  n=0; for k in "${cand[@]}"; do set -- $k; n=$((n + $2 - $1 + 1)); done
  k=$(((RANDOM * 32768 + RANDOM) % n))
  for ((i = 0; i < n; i++)); do
    # map index (k + i) % n to a port
    p=$(((k + i) % n))
    local r
    for r in "${cand[@]}"; do
      set -- $r
      if ((p <= $2 - $1)); then p=$(($1 + p)); break; fi
      p=$((p - ($2 - $1 + 1)))
    done
    [[ $used == *" $p "* || $busy == *" $p "* ]] && continue
    printf '%s\n' "$p"; return 0
  done
  die "no free port found"
}

# --------------------------------------------------------- host templates

write_host_files() {
  local f=$1 name=$2 port=$3 h
  h=$(host_dir "$f" "$name")
  mkdir -p "$h"/{nix,run,etc-nix,bin,libexec}
  printf '%s\n' "$port" > "$h/port"
  local uuid; readf uuid /proc/sys/kernel/random/uuid
  [[ -f $h/boot_id ]] || printf '%s\n' "$uuid" > "$h/boot_id"
  if [[ ! -f $h/ssh_host_ed25519_key ]]; then
    rm -f "$h/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "fleet-$name" -f "$h/ssh_host_ed25519_key" </dev/null
  fi

  emit "$h/etc-nix/nix.conf" <<'EOF'
# fleet test host: offline, no sandbox, no build users
substituters =
sandbox = false
build-users-group =
EOF

  # A non-root login user "deployer" that may use sudo, private to the host:
  # its own passwd/group/shadow and sudoers.d are bind-mounted at boot.
  mkdir -p "$h/etc-users" "$h/sudoers.d" "$h/home-deployer"
  { grep -v '^deployer:' /etc/passwd; echo "deployer:x:1500:1500::$h/home-deployer:/bin/sh"; } > "$h/etc-users/passwd"
  { grep -v '^deployer:' /etc/group; echo "deployer:x:1500:"; } > "$h/etc-users/group"
  { grep -v '^deployer:' /etc/shadow; echo "deployer:*:19000:0:99999:7:::"; } > "$h/etc-users/shadow"
  chmod 0640 "$h/etc-users/shadow"
  chown 1500:1500 "$h/home-deployer"
  echo "deployer ALL=(ALL) NOPASSWD: ALL" > "$h/sudoers.d/deployer"
  chmod 0440 "$h/sudoers.d/deployer"

  emit "$h/sshd_config" <<EOF
# Generated by fleet.sh for test host "$name"
ListenAddress 127.0.0.1:$port
HostKey $h/ssh_host_ed25519_key
PidFile $h/sshd.pid
AuthorizedKeysFile $f/authorized_keys
# Non-root users cannot read the fleet's private directory; root reads the
# keys for them.
AuthorizedKeysCommand /bin/cat $f/authorized_keys
AuthorizedKeysCommandUser root
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 100
MaxStartups 200
LoginGraceTime 30
LogLevel VERBOSE
PrintMotd no
PrintLastLog no
UseDNS no
X11Forwarding no
Subsystem sftp internal-sftp
SetEnv PATH=$h/bin:$HOST_PATH_TAIL STUB_HOST_DIR=$h FLEET_HOST=$name
EOF

  # --- fake systemctl / reboot / shutdown / halt / poweroff (one script,
  # dispatching on the name it was called by).  NB: busybox sh prefers its
  # own applets over PATH, so this script must never call reboot/halt/poweroff.
  emit "$h/bin/systemctl" <<EOF
#!/bin/busybox sh
H='$h'
EOF
  emit_append "$h/bin/systemctl" <<'EOF'
log() { echo "$*" >> "$H/systemctl.log"; }
fake_reboot() { exec /bin/busybox sh "$H/libexec/fake-reboot"; }
case "${0##*/}" in
  reboot) fake_reboot ;;
  halt|poweroff) log "$0 $*"; exit 0 ;;
  shutdown)
    for a in "$@"; do case "$a" in -r|--reboot) fake_reboot ;; esac; done
    log "$0 $*"; exit 0 ;;
esac
verb= failed=0 legend=1 plain=0 skip=0
for a in "$@"; do
  if [ "$skip" = 1 ]; then
    skip=0; [ "$a" = failed ] && failed=1; continue
  fi
  case "$a" in
    --failed|--state=failed) failed=1 ;;
    --no-legend|--legend=no|--legend=false) legend=0 ;;
    --plain) plain=1 ;;
    -t|--type|-p|--property|-H|--host|-M|--machine|--state|-o|--output|-n|--lines|--root|-s|--signal|--kill-whom|--what|--job-mode|--check-inhibitors|--boot-loader-entry|--reboot-argument|--message|--timestamp|--preset-mode)
      skip=1 ;;
    -*) ;;
    *) [ -z "$verb" ] && verb=$a ;;
  esac
done
case "$verb" in
  reboot) fake_reboot ;;
  is-system-running)
    state=running
    [ -s "$H/system-state" ] && state=$(cat "$H/system-state")
    echo "$state"
    [ "$state" = running ]; exit $? ;;
  ""|list-units)
    n=0
    [ "$legend" = 1 ] && echo "  UNIT LOAD ACTIVE SUB DESCRIPTION"
    if [ -f "$H/failed-units" ]; then
      while read -r unit desc; do
        [ -n "$unit" ] || continue
        case "$unit" in \#*) continue ;; esac
        [ -n "$desc" ] || desc=$unit
        if [ "$plain" = 1 ]; then pre=""; else pre="* "; fi
        echo "$pre$unit loaded failed failed $desc"
        n=$((n + 1))
      done < "$H/failed-units"
    fi
    [ "$legend" = 1 ] && { echo; echo "$n loaded units listed."; }
    exit 0 ;;
  *) log "$*"; exit 0 ;;
esac
EOF
  local b body; IFS= read -r -d '' body < "$h/bin/systemctl" || true
  for b in reboot shutdown halt poweroff; do printf '%s' "$body" > "$h/bin/$b"; done

  # --- fake-reboot: return at once, do the work detached in the namespace.
  emit "$h/libexec/fake-reboot" <<EOF
#!/bin/busybox sh
H='$h'
/bin/busybox setsid /bin/busybox sh "\$H/libexec/reboot-worker" </dev/null >>"\$H/reboot-worker.log" 2>&1 &
exit 0
EOF

  emit "$h/libexec/reboot-worker" <<EOF
#!/bin/busybox sh
H='$h'
EOF
  emit_append "$h/libexec/reboot-worker" <<'EOF'
me=$$
ns=$(readlink /proc/self/ns/mnt)
[ -n "$ns" ] && [ "$ns" = "$(cat "$H/mntns" 2>/dev/null)" ] || { echo "reboot-worker: not in the host namespace"; exit 1; }
# Pids in this namespace other than this worker.  The listing's own
# transient processes (subshell, ls, awk) are gone once it returns, so keep
# only pids that still exist ([ and the loop are shell builtins: no forks).
others() {
  _l=$(ls -l /proc/[0-9]*/ns/mnt 2>/dev/null |
    awk -v ns="$ns" -v me="$me" '$(NF-1) == "->" && $NF == ns { split($(NF-2), a, "/"); if (a[3] != me) print a[3] }')
  _r=
  for _p in $_l; do [ -d "/proc/$_p" ] && _r="$_r $_p"; done
  :
}
sleep 0.5
# "Power off": every process of this host dies (sshd listener + sessions).
others; [ -n "$_r" ] && kill -TERM $_r 2>/dev/null
i=0
while [ $i -lt 40 ]; do
  others; pids=$_r; [ -z "$pids" ] && break
  [ $i -ge 3 ] && kill -KILL $pids 2>/dev/null
  sleep 0.05; i=$((i + 1))
done
old=$(cat "$H/boot_id")
cat /proc/sys/kernel/random/uuid > "$H/boot_id"   # in place: keeps the bind mount
echo "$(date +%s) reboot $old -> $(cat "$H/boot_id")" >> "$H/reboots.log"
sleep 0.7   # machine is down
exec /bin/busybox sh "$H/libexec/boot"
EOF

  # --- boot: runs inside the host namespace; clears /run, starts sshd.
  emit "$h/libexec/boot" <<EOF
#!/bin/busybox sh
H='$h'
EOF
  emit_append "$h/libexec/boot" <<'EOF'
# Safety: only ever touch /run if it really is this host's private /run.
if ! [ /run -ef "$H/run" ] || ! [ /nix -ef "$H/nix" ]; then
  echo "boot: not inside the host namespace, refusing" >&2; exit 1
fi
rm -rf /run/* /run/.[!.]* /run/..?* 2>/dev/null
mkdir -p /run/sshd && chmod 0755 /run/sshd && chown 0:0 /run/sshd
sys=/nix/var/nix/profiles/system
if [ -e "$sys" ]; then
  t=$(readlink -f "$sys")
  ln -sfn "$t" /run/booted-system
  ln -sfn "$t" /run/current-system
fi
rm -f "$H/sshd.pid"
# A test holds the machine "down" (it never comes back) while this exists.
while [ -e "$H/hold-boot" ]; do sleep 0.2; done
exec /usr/sbin/sshd -f "$H/sshd_config" -E "$H/sshd.log" </dev/null >/dev/null 2>>"$H/boot.log"
EOF
  # --- ensure-sshd: what systemd does for sshd.service on activation: start
  # it if it is not running (the stand-in OS calls it; see tests/nixpkgs).
  emit "$h/libexec/ensure-sshd" <<EOF
#!/bin/busybox sh
H='$h'
EOF
  emit_append "$h/libexec/ensure-sshd" <<'EOF'
if ! [ /run -ef "$H/run" ]; then echo "ensure-sshd: not inside the host namespace" >&2; exit 1; fi
pid=$(cat "$H/sshd.pid" 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then exit 0; fi
mkdir -p /run/sshd
rm -f "$H/sshd.pid"
/usr/sbin/sshd -f "$H/sshd_config" -E "$H/sshd.log" </dev/null >/dev/null 2>>"$H/boot.log"
EOF
  chmod 0755 "$h"/bin/* "$h"/libexec/*
}

# Mount targets for the fake binaries: "<script name> <real file>" lines in
# FAKE_TARGETS.  Bind mounts follow symlinks, so resolve and deduplicate (on
# Debian reboot -> systemctl, which then dispatches on its $0).  Computed
# once per fleet.sh invocation.
FAKE_TARGETS=
fake_targets() {
  [[ -z $FAKE_TARGETS ]] || return 0
  local t r seen=" "
  for t in /usr/bin/systemctl /bin/systemctl /usr/sbin/reboot /sbin/reboot \
           /usr/sbin/shutdown /sbin/shutdown /usr/sbin/halt /sbin/halt \
           /usr/sbin/poweroff /sbin/poweroff; do
    [[ -e $t ]] || continue
    r=$(readlink -f "$t")
    [[ -f $r && $seen != *" $r "* ]] || continue
    seen+="$r "
    FAKE_TARGETS+="${t##*/} $r"$'\n'
  done
}

# Start one host (already has files).  Returns 0 when its sshd accepts TCP.
# Exit status 3 means "port in use".
boot_host() {
  local f=$1 name=$2 h pid off deadline mounts
  h=$(host_dir "$f" "$name")
  local port; port=$(<"$h/port")
  rm -f "$h/sshd.pid" "$h/mntns"
  local uuid; readf uuid /proc/sys/kernel/random/uuid
  printf '%s\n' "$uuid" > "$h/boot_id"    # power-on = new boot
  off=$(stat -c %s "$h/sshd.log" 2>/dev/null || echo 0)
  fake_targets; mounts=$FAKE_TARGETS
  # shellcheck disable=SC2016 # expanded by the inner shell
  if ! unshare --mount --propagation private -- /bin/bash -c '
      set -e
      h=$1; mounts=$2
      mount --bind "$h/nix" /nix
      mount --bind "$h/run" /run
      mount --bind "$h/boot_id" /proc/sys/kernel/random/boot_id
      mount --bind "$h/etc-nix" /etc/nix
      for f in passwd group shadow; do mount --bind "$h/etc-users/$f" "/etc/$f"; done
      if [ -d /etc/sudoers.d ]; then mount --bind "$h/sudoers.d" /etc/sudoers.d; fi
      while read -r src dst; do
        [ -n "$src" ] && mount --bind "$h/bin/$src" "$dst"
      done <<< "$mounts"
      exec /bin/busybox sh "$h/libexec/boot"' fleet-boot "$h" "$mounts" \
      </dev/null >>"$h/boot.log" 2>&1 9>&-; then
    echo "fleet.sh: $name: sshd failed to start:" >&2
    tail -n 5 "$h/boot.log" "$h/sshd.log" >&2 2>/dev/null || true
    return 1
  fi
  deadline=$((SECONDS + START_TIMEOUT))
  local n=0
  while :; do
    pid=; readf pid "$h/sshd.pid"
    if pid_alive "$pid"; then
      readlink "/proc/$pid/ns/mnt" > "$h/mntns"
      tcp_probe "$port" && return 0
    elif ((++n % 5 == 0)); then
      local news; news=$(tail -c +$((off + 1)) "$h/sshd.log" 2>/dev/null || true)
      if [[ $news == *'Cannot bind any address'* || $news == *'Address already in use'* ]]; then
        return 3
      elif [[ $news == *'fatal:'* ]]; then
        echo "fleet.sh: $name: sshd died:" >&2; tail -n 5 "$h/sshd.log" >&2
        return 1
      fi
    fi
    if ((SECONDS >= deadline)); then
      echo "fleet.sh: $name: sshd on 127.0.0.1:$port not up after ${START_TIMEOUT}s" >&2
      return 1
    fi
    sleep 0.02
  done
}

start_one() {
  local f=$1 name=$2 port=$3 auto=$4 rc h
  h=$(host_dir "$f" "$name")
  for _ in 1 2 3 4 5; do
    write_host_files "$f" "$name" "$port"
    rc=0; boot_host "$f" "$name" || rc=$?
    [[ $rc == 0 ]] && return 0
    stop_hosts "$f" "$name" >/dev/null 2>&1 || true
    if [[ $rc == 3 && $auto == 1 ]]; then
      BUSY_PORTS=; port=$(pick_port " ")
      continue
    fi
    [[ $rc == 3 ]] && echo "fleet.sh: $name: port $port already in use" >&2
    break
  done
  rm -f "$h/port"   # keep a dead host out of ssh/config
  return 1
}

# ------------------------------------------------------ fleet-level files

write_fleet_files() {
  local f=$1 name h port hosts="" ssh_cfg env_file kh
  ssh_cfg=$f/ssh/config.tmp.$$
  {
    echo "# Generated by fleet.sh — test hosts of fleet $f"
    for name in $(all_hosts "$f"); do
      h=$(host_dir "$f" "$name")
      [[ -f $h/port ]] || continue
      port=$(<"$h/port")
      cat <<EOF

Host $name
  HostName 127.0.0.1
  Port $port
  User root
  IdentityFile $f/ssh/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $f/ssh/known_hosts
EOF
    done
    cat <<EOF

Host *
  IdentityFile $f/ssh/id_ed25519
  UserKnownHostsFile $f/ssh/known_hosts
EOF
  } > "$ssh_cfg"
  chmod 0600 "$ssh_cfg"; mv -f "$ssh_cfg" "$f/ssh/config"

  kh=$f/fleet_known_hosts.tmp.$$
  : > "$kh"
  for name in $(all_hosts "$f"); do
    h=$(host_dir "$f" "$name")
    [[ -f $h/port && -f $h/ssh_host_ed25519_key.pub ]] || continue
    port=$(<"$h/port")
    hosts+="$name "
    printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$h/ssh_host_ed25519_key.pub")" >> "$kh"
  done
  mv -f "$kh" "$f/fleet_known_hosts"

  env_file=$f/env.tmp.$$
  {
    echo "# Generated by fleet.sh; source me."
    echo "export FLEET_DIR='$f'"
    echo "export FLEET_SH='$SELF'"
    echo "export FLEET_SSH_DIR='$f/ssh'"
    echo "export FLEET_SSH_CONFIG='$f/ssh/config'"
    echo "export FLEET_SSH_KEY='$f/ssh/id_ed25519'"
    echo "export FLEET_KNOWN_HOSTS='$f/ssh/known_hosts'"
    echo "export FLEET_HOSTS='${hosts% }'"
    for name in $hosts; do
      echo "export FLEET_PORT_${name//[^A-Za-z0-9_]/_}=$(<"$(host_dir "$f" "$name")/port")"
    done
  } > "$env_file"
  mv -f "$env_file" "$f/env"
}

ensure_fleet() {
  local f=$1 pub
  mkdir -p "$f/hosts" "$f/ssh"
  chmod 0700 "$f/ssh"
  if [[ ! -f $f/ssh/id_ed25519 ]]; then
    rm -f "$f/ssh/id_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C fleet-client -f "$f/ssh/id_ed25519" </dev/null
  fi
  [[ -f $f/ssh/id_ed25519.pub ]] || ssh-keygen -y -f "$f/ssh/id_ed25519" > "$f/ssh/id_ed25519.pub"
  [[ -f $f/ssh/known_hosts ]] || { : > "$f/ssh/known_hosts"; chmod 0600 "$f/ssh/known_hosts"; }
  pub=$(cut -d' ' -f1,2 "$f/ssh/id_ed25519.pub")
  touch "$f/authorized_keys"
  grep -qF "$pub" "$f/authorized_keys" || cat "$f/ssh/id_ed25519.pub" >> "$f/authorized_keys"
  chmod 0600 "$f/authorized_keys"
}

lock_fleet() {
  exec 9>>"$1/.lock"
  flock 9
}

# ---------------------------------------------------------------- commands

cmd_start() {
  (($# >= 1)) || usage
  local f; f=$(fleet_dir "$1" create); shift
  (($# >= 1)) || usage
  local tool
  for tool in /usr/sbin/sshd /bin/busybox; do [[ -x $tool ]] || die "missing $tool"; done
  for tool in unshare nsenter mount ssh-keygen flock awk; do
    command -v "$tool" >/dev/null || die "missing $tool"
  done
  ensure_fleet "$f"
  lock_fleet "$f"
  # The mount point for each host's private /etc/nix (a fresh Nix install
  # has no /etc/nix at all).
  mkdir -p /etc/nix

  local spec name port auto h used=" " names=() ports=() autos=()
  fake_targets
  BUSY_PORTS=" $(listening_ports | tr '\n' ' ') "
  for name in $(all_hosts "$f"); do
    h=$(host_dir "$f" "$name")
    [[ -f $h/port ]] && used+="$(<"$h/port") "
  done
  for spec in "$@"; do
    name=${spec%%:*}; port=; auto=1
    [[ $spec == *:* ]] && { port=${spec#*:}; auto=0; }
    check_name "$name"
    [[ -z $port || $port =~ ^[0-9]+$ ]] || die "bad port in $spec"
    h=$(host_dir "$f" "$name")
    if [[ -n $(listener_pid "$h") ]]; then
      if [[ -z $port || $port == "$(<"$h/port")" ]]; then
        echo "$name $(<"$h/port") (already running)"
        continue
      fi
      stop_hosts "$f" "$name"
    fi
    if [[ -z $port ]]; then
      # Reuse the host's previous port if it is still free.
      if [[ -f $h/port ]] && ! tcp_probe "$(<"$h/port")"; then
        port=$(<"$h/port")
      else
        port=$(pick_port "$used")
      fi
    fi
    used+="$port "
    names+=("$name"); ports+=("$port"); autos+=("$auto")
  done

  # Hosts that are down may still have leftovers in their old namespace
  # (e.g. sessions after the listener was killed): clean up first.
  ((${#names[@]})) && stop_hosts "$f" "${names[@]}"

  local i pids=() rc=0
  for i in "${!names[@]}"; do
    start_one "$f" "${names[$i]}" "${ports[$i]}" "${autos[$i]}" 9>&- &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
      echo "${names[$i]} $(<"$(host_dir "$f" "${names[$i]}")/port")"
    else
      echo "fleet.sh: failed to start ${names[$i]}" >&2; rc=1
    fi
  done
  write_fleet_files "$f"
  return $rc
}

# Kill everything of the given hosts: listener, sessions, and any process
# left in their namespaces (fake reboot jobs...).  Idempotent.
stop_hosts() {
  local f=$1; shift
  local name h ns pid me targets=() nslist=" " table remaining i rundirs=()
  me=$(self_ns)
  for name in "$@"; do
    h=$(host_dir "$f" "$name")
    [[ -d $h ]] || continue
    rundirs+=("$h/run")
    ns=$(cat "$h/mntns" 2>/dev/null || true)
    [[ -n $ns && $ns != "$me" ]] && nslist+="$ns "
    pid=$(listener_pid "$h"); [[ -n $pid ]] && targets+=("$pid")
  done
  for ((i = 0; i < 100; i++)); do
    table=$(ns_table)
    remaining=$(awk -v l="$nslist" 'index(l, " " $2 " ") { print $1 }' <<< "$table")
    remaining=$(host_procs "$remaining" "${rundirs[@]}")
    for pid in "${targets[@]}"; do pid_alive "$pid" && remaining+=" $pid"; done
    [[ -z ${remaining// /} ]] && break
    if ((i < 10)); then
      # shellcheck disable=SC2086 # a list of pids
      if ((i == 0)); then kill -TERM $remaining 2>/dev/null || true; fi
    else
      # shellcheck disable=SC2086
      kill -KILL $remaining 2>/dev/null || true
    fi
    sleep 0.05
  done
  [[ -z ${remaining// /} ]] || { echo "fleet.sh: could not kill: $remaining" >&2; return 1; }
  for name in "$@"; do
    h=$(host_dir "$f" "$name")
    rm -f "$h/sshd.pid" "$h/mntns"
  done
}

cmd_stop() {
  (($# >= 1)) || usage
  [[ -d $1 ]] || return 0
  local f; f=$(fleet_dir "$1"); shift
  lock_fleet "$f"
  local names=("$@") n
  ((${#names[@]})) || mapfile -t names < <(all_hosts "$f")
  for n in "${names[@]}"; do check_name "$n"; done
  ((${#names[@]})) || return 0
  stop_hosts "$f" "${names[@]}"
}

cmd_run() {
  (($# >= 1)) || usage
  local f; f=$(fleet_dir "$1"); shift
  [[ ${1:-} == -- ]] && shift
  (($# >= 1)) || usage
  [[ -f $f/ssh/config ]] || die "fleet not started: $f"
  local home; home=$(getent passwd "$(id -un)" | cut -d: -f6)
  [[ -n $home ]] || die "cannot find home directory"
  mkdir -p "$home/.ssh"
  # shellcheck disable=SC2016 # expanded by the inner shell
  exec unshare --mount --propagation private -- /bin/sh -c \
    'mount --bind "$1" "$2" && shift 2 && exec "$@"' fleet-run "$f/ssh" "$home/.ssh" "$@"
}

cmd_exec() {
  (($# >= 2)) || usage
  local f; f=$(fleet_dir "$1"); local name=$2; shift 2
  check_name "$name"
  [[ ${1:-} == -- ]] && shift
  (($# >= 1)) || usage
  local h pid; h=$(host_dir "$f" "$name")
  pid=$(host_ns_pid "$h")
  [[ -n $pid ]] || die "host $name is not running"
  exec nsenter --mount --target "$pid" -- "$@"
}

cmd_reboot() {
  (($# >= 2)) || usage
  local f; f=$(fleet_dir "$1"); local name=$2 wait=${3:-}
  check_name "$name"
  local h pid old port deadline; h=$(host_dir "$f" "$name")
  pid=$(listener_pid "$h")
  [[ -n $pid ]] || die "host $name is not running"
  old=$(<"$h/boot_id"); port=$(<"$h/port")
  nsenter --mount --target "$pid" -- /bin/busybox sh "$h/libexec/fake-reboot" 9>&-
  [[ $wait == --wait ]] || return 0
  deadline=$((SECONDS + 20))
  while ((SECONDS < deadline)); do
    if [[ $(<"$h/boot_id") != "$old" ]] && pid=$(listener_pid "$h") && [[ -n $pid ]] && tcp_probe "$port"; then
      return 0
    fi
    sleep 0.05
  done
  die "host $name did not come back"
}

# Every process of the host (listener, sessions, detached jobs), as the
# host's /run tells them apart.
host_all_pids() {
  local h=$1 ns
  ns=$(cat "$h/mntns" 2>/dev/null || true)
  [[ -n $ns ]] || return 0
  host_procs "$(ns_pids "$ns")" "$h/run"
}

# A frozen machine: nothing on it runs, its connections stay open but
# silent, and its clock goes on (as after a VM pause or a hung kernel).
# shellcheck disable=SC2086 # $pids: a list of pids, split on purpose
cmd_freeze() {
  (($# == 2)) || usage
  local f; f=$(fleet_dir "$1"); check_name "$2"
  local h pids; h=$(host_dir "$f" "$2")
  pids=$(host_all_pids "$h")
  [[ -n ${pids// /} ]] || die "host $2 is not running"
  # Twice: a process forked while the first round ran is caught by the second.
  kill -STOP $pids 2>/dev/null || true
  pids=$(host_all_pids "$h")
  kill -STOP $pids 2>/dev/null || true
}

# shellcheck disable=SC2086 # $pids: a list of pids, split on purpose
cmd_thaw() {
  (($# == 2)) || usage
  local f; f=$(fleet_dir "$1"); check_name "$2"
  local h pids; h=$(host_dir "$f" "$2")
  pids=$(host_all_pids "$h")
  [[ -n ${pids// /} ]] || return 0
  kill -CONT $pids 2>/dev/null || true
}

cmd_ssh_count() {
  (($# == 2)) || usage
  local f; f=$(fleet_dir "$1"); check_name "$2"
  local log; log=$(host_dir "$f" "$2")/sshd.log
  if [[ -f $log ]]; then grep -c 'Accepted publickey for' "$log" || true; else echo 0; fi
}

cmd_status() {
  (($# == 1)) || usage
  local f name h; f=$(fleet_dir "$1")
  for name in $(all_hosts "$f"); do
    h=$(host_dir "$f" "$name")
    [[ -f $h/port ]] || continue
    if [[ -n $(listener_pid "$h") ]]; then echo "$name $(<"$h/port") up"; else echo "$name $(<"$h/port") down"; fi
  done
}

(($# >= 1)) || usage
[[ $(id -u) == 0 ]] || die "must run as root"
cmd=$1; shift
case $cmd in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  run) cmd_run "$@" ;;
  exec) cmd_exec "$@" ;;
  reboot) cmd_reboot "$@" ;;
  freeze) cmd_freeze "$@" ;;
  thaw) cmd_thaw "$@" ;;
  ssh-count) cmd_ssh_count "$@" ;;
  status) cmd_status "$@" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
