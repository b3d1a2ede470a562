{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      internal = true;
      default = [ ];
      description = "Assertions (`{ assertion; message; }`) checked when building the system.";
    };
    warnings = mkOption {
      type = types.listOf types.str;
      internal = true;
      default = [ ];
      description = "Warnings printed when building the system.";
    };
  };
}
