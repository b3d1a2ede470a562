{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options.boot.loader.grub = {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to enable the GNU GRUB boot loader.";
    };
    device = mkOption {
      type = types.str;
      default = "";
      description = "The device on which GRUB is installed.";
    };
    devices = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Devices on which GRUB is installed.";
    };
  };
}
