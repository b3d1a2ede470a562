{ config, options, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.nixpkgs;
  hostPlatformSystem = p: if builtins.isString p then p else p.system;
  effectiveSystem = hostPlatformSystem cfg.hostPlatform;
in
{
  options.nixpkgs = {
    pkgs = mkOption {
      type = types.uniq types.attrs;
      description = "When set, the `pkgs` of every module (and nixpkgs.config, overlays are ignored).";
    };
    system = mkOption {
      type = types.str;
      default = builtins.currentSystem;
      description = "The platform the system is built for (legacy, see nixpkgs.hostPlatform).";
    };
    localSystem = mkOption {
      type = types.attrs;
      default = { system = cfg.system; };
      description = "The platform on which the system is built.";
    };
    hostPlatform = mkOption {
      type = types.either types.str types.attrs;
      default = cfg.system;
      description = "The platform the system is built for (string or `{ system = ...; }`).";
    };
    config = mkOption {
      type = types.attrs;
      default = { };
      description = "The configuration of the package set.";
    };
    overlays = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
      description = "Overlays applied to the package set.";
    };
  };

  config._module.args.pkgs =
    if options.nixpkgs.pkgs.isDefined then cfg.pkgs
    else import ../../.. {
      system = effectiveSystem;
      inherit (cfg) config overlays;
    };
}
