{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options = {
    # A submodule, as in NixOS, so that other modules (NixOps' AWS plugin)
    # can add options to every file system.
    fileSystems = mkOption {
      type = types.attrsOf (types.submodule {
        freeformType = types.attrsOf types.anything;
        options = {
          device = mkOption { type = types.nullOr types.str; default = null; description = "The device mounted."; };
          fsType = mkOption { type = types.str; default = "auto"; description = "The file system type."; };
        };
      });
      default = { };
      description = "The file systems to be mounted.";
    };
    swapDevices = mkOption {
      type = types.listOf types.attrs;
      default = [ ];
      description = "The swap devices.";
    };
  };
}
