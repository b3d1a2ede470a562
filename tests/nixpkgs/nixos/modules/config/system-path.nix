{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options.environment.systemPackages = mkOption {
    type = types.listOf types.package;
    default = [ ];
    description = "Packages installed in the system profile.";
  };
}
