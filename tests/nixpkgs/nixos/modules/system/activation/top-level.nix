# system.build.toplevel of the stub OS: a real derivation built offline with
# /bin/busybox only.  Its output looks like a (tiny) NixOS system:
#   config.json, nixos-version, etc/<files>, bin/switch-to-configuration,
#   activate, init, kernel-params, sw/bin/
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types escapeShellArg concatStringsSep mapAttrs
    filterAttrs attrNames attrValues optionalString;

  cfg = config;
  act = cfg.stub.activation;
  inherit (pkgs) system;

  enabledEtc = filterAttrs (_: e: e.enable && e.text != null) cfg.environment.etc;
  etcList = attrValues enabledEtc;

  pkgName = p: p.name or (toString p);

  configJson = builtins.toJSON {
    hostName = cfg.networking.hostName;
    domain = cfg.networking.domain;
    fqdnOrHostName = cfg.networking.fqdnOrHostName;
    stateVersion = cfg.system.stateVersion;
    openssh = { inherit (cfg.services.openssh) enable ports; };
    firewall = { inherit (cfg.networking.firewall) enable allowedTCPPorts allowedUDPPorts trustedInterfaces; };
    nginx = {
      inherit (cfg.services.nginx) enable;
      virtualHosts = mapAttrs (name: vh: {
        inherit (vh) serverName serverAliases root extraConfig;
        locations = mapAttrs (_: l: { inherit (l) proxyPass root extraConfig; }) vh.locations;
      }) cfg.services.nginx.virtualHosts;
    };
    forgejo = { inherit (cfg.services.forgejo) enable port; };
    etc = mapAttrs (_: e: e.text) enabledEtc;
    # (`or`: tests replace systemd.nix by free-form attributes.)
    systemdServices = attrNames (filterAttrs (_: s: s.enable or true) (cfg.systemd.services or { }));
    systemdPaths = attrNames (filterAttrs (_: s: s.enable or true) (cfg.systemd.paths or { }));
    users = mapAttrs (_: u: { inherit (u) isNormalUser isSystemUser group extraGroups uid home; })
      cfg.users.users;
    groups = mapAttrs (_: g: { inherit (g) gid members; }) cfg.users.groups;
    systemPackages = map pkgName cfg.environment.systemPackages;
    activationScripts = attrNames (removeAttrs cfg.system.activationScripts [ "script" ]);
    activation = { inherit (act) fail requestReboot sleep killSshd failedUnits; };
  };

  bb = "/bin/busybox";

  # Unit files, as NixOS writes them into etc/systemd/system
  # (nixos/lib/systemd-lib.nix); dry-activate compares them. (`or`: a
  # free-form systemd has no option defaults.) Unlike NixOS, ExecStart and
  # friends hold the script itself rather than a script in the store of its
  # own: it changes exactly when the script does, without a build per unit.
  concatStrings = builtins.concatStringsSep "";
  unitValue = v: if v == true then "true" else if v == false then "false" else toString v;
  section = attrs: concatStrings (map (k:
    let v = attrs.${k}; in
    concatStrings (map (x: "${k}=${unitValue x}\n") (if builtins.isList v then v else [ v ])))
    (attrNames attrs));
  nonEmpty = filterAttrs (_: v: v != "" && v != [ ] && v != null);
  quoteExec = script: "/bin/busybox sh -c \"" + builtins.replaceStrings
    [ "\\" "\"" "\n" "%" ] [ "\\\\" "\\\"" "\\n" "%%" ] script + "\"";
  unitSection = u: "[Unit]\n" + section (nonEmpty {
    Description = u.description or "";
    After = toString (u.after or [ ]);
    Before = toString (u.before or [ ]);
    Wants = toString (u.wants or [ ]);
    Requires = toString (u.requires or [ ]);
    BindsTo = toString (u.bindsTo or [ ]);
    PartOf = toString (u.partOf or [ ]);
    X-Restart-Triggers = toString (u.restartTriggers or [ ]);
    X-Reload-Triggers = toString (u.reloadTriggers or [ ]);
  }) + section (u.unitConfig or { });
  serviceUnit = s: let e = env s; in unitSection s + "\n[Service]\n"
    + concatStrings (map (k: "Environment=\"${k}=${toString e.${k}}\"\n") (attrNames e))
    + section (nonEmpty {
      ExecStartPre = if (s.preStart or "") != "" then quoteExec s.preStart else "";
      ExecStart = if (s.script or "") != "" then quoteExec s.script else "";
      ExecStartPost = if (s.postStart or "") != "" then quoteExec s.postStart else "";
    })
    + (if s.reloadIfChanged or false then "X-ReloadIfChanged=true\n"
      else if !(s.restartIfChanged or true) then "X-RestartIfChanged=false\n" else "")
    + optionalString (!(s.stopIfChanged or true)) "X-StopIfChanged=false\n"
    + section (s.serviceConfig or { });
  env = s: filterAttrs (_: v: v != null) (s.environment or { })
    // (if (s.path or [ ]) == [ ] then { } else {
      PATH = builtins.concatStringsSep ":" (map (p: "${p}/bin") s.path);
    });
  pathUnit = p: unitSection p + "\n[Path]\n" + section (p.pathConfig or { });
  enabled = filterAttrs (_: u: u.enable or true);
  units =
    lib.mapAttrsToList (n: s: { file = "${n}.service"; text = serviceUnit s; }) (enabled (cfg.systemd.services or { }))
    ++ lib.mapAttrsToList (n: p: { file = "${n}.path"; text = pathUnit p; }) (enabled (cfg.systemd.paths or { }));
  # As NixOS' generateUnits: a disabled unit is masked (a link to
  # /dev/null), and wantedBy/requiredBy become links in <target>.wants/ and
  # <target>.requires/, for enabled and disabled units alike.
  allUnits =
    lib.mapAttrsToList (n: u: u // { file = "${n}.service"; }) (cfg.systemd.services or { })
    ++ lib.mapAttrsToList (n: u: u // { file = "${n}.path"; }) (cfg.systemd.paths or { });
  masked = builtins.filter (u: !(u.enable or true)) allUnits;
  unitLinks = concatStringsSep "" (map (u:
    concatStringsSep "" (map (t: ''
      $bb mkdir -p $out/etc/systemd/system/${escapeShellArg "${t}.wants"}
      $bb ln -sfn ${escapeShellArg "../${u.file}"} $out/etc/systemd/system/${escapeShellArg "${t}.wants"}/
    '') (u.wantedBy or [ ]))
    + concatStringsSep "" (map (t: ''
      $bb mkdir -p $out/etc/systemd/system/${escapeShellArg "${t}.requires"}
      $bb ln -sfn ${escapeShellArg "../${u.file}"} $out/etc/systemd/system/${escapeShellArg "${t}.requires"}/
    '') (u.requiredBy or [ ]))) allUnits)
    + concatStringsSep "" (map (u: ''
      $bb ln -s /dev/null $out/etc/systemd/system/${escapeShellArg u.file}
    '') masked);


  # @out@ is replaced by the output path at build time.
  switchScript = ''
    #!/bin/busybox sh
    # switch-to-configuration of the stub OS (generated).
    set -e
    out=@out@
    bb=/bin/busybox
    action="$1"
    case "$action" in
      switch|boot|test|dry-activate) ;;
      *)
        echo "Usage: $0 [switch|boot|test|dry-activate]" >&2
        exit 1
        ;;
    esac
    # As NixOS': only root may switch.
    if [ "$($bb id -u)" != 0 ]; then
      echo "switch-to-configuration must be run as the root user" >&2
      exit 1
    fi
    $bb mkdir -p /run/stub-os
    echo "$action $out" >> /run/stub-os/activations.log
    # What NixOS' switch-to-configuration reads from its environment.
    echo "$action NIXOS_NO_SYNC=''${NIXOS_NO_SYNC:-}" >> /run/stub-os/environment.log
  '' + optionalString act.fail ''
    echo "stub activation failure requested" >&2
    exit 1
  '' + ''
    if [ "$action" = dry-activate ]; then
      # As NixOS' switch-to-configuration(-ng): what activating would do to
      # the running system's units, judged from the two systems' unit files,
      # in NixOS' words on stderr. The stand-in has no systemd to ask which
      # units are active: every unit of the running system counts as active.
      # Changed targets are started, which NixOS never shows.
      old=/run/current-system/etc/systemd/system
      new=$out/etc/systemd/system
      stop= start= restart= reload= skip=
      value() { $bb sed -n "s/^$1=//p" "$2" | $bb tail -n 1; }
      yes() { case "$1" in 1|yes|true|on) return 0 ;; *) return 1 ;; esac; }
      no() { [ -n "$1" ] && ! yes "$1"; }
      # A change in these keys alone restarts nothing (X-Reload-Triggers
      # reloads).
      relevant() {
        $bb grep -v -E '^(Description|Documentation|OnFailure|OnSuccess|OnFailureJobMode|IgnoreOnIsolate|StopWhenUnneeded|RefuseManualStart|RefuseManualStop|AllowIsolate|CollectMode|SourcePath|X-Reload-Triggers)=' "$1" || true
      }
      for f in "$old"/*; do
        [ -f "$f" ] || continue
        u=''${f##*/}
        n=$new/$u
        case "$u" in *.target) continue ;; esac
        if [ ! -f "$n" ]; then
          no "$(value X-StopOnRemoval "$f")" || stop="$stop $u"
          continue
        fi
        if [ "$(relevant "$f")" = "$(relevant "$n")" ]; then
          [ "$(value X-Reload-Triggers "$f")" = "$(value X-Reload-Triggers "$n")" ] || reload="$reload $u"
          continue
        fi
        case "$u" in *.slice|*.socket) continue ;; esac
        if yes "$(value X-ReloadIfChanged "$n")"; then
          reload="$reload $u"
        elif no "$(value X-RestartIfChanged "$n")" || yes "$(value RefuseManualStop "$n")" ||
          yes "$(value X-OnlyManualStart "$n")"; then
          skip="$skip $u"
        elif no "$(value X-StopIfChanged "$n")" || [ "''${u%.service}" = "$u" ]; then
          restart="$restart $u"
        else
          stop="$stop $u"
          start="$start $u"
        fi
      done
      say() {
        [ -z "$2" ] && return 0
        printf '%s\n' $2 | $bb sort -f |
          $bb awk -v what="would $1 the following$3 units: " '{ s = s (NR > 1 ? ", " : "") $0 } END { print what s }' >&2
      }
      say stop "$stop"
      say "NOT stop" "$skip" " changed"
      echo "would activate the configuration..." >&2
      say reload "$reload"
      say restart "$restart"
      say start "$start"
      exit 0
    fi
  '' + optionalString (act.sleep > 0) ''
    $bb sleep ${toString act.sleep}
  '' + ''
    case "$action" in
      switch|boot)
        # The boot loader installer reads NIXOS_INSTALL_BOOTLOADER (1: also
        # install it, not just update its entries).
        echo "$out NIXOS_INSTALL_BOOTLOADER=''${NIXOS_INSTALL_BOOTLOADER:-}" >> /run/stub-os/bootloader.log
        echo "$out" > /run/stub-os/boot-default.tmp.$$
        $bb mv -f /run/stub-os/boot-default.tmp.$$ /run/stub-os/boot-default
        ;;
    esac
    # As NixOS': a changed init interface cannot be switched to live. (NixOS
    # also refuses when there is no current system; test hosts start without.)
  '' + optionalString act.requestReboot ''
    case "$action" in
      switch|test)
        if [ "$($bb readlink /run/booted-system 2>/dev/null)" != "$out" ]; then
          echo "warning: this configuration takes effect only after a reboot" >&2
          exit 100
        fi
        ;;
    esac
  '' + ''
    case "$action" in
      switch|test)
        if [ -e /run/current-system ] &&
          [ "$($bb cat /run/current-system/init-interface-version 2>/dev/null)" != "$($bb cat "$out/init-interface-version")" ]; then
          echo "warning: the new configuration's init interface differs from the running one's; it takes effect after a reboot" >&2
          exit 100
        fi
        ;;
    esac
    # As NixOS': a failing activation script makes the result 2, and the
    # switch goes on.
    res=0
    case "$action" in
      switch|test)
        "$out/activate" "$out" || res=2
        # (NixOS' activation script does this.)
        $bb ln -sfn "$out" /run/.current-system.tmp.$$
        $bb mv -fT /run/.current-system.tmp.$$ /run/current-system
        ;;
    esac
  '' + (if act.killSshd then ''
    case "$action" in
      switch|test)
        # Kill the test host's sshd and all its descendants (except this
        # script), as a broken sshd configuration would.
        children() {
          for st in /proc/[0-9]*/status; do
            pp=$($bb awk '/^PPid:/ { print $2 }' "$st" 2>/dev/null) || true
            if [ "$pp" = "$1" ]; then
              p=''${st#/proc/}; echo "''${p%/status}"
            fi
          done
        }
        killtree() {
          for c in $(children "$1"); do killtree "$c"; done
          [ "$1" = "$$" ] || $bb kill "$1" 2>/dev/null || true
        }
        pidfile=''${STUB_HOST_DIR:-/nonexistent}/sshd.pid
        if [ ! -f "$pidfile" ]; then echo "killSshd: no sshd pid file at $pidfile" >&2; exit 1; fi
        for pid in $($bb cat "$pidfile"); do killtree "$pid"; done
        ;;
    esac
  '' else ''
    case "$action" in
      switch|test)
        # As systemd would: make sure sshd runs (a rollback from a system
        # that killed it brings it back).
        if [ -n "''${STUB_HOST_DIR:-}" ] && [ -x "$STUB_HOST_DIR/libexec/ensure-sshd" ]; then
          "$STUB_HOST_DIR/libexec/ensure-sshd" || true
        fi
        ;;
    esac
  '') + optionalString (act.failedUnits != [ ]) ''
    case "$action" in
      switch|test)
        echo "warning: the following units failed: ${concatStringsSep ", " act.failedUnits}" >&2
        exit 4
        ;;
    esac
  '' + ''
    exit $res
  '';

  initScript = ''
    #!/bin/busybox sh
    echo "stub NixOS init: nothing to do" >&2
    exit 0
  '';

  etcAttrs = builtins.listToAttrs (lib.imap0 (i: e: {
    name = "etc_${toString i}";
    value = e.text;
  }) etcList);
  unitAttrs = builtins.listToAttrs (lib.imap0 (i: u: {
    name = "unit_${toString i}";
    value = u.text;
  }) units);

  buildScript = ''
    set -e
    bb=${bb}
    $bb mkdir -p $out/bin $out/etc $out/sw/bin
    $bb cp "$configJsonPath" $out/config.json
    $bb printf '%s' "$nixosVersion" > $out/nixos-version
    $bb printf '%s' "$initInterfaceVersion" > $out/init-interface-version
    $bb printf "" > $out/kernel-params
    $bb printf '%s' "$system" > $out/system
    $bb sed "s|@out@|$out|g" "$switchScriptPath" > $out/bin/switch-to-configuration
    $bb sed "s|@out@|$out|g" "$activateScriptPath" > $out/activate
    $bb cp "$initScriptPath" $out/init
    $bb chmod 0555 $out/bin/switch-to-configuration $out/activate $out/init
    $bb mkdir -p $out/etc/systemd/system
  '' + concatStringsSep "" (lib.imap0 (i: u: ''
    $bb cp "$unit_${toString i}Path" $out/etc/systemd/system/${escapeShellArg u.file}
  '') units)
  + unitLinks
  + concatStringsSep "" (lib.imap0 (i: p: ''
    $bb ln -s ${p} $out/sw/pkg-${toString i}
  '') cfg.environment.systemPackages)
  + concatStringsSep "" (lib.imap0 (i: e: ''
    $bb mkdir -p "$($bb dirname "$out/etc/"${escapeShellArg e.target})"
    $bb cp "$etc_${toString i}Path" "$out/etc/"${escapeShellArg e.target}
  '') etcList);

  failedAssertions = map (x: x.message) (lib.filter (x: !x.assertion) cfg.assertions);

  showWarnings = res:
    lib.foldr (w: x: builtins.trace "[1;31mwarning: ${w}[0m" x) res cfg.warnings;

  toplevel = derivation ({
    name = "nixos-system-${cfg.system.name}-${cfg.system.nixos.version}";
    inherit system configJson switchScript initScript;
    activateScript = cfg.system.activationScripts.script;
    builder = bb;
    args = [ "sh" "-c" buildScript ];
    nixosVersion = cfg.system.nixos.version;
    inherit (act) initInterfaceVersion;
    passAsFile = [ "configJson" "switchScript" "activateScript" "initScript" ] ++ attrNames etcAttrs ++ attrNames unitAttrs;
  } // etcAttrs // unitAttrs);
in
{
  options.system.name = mkOption {
    type = types.str;
    default = if cfg.networking.hostName == "" then "unnamed" else cfg.networking.hostName;
    description = "The name of the system in the toplevel's name, nixos-system-<name>-<version>.";
  };

  options.system.build = mkOption {
    type = types.lazyAttrsOf (types.uniq types.unspecified);
    default = { };
    description = "Attribute set of derivations used to set up the system.";
  };

  config.system.build.toplevel =
    if failedAssertions != [ ] then
      throw "\nFailed assertions:\n${concatStringsSep "\n" (map (x: "- ${x}") failedAssertions)}"
    else showWarnings toplevel;
}
