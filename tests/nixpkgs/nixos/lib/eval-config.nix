# The stand-in's nixos/lib/eval-config.nix: the same arguments, defaults and
# result as nixpkgs' own (see docs/nixos-contract.md), over the stand-in OS's
# modules.
let
  # In the default baseModules, as in NixOS: whoever passes baseModules also
  # decides about system and pkgs.
  pkgsModule = lib: system: pkgs: {
    _file = ./eval-config.nix;
    key = ./eval-config.nix;
    config = lib.mkMerge (
      # A user's nixpkgs.system / hostPlatform wins over the argument.
      lib.optional (system != null) { nixpkgs.system = lib.mkDefault system; }
      # Default priority: it conflicts with a user's nixpkgs.pkgs.
      ++ lib.optional (pkgs != null) { nixpkgs.pkgs = pkgs; }
    );
  };
in
{ system ? builtins.currentSystem   # null: the configuration sets nixpkgs.hostPlatform
, pkgs ? null
, baseModules ? import ../modules/module-list.nix ++ [ (pkgsModule lib system pkgs) ]
, extraArgs ? { }                   # legacy: becomes _module.args
, specialArgs ? { }
, modules
, modulesLocation ? (builtins.unsafeGetAttrPos "modules" evalConfigArgs).file or null
, check ? true                      # legacy: becomes _module.check
, prefix ? [ ]
, lib ? import ../../lib
, extraModules ?
    let e = builtins.getEnv "NIXOS_EXTRA_MODULE_PATH"; in
    if e == "" then [ ] else [ (import e) ]
}@evalConfigArgs:
let
  # Only when given, as in NixOS (which also warns that they are deprecated).
  legacyModules =
    lib.optional (evalConfigArgs ? extraArgs) { config._module.args = extraArgs; }
    ++ lib.optional (evalConfigArgs ? check) { config._module.check = lib.mkDefault check; };

  locatedModules =
    if modulesLocation == null then modules
    else map (lib.setDefaultModuleLocation modulesLocation) modules;

  # What a configuration needs to build a similar one (NixOS' containers and
  # specialisations use these).
  modulesModule = {
    config._module.args = { inherit noUserModules baseModules extraModules modules; };
  };

  noUserModules = lib.evalModules {
    inherit prefix specialArgs;
    class = "nixos";
    modules = baseModules ++ extraModules ++ [ modulesModule ];
  };

  withExtraAttrs = configuration: configuration // {
    inherit extraArgs lib;
    inherit (configuration._module.args) pkgs;
    extendModules = args: withExtraAttrs (configuration.extendModules args);
  };
in
withExtraAttrs (noUserModules.extendModules { modules = locatedModules ++ legacyModules; })
