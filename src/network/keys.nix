# The machine side of deployment.keys, imported by options.nix.
#
# For every key `<name>`:
#   - `<name>-key.service` is active while the key's file exists: starting it
#     waits until the file is there, and it stops when the file goes away. A
#     service that needs the key says `wants`/`after` (or `bindsTo`) it.
#   - `<name>-key.path` starts that service whenever the file appears, so it
#     comes back after the deployer re-sends keys (e.g. after a reboot).
# And `nixops-keys.service` (with its path unit) is active once the deployer
# has delivered the machine's keys since boot (it touches /run/keys/done).
#
# Only names, paths and owners are used here: a key's secret never enters the
# Nix store. Nothing here is started by activation itself, so an activation
# never waits for a key that is sent after it.
#
# Every definition's condition sits inside the attribute it defines, never
# around the module's whole `config`: an OS whose top level (or `systemd`) is
# free-form must know which attributes a module defines before it can read
# config.deployment.keys, so `config = mkIf (keys != { }) ...` recurses
# infinitely there.
{ config, lib, pkgs, ... }:
let
  inherit (lib) escapeShellArg mapAttrs' nameValuePair mkIf mkMerge;

  # The deployer's own fallbacks for a plain-string key: defaults.
  keys = lib.mapAttrs
    (attr: k: if builtins.isString k then { name = attr; destDir = "/run/keys"; } else { inherit (k) name destDir; })
    config.deployment.keys;

  trimSlash = d:
    let n = builtins.stringLength d; in
    if n > 1 && builtins.substring (n - 1) 1 d == "/" then trimSlash (builtins.substring 0 (n - 1) d) else d;
  dirOf' = k: trimSlash k.destDir;
  pathOf = k: (if dirOf' k == "/" then "" else dirOf' k) + "/" + k.name;

  # Waits until `file` exists: inotify on its directory, with a timeout as a
  # backstop against the race between the test and the watch.
  waitFor = dir: file: ''
    while [ ! -e ${escapeShellArg file} ]; do
      if ! inotifywait -qq -t 10 -e create -e moved_to -e attrib ${escapeShellArg dir} 2>/dev/null; then
        [ -d ${escapeShellArg dir} ] || sleep 1
      fi
    done
  '';

  keyService = attr: k: nameValuePair "${attr}-key" {
    description = "Key ${attr} (${pathOf k}) is present";
    path = [ pkgs.inotify-tools ];
    # Restarting it would stop everything bound to it.
    restartIfChanged = false;
    serviceConfig = {
      Type = "simple";
      TimeoutStartSec = "infinity";
    };
    preStart = waitFor (dirOf' k) (pathOf k);
    # Runs while the file exists; a re-sent key replaces the file atomically,
    # so the loop sees a file again and goes on watching the new one.
    script = ''
      f=${escapeShellArg (pathOf k)}
      while [ -e "$f" ]; do
        inotifywait -qq -t 60 -e delete_self -e move_self "$f" 2>/dev/null || sleep 1
      done
    '';
  };

  keyPath = attr: k: nameValuePair "${attr}-key" {
    description = "Starts ${attr}-key.service when ${pathOf k} appears";
    wantedBy = [ "multi-user.target" ];
    pathConfig = {
      PathExists = pathOf k;
      Unit = "${attr}-key.service";
    };
  };
in
{
  _file = "<nixops>/keys.nix";
  config.systemd.services = mkMerge [
    (mapAttrs' keyService keys)
    (mkIf (keys != { }) {
      nixops-keys = {
        description = "Keys sent by the deployer since boot (/run/keys/done)";
        path = [ pkgs.inotify-tools ];
        restartIfChanged = false;
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          TimeoutStartSec = "infinity";
        };
        script = waitFor "/run/keys" "/run/keys/done";
      };
    })
  ];
  config.systemd.paths = mkMerge [
    (mapAttrs' keyPath keys)
    (mkIf (keys != { }) {
      nixops-keys = {
        description = "Starts nixops-keys.service when the deployer has sent the keys";
        wantedBy = [ "multi-user.target" ];
        pathConfig.PathExists = "/run/keys/done";
      };
    })
  ];
}
