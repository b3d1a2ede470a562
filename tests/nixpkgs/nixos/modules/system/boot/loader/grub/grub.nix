{ lib, ... }:
let inherit (lib) mkOption types; in
{
  # boot.loader.timeout lives in NixOS' loader.nix.
  options.boot.loader.timeout = mkOption {
    type = types.nullOr types.int;
    default = 5;
    description = "Seconds the boot menu waits.";
  };
  options.boot.loader.grub = {
    version = mkOption {
      type = types.int;
      default = 2;
      description = "The GRUB version (NixOS removed the option later).";
    };
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
