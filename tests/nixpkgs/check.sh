#!/usr/bin/env bash
# Self-checks of the stand-in nixpkgs (module system, stub OS, toplevel,
# switch-to-configuration).  Needs: nix (offline), /bin/busybox, and root
# for the switch-to-configuration part (unshare + tmpfs on a private /run).
# Exits non-zero on the first failure.
set -euo pipefail

NIXPKGS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$NIXPKGS/link-lib.sh" >/dev/null
T="$(mktemp -d /tmp/stub-nixpkgs-check.XXXXXX)"
trap 'rm -rf "$T"' EXIT
NIXOPTS=(-I "nixpkgs=$NIXPKGS" --option substituters '' --option sandbox false)

pass=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; exit 1; }

# ev FILE [ARGS...]  -> strict JSON of the expression in FILE
ev() { nix-instantiate --eval --strict --json "${NIXOPTS[@]}" "$@"; }

expect_json() { # name expected file [args...]
  local name="$1" want="$2"; shift 2
  local got
  got="$(ev "$@" 2>"$T/err")" || { cat "$T/err" >&2; fail "$name: evaluation failed"; }
  [[ "$got" == "$want" ]] || fail "$name: got $got, want $want"
  ok "$name"
}

expect_error() { # name file [args...] -- patterns...
  local name="$1" file="$2"; shift 2
  local args=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do args+=("$1"); shift; done
  shift
  if ev "$file" "${args[@]}" >"$T/out" 2>"$T/err"; then
    fail "$name: expected an evaluation error, got $(cat "$T/out")"
  fi
  local p
  for p in "$@"; do
    grep -qF -- "$p" "$T/err" || { cat "$T/err" >&2; fail "$name: error lacks '$p'"; }
  done
  ok "$name"
}

# ---------------------------------------------------------------------------
# 1. Module system (lib.evalModules)
# ---------------------------------------------------------------------------
mkdir -p "$T/m"
cat >"$T/m/decls.nix" <<'EOF'
{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options = {
    name = mkOption { type = types.str; default = "default-name"; };
    forced = mkOption { type = types.str; };
    port = mkOption { type = types.port; default = 80; };
    enable = mkOption { type = types.bool; default = false; };
    extra = mkOption { type = types.bool; default = false; };
    list = mkOption { type = types.listOf types.str; default = [ ]; };
    text = mkOption { type = types.lines; default = ""; };
    tags = mkOption { type = types.attrsOf types.int; default = { }; };
    nested.deep.value = mkOption { type = types.nullOr types.int; default = null; };
    mode = mkOption { type = types.enum [ "a" "b" ]; default = "a"; };
    either = mkOption { type = types.either types.int types.str; default = 1; };
    fn = mkOption { type = types.functionTo types.str; default = x: "f${x}"; };
  };
}
EOF
cat >"$T/m/a.nix" <<'EOF'
{ lib, ... }: {
  imports = [ ./decls.nix ];
  name = lib.mkDefault "from-a";
  forced = "a";
  list = [ "a1" "a2" ];
  text = lib.mkAfter "last line";
}
EOF
cat >"$T/m/b.nix" <<'EOF'
{ config, lib, ... }: {
  imports = [ ./decls.nix ./a.nix ];   # decls.nix imported twice: included once
  config = lib.mkMerge [
    { forced = lib.mkForce "b"; list = [ "b1" ]; text = "middle"; }
    (lib.mkIf config.enable { extra = true; tags.x = 1; })
    (lib.mkIf (!config.enable) { tags.never = 1; })
  ];
}
EOF
cat >"$T/m/eval.nix" <<'EOF'
let lib = import <nixpkgs/lib>; in
(lib.evalModules {
  modules = [
    ./b.nix
    { enable = true; text = lib.mkBefore "first line"; nested.deep.value = 3; tags.y = 2; mode = "b"; either = "s"; }
    { forced = "c"; list = lib.mkIf true [ "c1" ]; port = lib.mkOverride 10 8080; }
    { port = 9090; }
  ];
}).config // { fn = (lib.evalModules { modules = [ ./decls.nix { forced = ""; } ]; }).config.fn "oo"; }
EOF
expect_json "evalModules: imports/mkDefault/mkForce/mkIf/mkMerge/mkOrder/listOf/lines" \
  '{"either":"s","enable":true,"extra":true,"fn":"foo","forced":"b","list":["a1","a2","c1","b1"],"mode":"b","name":"from-a","nested":{"deep":{"value":3}},"port":8080,"tags":{"x":1,"y":2},"text":"first line\nmiddle\nlast line"}' \
  "$T/m/eval.nix"

