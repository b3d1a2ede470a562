{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options = {
    fileSystems = mkOption {
      type = types.attrsOf types.attrs;
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
