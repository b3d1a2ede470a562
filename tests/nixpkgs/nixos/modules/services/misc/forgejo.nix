{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options.services.forgejo = {
    enable = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to enable Forgejo.";
    };
    # Deliberately a string (network files interpolate it).
    port = mkOption {
      type = types.str;
      default = "3000";
      description = "Port Forgejo listens on.";
    };
  };
}