cat >"$T/m/err.nix" <<'EOF'
{ which }:
let
  lib = import <nixpkgs/lib>;
  cases = {
    undeclared = [ ./decls.nix ./undeclared.nix ];
    type = [ ./decls.nix ./typeerr.nix ];
    conflict = [ ./decls.nix ./conflict1.nix ./conflict2.nix ];
    boolconflict = [ ./decls.nix { forced = "x"; enable = true; } { enable = false; } ];
    undefined = [ ./decls.nix ];
    disabled = [ ./decls.nix ./undeclared.nix { disabledModules = [ ./undeclared.nix ]; forced = "ok"; } ];
  };
in removeAttrs (lib.evalModules { modules = cases.${which}; }).config [ "fn" ]
EOF
echo '{ forced = "x"; services.bogus.enable = true; }' >"$T/m/undeclared.nix"
echo '{ forced = "x"; port = "eighty"; }' >"$T/m/typeerr.nix"
echo '{ forced = "one"; }' >"$T/m/conflict1.nix"
echo '{ forced = "two"; }' >"$T/m/conflict2.nix"
expect_error "undeclared option is reported" "$T/m/err.nix" --argstr which undeclared -- \
  "The option \`services' does not exist" "undeclared.nix"
expect_error "type error names option and file" "$T/m/err.nix" --argstr which type -- \
  "A definition for option \`port' is not of type \`16 bit unsigned integer" "typeerr.nix"
expect_error "str conflict names option and files" "$T/m/err.nix" --argstr which conflict -- \
  "The option \`forced' has conflicting definition values" "conflict1.nix" "conflict2.nix"
expect_error "bool conflict" "$T/m/err.nix" --argstr which boolconflict -- \
  "The option \`enable' has conflicting definition values"
expect_error "used but not defined" "$T/m/err.nix" --argstr which undefined -- \
  "The option \`forced' was accessed but has no value defined."
expect_json "disabledModules" '"ok"' -E "(import $T/m/err.nix { which = \"disabled\"; }).forced"

# ---------------------------------------------------------------------------
# 2. Stub OS via nixos/lib/eval-config.nix
# ---------------------------------------------------------------------------
mkdir -p "$T/os"
cat >"$T/os/web1.nix" <<'EOF'
{ config, lib, pkgs, name, nodes, ... }: {
  networking.hostName = name;
  services.nginx.enable = true;
  services.nginx.virtualHosts."git.example".locations."/".proxyPass =
    "http://${nodes.git.config.networking.hostName}:${nodes.git.config.services.forgejo.port}";
  services.nginx.virtualHosts."www.example".serverName = "www";
  systemd.services.web1 = { wantedBy = [ "multi-user.target" ]; script = "true"; };
  environment.systemPackages = [ pkgs.hello ];
}
EOF
cat >"$T/os/web2.nix" <<'EOF'
{ config, lib, ... }: {
  services.nginx.virtualHosts."git.example".locations."/static".root = "/srv/static";
  services.nginx.virtualHosts."www.example".locations."/".extraConfig = "gzip on;";
  services.openssh.ports = [ 2222 ];
  systemd.services.web1.after = [ "network.target" ];
  users.users.alice = { isNormalUser = true; extraGroups = [ "wheel" ]; };
  users.groups.ops.members = [ "alice" ];
  environment.etc."motd".text = lib.mkIf config.services.nginx.enable "hello from ${config.networking.hostName}";
}
EOF
cat >"$T/os/net.nix" <<'EOF'
# Evaluate like a deployment tool: nodes refer to each other.
{ viaSpecialArgs ? false, etcText ? "one" }:
let
  lib = import <nixpkgs/lib>;
  network = {
    web = { imports = [ ./web1.nix ./web2.nix ]; environment.etc."app.conf".text = etcText; };
    git = { lib, ... }: { services.forgejo.enable = true; services.forgejo.port = "3001"; };
  };
  nodes = lib.mapAttrs (name: m: import <nixpkgs/nixos/lib/eval-config.nix> (
    if viaSpecialArgs
    then { modules = [ m ]; specialArgs = { inherit name nodes; }; }
    else { modules = [ m { _module.args = { inherit nodes; }; } ]; extraArgs = { inherit name; }; }
  )) network;
