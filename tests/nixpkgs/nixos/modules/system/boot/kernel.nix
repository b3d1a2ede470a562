# boot.kernelModules with NixOS' name, type and rendering (nixos/modules/
# system/boot/kernel.nix): the modules systemd-modules-load loads at boot,
# one a line in /etc/modules-load.d/nixos.conf; boot.blacklistedKernelModules
# as NixOS writes them (/etc/modprobe.d/nixos.conf), when there are any;
# boot.kernelPackages (its guest additions are busybox here), boot.vesa and
# two initrd options (nothing builds an initrd here).
{ config, lib, pkgs, ... }:
let inherit (lib) mkOption types; in
{
  options.boot = {
    kernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Kernel modules loaded in the second stage of the boot process.";
    };
    blacklistedKernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Kernel modules never loaded.";
    };
    kernelPackages = mkOption {
      type = types.attrs;
      default = { virtualboxGuestAdditions = pkgs.busybox; };
      description = "The kernel's package set.";
    };
    initrd.kernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Kernel modules loaded in the initrd.";
    };
    initrd.extraUtilsCommands = mkOption {
      type = types.lines;
      default = "";
      description = "Commands that copy further programs into the initrd.";
    };
    vesa = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to use VESA video modes at boot.";
    };
  };

  config.environment.etc = {
    "modules-load.d/nixos.conf".text = lib.concatStringsSep "\n" config.boot.kernelModules;
  } // lib.optionalAttrs (config.boot.blacklistedKernelModules != [ ]) {
    "modprobe.d/nixos.conf".text = lib.concatMapStrings (m: "blacklist ${m}\n") config.boot.blacklistedKernelModules;
  };
}
