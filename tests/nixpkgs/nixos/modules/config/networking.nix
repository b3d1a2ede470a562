# networking.hostName, domain and fqdn with NixOS' names, types and defaults
# (in NixOS they live in nixos/modules/tasks/network-interfaces.nix).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.networking;
in
{
  options.networking = {
    hostName = mkOption {
      # As in NixOS: one DNS label (RFC 1123, `_` tolerated), or empty for
      # "ask DHCP"; never a dotted name.
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
      default = "nixos";
      description = "The name of the machine: one DNS label, without the domain.";
    };
    domain = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "The domain.";
    };
    fqdn = mkOption {
      type = types.str;
      default =
        if cfg.hostName != "" && cfg.domain != null then "${cfg.hostName}.${cfg.domain}"
        else throw "The FQDN is required but cannot be determined from `networking.hostName` and `networking.domain`. Set them, or set `networking.fqdn` directly.";
      description = "The fully qualified domain name: hostName.domain.";
    };
    fqdnOrHostName = mkOption {
      type = types.str;
      readOnly = true;
      default = if cfg.domain != null then cfg.fqdn else cfg.hostName;
      description = "The FQDN where there is a domain, else the host name.";
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
      trustedInterfaces = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Interfaces whose traffic the firewall lets through unfiltered.";
      };
    };
  };

  # As NixOS (nixos/modules/config/networking.nix): /etc/hosts is
  # networking.hosts, one address a line, then networking.extraHosts.
  config.environment.etc.hosts.text =
    lib.concatStrings (lib.mapAttrsToList (ip: names: "${ip} ${lib.concatStringsSep " " names}\n")
      (lib.filterAttrs (_: names: names != [ ]) cfg.hosts))
    + cfg.extraHosts;
}