in nodes
EOF
cat >"$T/os/net-values.nix" <<'EOF'
{ viaSpecialArgs }:
let nodes = import ./net.nix { inherit viaSpecialArgs; }; c = nodes.web.config; in {
  hostName = c.networking.hostName;
  proxy = c.services.nginx.virtualHosts."git.example".locations."/".proxyPass;
  static = c.services.nginx.virtualHosts."git.example".locations."/static".root;
  www = { inherit (c.services.nginx.virtualHosts."www.example") serverName; extra = c.services.nginx.virtualHosts."www.example".locations."/".extraConfig; };
  ssh = c.services.openssh.ports;
  unit = { inherit (c.systemd.services.web1) wantedBy after script enable; };
  alice = { inherit (c.users.users.alice) isNormalUser extraGroups group uid; };
  ops = c.users.groups.ops.members;
  motd = c.environment.etc.motd.text;
  gitHost = nodes.git.config.networking.hostName;
}
EOF
want='{"alice":{"extraGroups":["wheel"],"group":"","isNormalUser":true,"uid":null},"gitHost":"nixos","hostName":"web","motd":"hello from web","ops":["alice"],"proxy":"http://nixos:3001","ssh":[2222],"static":"/srv/static","unit":{"after":["network.target"],"enable":true,"script":"true","wantedBy":["multi-user.target"]},"www":{"extra":"gzip on;","serverName":"www"}}'
expect_json "eval-config: attrsOf submodule merging across files, _module.args/extraArgs" "$want" \
  "$T/os/net-values.nix" --arg viaSpecialArgs false
expect_json "eval-config: specialArgs (name, nodes)" "$want" \
  "$T/os/net-values.nix" --arg viaSpecialArgs true

cat >"$T/os/bad.nix" <<'EOF'
{ which }:
let
  modules = {
    undeclared = { services.nginx.virtualHosts.x.bogusOption = 1; };
    toplevelUndeclared = { services.nginxx.enable = true; };
    type = { services.forgejo.port = 3000; };
    assertion = { assertions = [ { assertion = false; message = "stub assertion fired"; } ]; };
  };
in (import <nixpkgs/nixos/lib/eval-config.nix> { modules = [ modules.${which} ]; }).config.system.build.toplevel.drvPath
EOF
expect_error "eval-config: undeclared option in submodule" "$T/os/bad.nix" --argstr which undeclared -- \
  "The option \`services.nginx.virtualHosts.x.bogusOption' does not exist" "bad.nix"
expect_error "eval-config: undeclared option checked on config access" "$T/os/bad.nix" --argstr which toplevelUndeclared -- \
  "The option \`services.nginxx' does not exist" "bad.nix"
expect_error "eval-config: forgejo.port is a string" "$T/os/bad.nix" --argstr which type -- \
  "A definition for option \`services.forgejo.port' is not of type \`string'" "bad.nix"
expect_error "eval-config: failed assertions" "$T/os/bad.nix" --argstr which assertion -- \
  "stub assertion fired"
# (nixpkgs' real lib adds `graph`, the module graph, to an extended evaluation.)
expect_json "eval-config: returned attributes" \
  '["_module","_type","class","config","extendModules","extraArgs","lib","options","pkgs","type"]' \
  -E 'builtins.attrNames (removeAttrs (import <nixpkgs/nixos/lib/eval-config.nix> { modules = [ ]; }) [ "graph" ])'

# NixOS' eval-config contract: system (null leaves it to nixpkgs.*), pkgs
# (becomes nixpkgs.pkgs), baseModules (replacing them drops the pkgs module),
# extraModules, and the module arguments it adds.
cat >"$T/os/contract.nix" <<'EOF'
let
  evalConfig = import <nixpkgs/nixos/lib/eval-config.nix>;
  lib = import <nixpkgs/lib>;
  noSystem = evalConfig { system = null; modules = [ { nixpkgs.hostPlatform = "riscv64-linux"; } ]; };
  own = (import <nixpkgs> { system = "aarch64-linux"; }) // { marker = "own"; };
  withPkgs = evalConfig { pkgs = own; modules = [ ]; };
  extra = evalConfig { modules = [ ]; extraModules = [ { networking.hostName = "fromextra"; } ]; };
  args = evalConfig { modules = [ ({ baseModules, extraModules, modules, noUserModules, ... }: {
    environment.etc.n.text = "${toString (builtins.length modules)} ${toString (builtins.length extraModules)} ${toString (noUserModules.config.networking.hostName)}";
  }) ]; };
