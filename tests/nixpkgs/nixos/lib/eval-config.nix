# Same interface as nixpkgs' nixos/lib/eval-config.nix.
{ system ? builtins.currentSystem
, pkgs ? null
, baseModules ? import ../modules/module-list.nix
, extraArgs ? { }
, specialArgs ? { }
, modules
, modulesLocation ? (builtins.unsafeGetAttrPos "modules" evalConfigArgs).file or null
, check ? true
, prefix ? [ ]
, lib ? import ../../lib
, extraModules ?
    let e = builtins.getEnv "NIXOS_EXTRA_MODULE_PATH"; in
    if e == "" then [ ] else [ (import e) ]
}@evalConfigArgs:
let
  pkgs_ = pkgs;

  pkgsModule = rec {
    _file = ./eval-config.nix;
    key = _file;
    config = lib.mkMerge (
      lib.optional (system != null) {
        # nixpkgs.system / hostPlatform set by the user win over this.
        nixpkgs.system = lib.mkDefault system;
      }
      ++ lib.optional (pkgs_ != null) {
        _module.args.pkgs = lib.mkForce pkgs_;
      }
    );
  };

  argsModule = {
    _file = "${toString ./eval-config.nix}#args";
    key = "${toString ./eval-config.nix}#args";
    config._module.args = extraArgs // {
      inherit baseModules extraModules modules;
    };
  };

  checkModule = {
    _file = "${toString ./eval-config.nix}#check";
    key = "${toString ./eval-config.nix}#check";
    config._module.check = lib.mkDefault check;
  };

  locatedModules =
    if modulesLocation == null then modules
    else map (lib.setDefaultModuleLocation modulesLocation) modules;

  eval = lib.evalModules {
    inherit prefix;
    class = "nixos";
    specialArgs = { modulesPath = builtins.toString ../modules; } // specialArgs;
    modules = baseModules ++ extraModules ++ [ pkgsModule argsModule checkModule ] ++ locatedModules;
  };
in
{
  inherit (eval) _type config options _module type class;
  inherit extraArgs lib;
  inherit (eval._module.args) pkgs;
  extendModules = args: eval.extendModules args;
}
