{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options.networking = {
    hostName = mkOption {
      type = types.str;
      default = "nixos";
      description = "The name of the machine.";
    };
    domain = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "The domain.";
    };
    extraHosts = mkOption {
      type = types.lines;
      default = "";
      description = "Additional verbatim entries for /etc/hosts.";
    };
    hosts = mkOption {
      type = types.attrsOf (types.listOf types.str);
      default = { };
      description = "Locally defined maps of IP addresses to hostnames.";
    };
    firewall = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to enable the firewall.";
      };
      allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
        description = "TCP ports open in the firewall.";
      };
      allowedUDPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
        description = "UDP ports open in the firewall.";
      };
    };
  };
}
