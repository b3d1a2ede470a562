{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  known = config.services.openssh.knownHosts;
in
{
  options.services.openssh = {
    authorizedKeysFiles = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Further files of authorized keys, relative to a user's home.";
    };
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
    # As in NixOS: a free-form submodule of sshd_config keywords.
    settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf (types.nullOr (types.oneOf [ types.bool types.int types.str (types.listOf types.str) ]));
        options.PasswordAuthentication = mkOption {
          type = types.bool;
          default = true;
          description = "Whether passwords may be used to log in.";
        };
        options.PermitRootLogin = mkOption {
          type = types.enum [ "yes" "without-password" "prohibit-password" "forced-commands-only" "no" ];
          default = "prohibit-password";
          description = "Whether root may log in over SSH.";
        };
      };
      default = { };
      description = "sshd_config settings.";
    };
  };

  # As in NixOS: host keys every SSH client of the machine trusts, written to
  # /etc/ssh/ssh_known_hosts (NixOps puts every machine's there).
  options.services.openssh.knownHosts = mkOption {
    type = types.attrsOf (types.submodule ({ name, ... }: {
      options = {
        hostNames = mkOption {
          type = types.listOf types.str;
          default = [ name ];
          description = "The names (and addresses) the key is for.";
        };
        publicKey = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "The host key (\"type base64\").";
        };
      };
    }));
    default = { };
    description = "Host keys SSH clients on the machine trust.";
  };
  config.environment.etc = lib.mkIf (known != { }) {
    "ssh/ssh_known_hosts".text = lib.concatMapStrings
      (h: "${lib.concatStringsSep "," h.hostNames} ${toString h.publicKey}\n")
      (builtins.attrValues known);
  };
}
