{ lib, ... }:
let
  inherit (lib) mkOption types;

  locationOpts = {
    options = {
      proxyPass = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Adds proxy_pass directive.";
      };
      root = mkOption {
        type = types.nullOr (types.either types.path types.str);
        default = null;
        description = "Root directory for requests.";
      };
      extraConfig = mkOption {
        type = types.lines;
        default = "";
        description = "Extra location configuration.";
      };
    };
  };

  vhostOpts = { name, ... }: {
    options = {
      serverName = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Name of this virtual host (defaults to the attribute name).";
      };
      serverAliases = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Additional names of this virtual host.";
      };
      root = mkOption {
        type = types.nullOr (types.either types.path types.str);
        default = null;
        description = "The document root directory.";
      };
      locations = mkOption {
        type = types.attrsOf (types.submodule locationOpts);
        default = { };
        description = "Declarative location config.";
      };
      extraConfig = mkOption {
        type = types.lines;
        default = "";
        description = "Extra virtual host configuration.";
      };
    };
  };
in
{
  options.services.nginx = {
    enable = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to enable Nginx Web Server.";
    };
    virtualHosts = mkOption {
      type = types.attrsOf (types.submodule vhostOpts);
      default = { };
      description = "Declarative vhost config.";
    };
  };
}
