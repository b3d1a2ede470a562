# system.activationScripts, as NixOS declares it
# (nixos/modules/system/activation/activation-script.nix): snippets, strings
# or `{ deps; text; }` (lib.stringAfter), put in dependency order by
# lib.textClosureMap into one script, which top-level.nix writes to the
# toplevel's `activate` and switch-to-configuration runs.
{ lib, ... }:
let
  inherit (lib) mkOption types;

  snippet = types.either types.str (types.submodule {
    options = {
      deps = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Snippets this one runs after.";
      };
      text = mkOption {
        type = types.lines;
        description = "The snippet's shell code.";
      };
      supportsDryActivation = mkOption {
        type = types.bool;
        default = false;
        description = "Whether the snippet also runs for dry-activate (the stand-in has no dry-activate script).";
      };
    };
  });

  # As NixOS': each snippet under a headline, a failing command marks the
  # snippet and the whole script as failed (the ERR trap) and the script
  # goes on. (The stand-in's shell is busybox's, NixOS' is bash; its PATH
  # is the caller's, NixOS' is made of store paths: a system's closure
  # stays the toplevel alone.)
  script = set:
    let
      # Dependencies on snippets the stand-in lacks (NixOS has them all,
      # e.g. `groups`) are dropped, as if those ran first and did nothing.
      entries = lib.mapAttrs
        (_: v:
          let e = if builtins.isString v then lib.noDepEntry v else v; in
          e // { deps = builtins.filter (d: set ? ${d}) e.deps; })
        set;
      headed = lib.mapAttrs (name: v: v // {
        text = ''
          #### Activation script snippet ${name}:
          _localstatus=0
          ${v.text}

          if [ "$_localstatus" -gt 0 ]; then
            printf "Activation script snippet '%s' failed (%s)\n" "${name}" "$_localstatus"
          fi
        '';
      }) entries;
    in
    ''
      #!/bin/busybox sh
      systemConfig='@out@'
      _status=0
      trap "_status=1 _localstatus=\$?" ERR
      umask 0022

      ${lib.textClosureMap lib.id headed (builtins.attrNames headed)}

      exit $_status
    '';
in
{
  options.system.activationScripts = mkOption {
    type = types.attrsOf snippet;
    default = { };
    # As NixOS': the whole script is the set's `script`.
    apply = set: set // { script = script set; };
    description = "Snippets run on activation (strings or `lib.stringAfter deps text`).";
  };
}
