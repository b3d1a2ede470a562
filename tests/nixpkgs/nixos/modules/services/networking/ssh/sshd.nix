{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options.services.openssh = {
    enable = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to enable the OpenSSH secure shell daemon.";
    };
    ports = mkOption {
      type = types.listOf types.port;
      default = [ 22 ];
      description = "Ports on which the SSH daemon listens.";
    };
    openFirewall = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to open the firewall for the SSH ports.";
    };
    settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      description = "sshd_config settings.";
    };
  };
}
