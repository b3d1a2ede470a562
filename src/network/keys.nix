# The machine side of deployment.keys, imported with options.nix. What it
# puts into the system is what NixOps 2.0 puts there (its nix/keys.nix), to
# the byte: the same unit names, unit contents and activation snippet, so a
# machine deployed by NixOps and then by this tool (or the other way round)
# gets the same toplevel and no unit restarts. See docs/nixos-contract.md.
#
# For every key `<attr>`, `<attr>-key.service`: its start waits until the
# key's file is there (inotify on destDir), and its main process ends when
# the file goes away; systemd starts it again 100 ms later (Restart=always).
# A service that needs the key wants/binds to it.
# `nixops-keys.service` (enabled when a key lives under /run/) waits until
# the deployer has sent the keys since boot (/run/keys/done), before
# keys.target.
# The activation snippet `nixops-keys` makes /run/keys (root:keys, 0750) and
# gives each key file present its owner again: the owner may be a user or
# group that this very activation creates.
#
# Only names, paths and owners are used here: a key's secret never enters
# the Nix store.
#
# Every definition's condition sits inside the attribute it defines, never
# around the module's whole `config`: an OS whose top level (or `systemd`) is
# free-form must know which attributes a module defines before it can read
# config.deployment.keys.
{ config, lib, pkgs, ... }:
let
  inherit (lib) concatStringsSep mapAttrs' mapAttrsToList nameValuePair;

  # A plain string is a key's text (deprecated); the rest take defaults.
  keys = lib.mapAttrs
    (attr: k:
      if builtins.isString k then { name = attr; destDir = "/run/keys"; user = "root"; group = "root"; }
      else { inherit (k) name destDir user group; })
    config.deployment.keys;

  # NixOps' file name, destDir and name joined as they are (a destDir with a
  # trailing slash gives `//`, as it does there).
  fileOf = k: "${k.destDir}/${k.name}";

  # The activation snippet's script (a file in the store, sourced).
  ownerAgain = k: "[[ -f \"${fileOf k}\" ]] && chown '${k.user}:${k.group}' \"${fileOf k}\"\n";
  setupKeys = "mkdir -p /run/keys -m 0750\nchown root:keys /run/keys\n\n"
    + concatStringsSep "\n" (mapAttrsToList (_: ownerAgain) keys) + "\n";

  # Waits for the file to appear (create or move into destDir), unless it is
  # there already.
  untilPresent = k: concatStringsSep "\n" [
    "(while read f; do if [ \"$f\" = \"${k.name}\" ]; then break; fi; done \\"
    "  < <(inotifywait -qm --format '%f' -e create,move ${k.destDir}) ) &"
    ""
    "if [[ -e \"${fileOf k}\" ]]; then"
    "  echo 'flapped down'"
    "  kill %1"
    "  exit 0"
    "fi"
    "wait %1"
    ""
  ];
  # Runs until the file is deleted.
  whilePresent = k: concatStringsSep "\n" [
    "inotifywait -qq -e delete_self \"${fileOf k}\" &"
    ""
    "if [[ ! -e \"${fileOf k}\" ]]; then"
    "  echo 'flapped up'"
    "  exit 0"
    "fi"
    "wait %1"
    ""
  ];

  keyService = attr: k: nameValuePair "${attr}-key" {
    enable = true;
    path = [ pkgs.inotify-tools ];
    serviceConfig = {
      TimeoutStartSec = "infinity";
      Restart = "always";
      RestartSec = "100ms";
    };
    preStart = untilPresent k;
    script = whilePresent k;
  };

  doneWaiter = {
    enable = builtins.any (k: lib.hasPrefix "/run/" k.destDir) (builtins.attrValues keys);
    description = "Waiting for NixOps Keys";
    wantedBy = [ "keys.target" ];
    before = [ "keys.target" ];
    # Without it, keys.target and this unit would order each other.
    unitConfig.DefaultDependencies = false;
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    script = "while ! [ -e /run/keys/done ]; do\n  sleep 0.1\ndone\n";
  };

  # Two keys written to one file would overwrite each other.
  sharedFiles = lib.filter (p: builtins.length p.attrs > 1) (mapAttrsToList
    (file: attrs: { inherit file attrs; })
    (lib.zipAttrs (mapAttrsToList (attr: k: { ${fileOf k} = attr; }) keys)));
in
{
  _file = "<nixops>/keys.nix";
  config.assertions = map
    (p: {
      assertion = false;
      message = "deployment.keys ${concatStringsSep ", " p.attrs} are all written to ${p.file}; give each its own name or destDir.";
    })
    sharedFiles;
  config.system.activationScripts.nixops-keys =
    lib.stringAfter [ "users" "groups" ] "source ${pkgs.writeText "setup-keys.sh" setupKeys}";
  config.systemd.services = { nixops-keys = doneWaiter; } // mapAttrs' keyService keys;
}
