# networking.interfaces, the default gateways and the resolvers, with
# NixOS' names (nixos/modules/tasks/network-interfaces.nix). The stand-in
# writes them, when set, to /etc/nixos-stub/network.json, for tests to see.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.networking;
  address = types.submodule {
    options = {
      address = mkOption { type = types.str; description = "The address."; };
      prefixLength = mkOption { type = types.int; description = "Its prefix length."; };
    };
  };
  interface = {
    freeformType = types.attrsOf types.anything;
    options = {
      ipv4.addresses = mkOption { type = types.listOf address; default = [ ]; description = "IPv4 addresses."; };
      ipv6.addresses = mkOption { type = types.listOf address; default = [ ]; description = "IPv6 addresses."; };
      useDHCP = mkOption { type = types.nullOr types.bool; default = null; description = "Whether DHCP configures the interface."; };
    };
  };
  gateway = types.nullOr (types.coercedTo types.str (address: { inherit address; }) (types.attrsOf types.anything));
  set = cfg.interfaces != { } || cfg.defaultGateway != null || cfg.defaultGateway6 != null || cfg.nameservers != [ ];
in
{
  options.networking = {
    interfaces = mkOption { type = types.attrsOf (types.submodule interface); default = { }; description = "The network interfaces."; };
    defaultGateway = mkOption { type = gateway; default = null; description = "The default IPv4 gateway."; };
    defaultGateway6 = mkOption { type = gateway; default = null; description = "The default IPv6 gateway."; };
    nameservers = mkOption { type = types.listOf types.str; default = [ ]; description = "The resolvers."; };
  };
  config.environment.etc = lib.mkIf set {
    "nixos-stub/network.json".text = builtins.toJSON {
      inherit (cfg) interfaces defaultGateway defaultGateway6 nameservers;
    };
  };
}
