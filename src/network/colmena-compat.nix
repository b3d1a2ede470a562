# What Colmena 0.5 adds to every node of a hive besides its options, for
# the nodes of the Colmena front end (hive.nix): the nodes' systems must be
# the very ones Colmena builds, byte for byte. So the text these modules
# generate (scripts, unit settings) is Colmena's to the character, and the
# modules come where Colmena puts its own: after the package set's module,
# before `defaults` (see hive.nix). NixOps networks get keys.nix instead.
#
# Only a key's names, paths and owners are read here, never its secret.
let
  # A plain-string key (NixOps' deprecated form, which Colmena refuses) is
  # a text key with every default.
  keysOf = config: builtins.mapAttrs
    (attr: k:
      if builtins.isString k then {
        name = attr; destDir = "/run/keys"; path = "/run/keys/${attr}";
        user = "root"; group = "root"; uploadAt = "pre-activation";
        text = k; keyFile = null; keyCommand = null;
      } else k)
    config.deployment.keys;
in
rec {
  # Colmena checks that every key has exactly one source as an assertion,
  # so a node without one has no system at all.
  keySources = { config, lib, name, ... }: {
    _file = "<nixops>/colmena-compat.nix, keySources";
    assertions = lib.mapAttrsToList
      (attr: k:
        let opt = "${name}.deployment.keys.${attr}"; in {
          assertion = builtins.length (builtins.filter (s: s != null) [ k.text k.keyCommand k.keyFile ]) == 1;
          message = "Exactly one of `${opt}.text`, `${opt}.keyCommand` and `${opt}.keyFile` must be set.";
        })
      (keysOf config);
  };

  # Keys sent before activation may belong to a user that activation
  # creates: the activation snippet `colmena-chown-keys` gives them their
  # owner once users exist, and fails activation when it cannot.
  keyOwners = { config, lib, ... }:
    let
      before = lib.filterAttrs (_: k: k.uploadAt == "pre-activation") (keysOf config);
      # NixOS' snippet that creates users (`groups` in old releases).
      usersSnippet = if config.system.activationScripts ? groups then "groups" else "users";
      chownOne = _: k:
        let file = "${k.destDir}/${k.name}"; in
        ''
          if [ -f "${file}" ]; then
            if ! chown ${k.user}:${k.group} "${file}"; then
              # Error should be visible in stderr
              failed=1
            fi
          else
            >&2 echo "Key ${file} does not exist. Skipping chown."
          fi
        '';
    in
    {
      _file = "<nixops>/colmena-compat.nix, keyOwners";
      system.activationScripts.colmena-chown-keys = lib.mkIf (before != { }) (lib.stringAfter [ usersSnippet ] ''
        # This script is injected by Colmena to change the ownerships
        # of keys (`deployment.keys`) deployed before system activation.

        >&2 echo "setting up key ownerships..."

        # We set the ownership of as many keys as possible before failing
        failed=

        ${builtins.concatStringsSep "\n" (lib.mapAttrsToList chownOne before)}

        if [ -n "$failed" ]; then
          >&2 echo "Failed to set the ownership of some keys."

          # The activation script has a trap to handle failed
          # commands and print out various debug information.
          # Let's trigger that instead of `exit 1`.
          false
        fi
      '');
    };

  # For every key `<attr>`, Colmena's (and NixOps') `<attr>-key.service`,
  # active while the key's file exists, started by `<attr>-key.path` when
  # the file appears. The service's own scripts follow the file, because a
  # path unit does not stop what it started when the file goes.
  keyUnits = { config, lib, pkgs, ... }:
    let keys = keysOf config; in
    {
      _file = "<nixops>/colmena-compat.nix, keyUnits";
      systemd.paths = lib.mapAttrs'
        (attr: k: lib.nameValuePair "${attr}-key" {
          wantedBy = [ "paths.target" ];
          pathConfig.PathExists = k.path;
        })
        keys;
      systemd.services = lib.mapAttrs'
        (attr: k: lib.nameValuePair "${attr}-key" {
          enable = true;
          serviceConfig = {
            TimeoutStartSec = "infinity";
            Restart = "always";
            RestartSec = "100ms";
          };
          path = [ pkgs.inotify-tools ];
          # Waits until the file appears (or is there already).
          preStart = ''
            (while read f; do if [ "$f" = "${k.name}" ]; then break; fi; done \
              < <(inotifywait -qm --format '%f' -e create,move ${k.destDir}) ) &
            if [[ -e "${k.path}" ]]; then
              echo 'flapped down'
              kill %1
              exit 0
            fi
            wait %1
          '';
          # Runs until the file goes.
          script = ''
            inotifywait -qq -e delete_self "${k.path}" &
            if [[ ! -e "${k.path}" ]]; then
              echo 'flapped up'
              exit 0
            fi
            wait %1
          '';
        })
        keys;
    };

  # In Colmena's order.
  modules = [ keySources keyOwners keyUnits ];
}
