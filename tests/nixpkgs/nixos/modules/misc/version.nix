{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options.system = {
    stateVersion = mkOption {
      type = types.str;
      default = "23.11";
      description = "The NixOS release with which stateful data was created.";
    };
    nixos.version = mkOption {
      type = types.str;
      default = "stub";
      description = "The full NixOS version.";
    };
    nixos.release = mkOption {
      type = types.str;
      default = "23.11";
      description = "The NixOS release.";
    };
  };
}