in {
  noSystem = noSystem.pkgs.system;
  pkgs = withPkgs.pkgs.marker;
  pkgsSystem = withPkgs._module.args.pkgs.system;
  extra = extra.config.networking.hostName;
  args = args.config.environment.etc.n.text;
  extended = ((args.extendModules { modules = [ { networking.hostName = "ext"; } ]; }).config.networking.hostName);
}
EOF
expect_json "eval-config: system = null, pkgs, extraModules, module arguments, extendModules" \
  '{"args":"1 0 nixos","extended":"ext","extra":"fromextra","noSystem":"riscv64-linux","pkgs":"own","pkgsSystem":"aarch64-linux"}' \
  "$T/os/contract.nix"
expect_error "eval-config: pkgs conflicts with a user's nixpkgs.pkgs" -E \
  '(import <nixpkgs/nixos/lib/eval-config.nix> { pkgs = { system = "a"; }; modules = [ { nixpkgs.pkgs = { system = "b"; }; } ]; }).pkgs.system' -- \
  "The option \`nixpkgs.pkgs' is defined multiple times"

# networking.hostName is one DNS label, as in NixOS.
cat >"$T/os/hostname.nix" <<'EOF'
{ name, domain ? null }:
(import <nixpkgs/nixos/lib/eval-config.nix> {
  modules = [ { networking.hostName = name; networking.domain = domain; } ];
}).config.networking
EOF
expect_json "hostName: labels, fqdn" '{"fqdn":"db_1.example.com","or":"db_1.example.com"}' \
  -E "let n = import $T/os/hostname.nix { name = \"db_1\"; domain = \"example.com\"; }; in { fqdn = n.fqdn; or = n.fqdnOrHostName; }"
expect_json "hostName: empty is allowed, fqdnOrHostName without domain" '""' \
  -E "(import $T/os/hostname.nix { name = \"\"; }).fqdnOrHostName"
for bad in web.example.com -web web- "$(printf 'a%.0s' $(seq 64))"; do
  expect_error "hostName: '$bad' is no DNS label" -E "(import $T/os/hostname.nix { name = \"$bad\"; }).hostName" -- \
    "A definition for option \`networking.hostName' is not of type \`string matching the pattern"
done

