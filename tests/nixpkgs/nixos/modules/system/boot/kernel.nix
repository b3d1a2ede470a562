# boot.kernelModules with NixOS' name, type and rendering (nixos/modules/
# system/boot/kernel.nix): the modules systemd-modules-load loads at boot,
# one a line in /etc/modules-load.d/nixos.conf.
{ config, lib, ... }:
let inherit (lib) mkOption types; in
{
  options.boot.kernelModules = mkOption {
    type = types.listOf types.str;
    default = [ ];
    description = "Kernel modules loaded in the second stage of the boot process.";
  };

  config.environment.etc."modules-load.d/nixos.conf".text =
    lib.concatStringsSep "\n" config.boot.kernelModules;
}
