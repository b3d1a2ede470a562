# services.udev.extraRules with NixOS' name and rendering (nixos/modules/
# services/hardware/udev.nix: /etc/udev/rules.d/99-local.rules).
{ config, lib, ... }:
{
  options.services.udev.extraRules = lib.mkOption {
    type = lib.types.lines;
    default = "";
    description = "Further udev rules.";
  };
  config.environment.etc = lib.mkIf (config.services.udev.extraRules != "") {
    "udev/rules.d/99-local.rules".text = config.services.udev.extraRules;
  };
}
