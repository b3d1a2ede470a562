{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options.time.timeZone = mkOption {
    type = types.nullOr types.str;
    default = null;
    description = "The time zone.";
  };
}