# ---------------------------------------------------------------------------
# 3. Toplevel
# ---------------------------------------------------------------------------
build() { nix-build "${NIXOPTS[@]}" --no-out-link "$@" 2>"$T/build.log" || { cat "$T/build.log" >&2; fail "nix-build $*"; }; }
top1=$(build -E "(import $T/os/net.nix { etcText = \"one\"; }).web.config.system.build.toplevel")
top1b=$(build -E "(import $T/os/net.nix { etcText = \"one\"; viaSpecialArgs = true; }).web.config.system.build.toplevel")
top2=$(build -E "(import $T/os/net.nix { etcText = \"two\"; }).web.config.system.build.toplevel")
[[ "$top1" == */nix/store/*-nixos-system-web-stub ]] || fail "toplevel name: $top1"
ok "toplevel builds: $top1"
[[ -x "$top1/bin/switch-to-configuration" ]] || fail "no switch-to-configuration"
head -n1 "$top1/bin/switch-to-configuration" | grep -qx '#!/bin/busybox sh' || fail "bad shebang"
[[ "$(cat "$top1/nixos-version")" == stub && "$(cat "$top1/etc/app.conf")" == one && -d "$top1/sw/bin" && -x "$top1/init" ]] \
  || fail "toplevel layout"
ok "toplevel layout (switch-to-configuration, nixos-version, etc/, init, sw/bin)"
expect_json "config.json contents" \
  '{"etc":{"app.conf":"one","hosts":"","modules-load.d/nixos.conf":"","motd":"hello from web"},"forgejo":{"enable":false,"port":"3000"},"hostName":"web","nginx":{"enable":true,"virtualHosts":{"git.example":{"extraConfig":"","locations":{"/":{"extraConfig":"","proxyPass":"http://nixos:3001","root":null},"/static":{"extraConfig":"","proxyPass":null,"root":"/srv/static"}},"root":null,"serverAliases":[],"serverName":null},"www.example":{"extraConfig":"","locations":{"/":{"extraConfig":"gzip on;","proxyPass":null,"root":null}},"root":null,"serverAliases":[],"serverName":"www"}}},"systemdServices":["web1"],"users":["alice","root"]}' \
  -E "let j = builtins.fromJSON (builtins.unsafeDiscardStringContext (builtins.readFile $top1/config.json)); in { inherit (j) etc forgejo hostName nginx systemdServices; users = builtins.attrNames j.users; }"
[[ "$top1" == "$top1b" ]] || fail "same config gave different paths: $top1 $top1b"
ok "same config -> same path"
[[ "$top1" != "$top2" ]] || fail "different etc text gave the same path"
ok "different etc text -> different path ($top2)"

# What NixOS renders of the options a deployment tool sets: /etc/hosts,
# modules-load.d, the activation script (snippets after their deps), masked
# units and the targets' .wants links.
cat >"$T/os/render.nix" <<'EOF'
import <nixpkgs/nixos/lib/eval-config.nix> { modules = [ ({ lib, ... }: {
  networking.hostName = "r";
  networking.hosts."127.0.0.21" = [ "one" "uno" ];
  networking.extraHosts = "127.0.0.22 two\n";
  boot.kernelModules = [ "kvm" "tun" ];
  networking.firewall.trustedInterfaces = [ "wg0" ];
  system.activationScripts.b = lib.stringAfter [ "a" "absent" ] "echo b";
  system.activationScripts.a = "echo a";
  systemd.services.on = { wantedBy = [ "multi-user.target" ]; script = "true"; };
  systemd.services.off = { enable = false; wantedBy = [ "keys.target" ]; script = "true"; };
}) ]; }
EOF
top3=$(build -E "(import $T/os/render.nix).config.system.build.toplevel")
[[ "$(cat "$top3/etc/hosts")" == $'127.0.0.21 one uno\n127.0.0.22 two' ]] || fail "etc/hosts: $(cat "$top3/etc/hosts")"
[[ "$(cat "$top3/etc/modules-load.d/nixos.conf")" == $'kvm\ntun' ]] || fail "modules-load.d"
grep -q '"trustedInterfaces":\["wg0"\]' "$top3/config.json" || fail "trustedInterfaces"
a_at=$(grep -n '^echo a$' "$top3/activate" | cut -d: -f1)
b_at=$(grep -n '^echo b$' "$top3/activate" | cut -d: -f1)
[[ -n $a_at && -n $b_at && $a_at -lt $b_at ]] || fail "activate: snippet b must follow a: $(cat "$top3/activate")"
u=$top3/etc/systemd/system
[[ "$(readlink "$u/off.service")" == /dev/null && -f $u/on.service ]] || fail "masked unit"
[[ "$(readlink "$u/multi-user.target.wants/on.service")" == ../on.service &&
  "$(readlink "$u/keys.target.wants/off.service")" == ../off.service ]] || fail "wants links"
ok "rendered: etc/hosts, modules-load.d, trustedInterfaces, activate, masked units, .wants links"

# ---------------------------------------------------------------------------
# 4. 30-machine network, evaluated in one nix-instantiate --eval --strict
# ---------------------------------------------------------------------------
cat >"$T/os/net30.nix" <<'EOF'
{ drv ? false }:
let
  lib = import <nixpkgs/lib>;
  n = 30;
  names = map (i: "m${toString i}") (lib.range 1 n);
  next = name: let i = lib.strings.toInt (lib.removePrefix "m" name); in "m${toString (lib.trivial.mod i n + 1)}";
  machine = name: { config, lib, nodes, ... }: {
    networking.hostName = name;
    services.forgejo.enable = true;
    services.forgejo.port = toString (3000 + lib.strings.toInt (lib.removePrefix "m" name));
    services.nginx.enable = true;
    services.nginx.virtualHosts.${name}.locations."/".proxyPass =
      "http://${next name}:${nodes.${next name}.config.services.forgejo.port}";
    environment.etc."peer".text = nodes.${next name}.config.networking.hostName;
    systemd.services.app = { wantedBy = [ "multi-user.target" ]; script = "true"; };
  };
  nodes = lib.genAttrs names (name: import <nixpkgs/nixos/lib/eval-config.nix> {
    modules = [ (machine name) ];
    extraArgs = { inherit name nodes; };
  });
in lib.mapAttrs (name: node:
  if drv then node.config.system.build.toplevel.drvPath
  else {
    inherit (node.config.networking) hostName;
    proxy = node.config.services.nginx.virtualHosts.${name}.locations."/".proxyPass;
    peer = node.config.environment.etc.peer.text;
    port = node.config.services.forgejo.port;
  }) nodes
EOF
ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(ms)
out=$(ev "$T/os/net30.nix" --arg drv false) || fail "30-machine eval"
t1=$(ms)
echo "$out" | grep -qF '"m30":{"hostName":"m30","peer":"m1","port":"3030","proxy":"http://m1:3001"}' || fail "30-machine values: $out"
ok "30-machine --eval --strict --json (nodes cross-referenced): $((t1 - t0)) ms"
t0=$(ms)
ev "$T/os/net30.nix" --arg drv true >/dev/null || fail "30-machine drvPaths"
t1=$(ms)
ok "30-machine toplevel drvPaths: $((t1 - t0)) ms"

# ---------------------------------------------------------------------------
# 5. switch-to-configuration, on a private tmpfs /run
# ---------------------------------------------------------------------------
if [[ $(id -u) -ne 0 ]]; then
  echo "skip switch-to-configuration tests (need root)"
else
  cat >"$T/os/knobs.nix" <<'EOF'
{ knobs }:
(import <nixpkgs/nixos/lib/eval-config.nix> {
  modules = [ { networking.hostName = "knobs"; stub.activation = knobs; } ];
}).config.system.build.toplevel
EOF
  plain=$(build "$T/os/knobs.nix" --arg knobs '{}')
  failing=$(build "$T/os/knobs.nix" --arg knobs '{ fail = true; }')
  reboot=$(build "$T/os/knobs.nix" --arg knobs '{ requestReboot = true; }')
  sleepy=$(build "$T/os/knobs.nix" --arg knobs '{ sleep = 1; }')
  killer=$(build "$T/os/knobs.nix" --arg knobs '{ killSshd = true; }')
  newinit=$(build "$T/os/knobs.nix" --arg knobs '{ initInterfaceVersion = "stub 2"; }')
  units=$(build "$T/os/knobs.nix" --arg knobs '{ failedUnits = [ "a.service" "b.service" ]; }')
  # Two systems whose units differ in every way dry-activate tells apart.
  cat >"$T/os/units.nix" <<'EOF'
{ rev }:
let
  svc = extra: { wantedBy = [ "multi-user.target" ]; script = "echo ${rev}"; } // extra;
in
(import <nixpkgs/nixos/lib/eval-config.nix> {
  modules = [ {
    networking.hostName = "units";
    systemd.services = {
      same = { script = "true"; description = "described ${rev}"; };
      changed = svc { };
      restarted = svc { stopIfChanged = false; };
      reloaded = svc { reloadIfChanged = true; };
      kept = svc { restartIfChanged = false; };
      triggered = { script = "true"; reloadTriggers = [ rev ]; };
      ${if rev == "a" then "gone" else "added"} = svc { };
    };
    systemd.paths.watch.pathConfig.PathExists = "/run/${rev}";
  } ];
}).config.system.build.toplevel
EOF
  unitsA=$(build "$T/os/units.nix" --argstr rev a)
  unitsB=$(build "$T/os/units.nix" --argstr rev b)
  grep -qx 'X-StopIfChanged=false' "$unitsA/etc/systemd/system/restarted.service" || fail "unit file of restarted.service"
  grep -qx 'PathExists=/run/a' "$unitsA/etc/systemd/system/watch.path" || fail "unit file of watch.path"
  [[ "$(readlink "$unitsA/etc/systemd/system/multi-user.target.wants/changed.service")" == ../changed.service ]] \
    || fail "wantedBy link of changed.service"
  # Activation snippets, in dependency order; a failing one fails the
  # script, which goes on (as NixOS').
  cat >"$T/os/snippets.nix" <<'EOF'
{ bad }:
(import <nixpkgs/nixos/lib/eval-config.nix> {
  modules = [ ({ lib, ... }: {
    networking.hostName = "snippets";
    system.activationScripts = {
      a = lib.stringAfter [ "users" "c" ] "echo a >> /run/snippets";
      b = (if bad then "false; " else "") + "echo b >> /run/snippets";
      c = "echo c >> /run/snippets";
    };
  }) ];
}).config.system.build.toplevel
EOF
  snippets=$(build "$T/os/snippets.nix" --arg bad false)
  badSnippet=$(build "$T/os/snippets.nix" --arg bad true)
  cat >"$T/stc.sh" <<EOF
set -u
BB=/bin/busybox
mount -t tmpfs tmpfs /run || exit 90
fail() { echo "FAIL \$*" >&2; exit 1; }
# bad action
$plain/bin/switch-to-configuration frobnicate 2>/dev/null; [ \$? -eq 1 ] || fail "bad action should exit 1"
# dry-activate changes nothing
o=\$($plain/bin/switch-to-configuration dry-activate 2>&1) || fail dry-activate
[ "\$o" = "would activate the configuration..." ] || fail "dry-activate output: \$o"
[ ! -e /run/current-system ] && [ ! -e /run/stub-os/boot-default ] || fail "dry-activate changed state"
# test: current-system only
$plain/bin/switch-to-configuration test || fail test
[ "\$(\$BB readlink /run/current-system)" = "$plain" ] || fail "test: current-system"
[ ! -e /run/stub-os/boot-default ] || fail "test wrote boot-default"
# boot: boot-default only
$failing/bin/switch-to-configuration boot 2>/dev/null; [ \$? -eq 1 ] || fail "fail knob should exit 1"
$reboot/bin/switch-to-configuration boot || fail "requestReboot: boot should exit 0"
[ "\$(cat /run/stub-os/boot-default)" = "$reboot" ] || fail "boot: boot-default"
[ "\$(\$BB readlink /run/current-system)" = "$plain" ] || fail "boot changed current-system"
# requestReboot, as NixOS: switch exits 100 before activating, boot default set
$reboot/bin/switch-to-configuration switch 2>/run/err; [ \$? -eq 100 ] || fail "requestReboot switch should exit 100"
grep -q "only after a reboot" /run/err || fail "reboot message"
[ "\$(cat /run/stub-os/boot-default)" = "$reboot" ] || fail "requestReboot switch: boot-default"
[ "\$(\$BB readlink /run/current-system)" = "$plain" ] || fail "requestReboot switch must not activate"
# switch with requestReboot after booting into it: exit 0
\$BB ln -s $reboot /run/booted-system
$reboot/bin/switch-to-configuration switch || fail "requestReboot when booted into it should exit 0"
[ "\$(\$BB readlink /run/current-system)" = "$reboot" ] || fail "switch: current-system"
# switch
$plain/bin/switch-to-configuration switch || fail switch
[ "\$(\$BB readlink /run/current-system)" = "$plain" ] && [ "\$(cat /run/stub-os/boot-default)" = "$plain" ] || fail "switch: state"
# sleep
s=\$(\$BB date +%s); $sleepy/bin/switch-to-configuration test || fail sleepy; e=\$(\$BB date +%s)
[ \$((e - s)) -ge 1 ] || fail "sleep knob"
# killSshd: kills the process tree of the test host's sshd pid file
# (\$STUB_HOST_DIR/sshd.pid)
# (a fake "sshd": a shell with a child process)
\$BB sh -c '/bin/busybox sleep 1000 & echo \$! > /run/child; wait' & victim=\$!
while [ ! -s /run/child ]; do \$BB sleep 0.1; done
child=\$(cat /run/child)
\$BB mkdir -p /run/fakehost
echo \$victim > /run/fakehost/sshd.pid
STUB_HOST_DIR=/run/fakehost $killer/bin/switch-to-configuration test || fail killer
alive() { grep -q '^State:[[:space:]]*[RSD]' /proc/\$1/status 2>/dev/null; }
for i in 1 2 3 4 5 6 7 8 9 10; do
  alive \$victim || alive \$child || break
  \$BB sleep 0.2
done
alive \$victim && fail "killSshd did not kill the pid-file process"
alive \$child && fail "killSshd did not kill the pid-file process' child"
wait \$victim 2>/dev/null
# activation log
cat > /run/want <<LOG
dry-activate $plain
test $plain
boot $failing
boot $reboot
switch $reboot
switch $reboot
switch $plain
test $sleepy
test $killer
LOG
cmp -s /run/want /run/stub-os/activations.log || { cat /run/stub-os/activations.log >&2; fail "activations.log"; }
# As NixOS': only root may switch.
setpriv --reuid 65534 --regid 65534 --clear-groups $plain/bin/switch-to-configuration test 2>/run/err; [ \$? -eq 1 ] || fail "non-root should exit 1"
grep -q "must be run as the root user" /run/err || fail "non-root message"
# As NixOS': another init interface exits 100 before activating (switch
# has already made it the boot default), boot is fine.
$newinit/bin/switch-to-configuration test 2>/run/err; [ \$? -eq 100 ] || fail "new init interface: test should exit 100"
grep -q "after a reboot" /run/err || fail "init interface message"
[ "\$(\$BB readlink /run/current-system)" = "$killer" ] || fail "exit 100 must not activate"
NIXOS_INSTALL_BOOTLOADER=1 $newinit/bin/switch-to-configuration switch 2>/dev/null; [ \$? -eq 100 ] || fail "new init interface: switch should exit 100"
[ "\$(cat /run/stub-os/boot-default)" = "$newinit" ] && [ "\$(\$BB readlink /run/current-system)" = "$killer" ] || fail "switch with exit 100: boot default only"
tail -n1 /run/stub-os/bootloader.log | grep -qx "$newinit NIXOS_INSTALL_BOOTLOADER=1" || fail "bootloader.log: \$(tail -n1 /run/stub-os/bootloader.log)"
$newinit/bin/switch-to-configuration boot || fail "new init interface: boot should exit 0"
# As NixOS': failed units leave the new system active, exit 4.
$units/bin/switch-to-configuration switch 2>/run/err; [ \$? -eq 4 ] || fail "failed units should exit 4"
grep -q "the following units failed: a.service, b.service" /run/err || fail "failed units message"
[ "\$(\$BB readlink /run/current-system)" = "$units" ] || fail "exit 4 keeps the new system active"
# dry-activate: NixOS' lines for the units of the running system (unitsA)
# that the new one (unitsB) changes or removes.
$unitsA/bin/switch-to-configuration test || fail "test unitsA"
$unitsB/bin/switch-to-configuration dry-activate 2>/run/dry || fail "dry-activate unitsB"
cat > /run/want <<LOG
would stop the following units: changed.service, gone.service
would NOT stop the following changed units: kept.service
would activate the configuration...
would reload the following units: reloaded.service, triggered.service
would restart the following units: restarted.service, watch.path
would start the following units: changed.service
LOG
cmp -s /run/want /run/dry || { cat /run/dry >&2; fail "dry-activate units"; }
[ "\$(\$BB readlink /run/current-system)" = "$unitsA" ] || fail "dry-activate changed current-system"
# The activation snippets run on test and switch, in their order.
$snippets/bin/switch-to-configuration test || fail "test snippets"
[ "\$(cat /run/snippets)" = "\$(printf 'c\\na\\nb')" ] || fail "snippets' order: \$(cat /run/snippets)"
$badSnippet/bin/switch-to-configuration switch >/run/err 2>&1; [ \$? -eq 2 ] || fail "a failing snippet should exit 2"
grep -q "Activation script snippet 'b' failed (1)" /run/err || fail "failed snippet message: \$(cat /run/err)"
[ "\$(\$BB readlink /run/current-system)" = "$badSnippet" ] || fail "exit 2 keeps the new system active"
[ "\$(cat /run/snippets)" = "\$(printf 'c\\na\\nb\\nc\\na\\nb')" ] || fail "snippets after a failing one: \$(cat /run/snippets)"
echo ALLGOOD
EOF
  res=$(unshare --mount --propagation private sh "$T/stc.sh" 2>&1) || { echo "$res" >&2; fail "switch-to-configuration"; }
  [[ "$res" == *ALLGOOD* ]] || { echo "$res" >&2; fail "switch-to-configuration"; }
  ok "switch-to-configuration: usage, dry-activate (units), test, boot, switch, fail, requestReboot, sleep, killSshd, log, root only, exit 100 (init interface), exit 4 (failed units), activation snippets (exit 2), NIXOS_INSTALL_BOOTLOADER"
fi

echo "all $pass checks passed"
