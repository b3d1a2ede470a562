{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options = {
    # As in NixOS, a submodule per file system (so that other modules, such
    # as NixOps' backends, can add options of their own to it); what the
    # stand-in does not declare is kept as written.
    fileSystems = mkOption {
      type = types.attrsOf (types.submodule ({ name, ... }: {
        freeformType = types.attrsOf types.anything;
        options = {
          mountPoint = mkOption { type = types.str; default = name; description = "Where the file system is mounted."; };
          device = mkOption { type = types.nullOr types.str; default = null; description = "The device mounted."; };
          fsType = mkOption { type = types.str; default = "auto"; description = "The file system's type."; };
        };
      }));
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
