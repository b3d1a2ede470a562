{ config, lib, ... }:
let
  inherit (lib) mkOption types;

  userOpts = { name, config, ... }: {
    options = {
      name = mkOption {
        type = types.str;
        default = name;
        description = "The name of the user account.";
      };
      description = mkOption {
        type = types.str;
        default = "";
        description = "A short description of the user account.";
      };
      isNormalUser = mkOption {
        type = types.bool;
        default = false;
        description = "Whether this is a real user.";
      };
      isSystemUser = mkOption {
        type = types.bool;
        default = false;
        description = "Whether this is a system user.";
      };
      uid = mkOption {
        type = types.nullOr types.int;
        default = null;
        description = "The account UID.";
      };
      group = mkOption {
        type = types.str;
        default = "";
        description = "The user's primary group.";
      };
      extraGroups = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "The user's auxiliary groups.";
      };
      home = mkOption {
        type = types.str;
        default = if config.isNormalUser then "/home/${name}" else "/var/empty";
        description = "The user's home directory.";
      };
      createHome = mkOption {
        type = types.bool;
        default = false;
        description = "Whether to create the home directory.";
      };
      hashedPassword = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Hashed password.";
      };
      openssh.authorizedKeys = {
        keys = mkOption {
          type = types.listOf types.singleLineStr;
          default = [ ];
          description = "Public SSH keys allowed to log in as this user.";
        };
        keyFiles = mkOption {
          type = types.listOf types.path;
          default = [ ];
          description = "Files containing public SSH keys.";
        };
      };
    };
  };

  groupOpts = { name, ... }: {
    options = {
      name = mkOption {
        type = types.str;
        default = name;
        description = "The name of the group.";
      };
      gid = mkOption {
        type = types.nullOr types.int;
        default = null;
        description = "The group GID.";
      };
      members = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "The user names of the group members.";
      };
    };
  };
in
{
  imports = [
    (lib.mkAliasOptionModule [ "users" "extraUsers" ] [ "users" "users" ])
    (lib.mkAliasOptionModule [ "users" "extraGroups" ] [ "users" "groups" ])
  ];

  # An older NixOS name (of users.users.root.initialHashedPassword).
  options.security.initialRootPassword = mkOption {
    type = types.nullOr types.str;
    default = null;
    description = "Root's initial hashed password.";
  };
  options.users = {
    users = mkOption {
      type = types.attrsOf (types.submodule userOpts);
      default = { };
      description = "Additional user accounts.";
    };
    groups = mkOption {
      type = types.attrsOf (types.submodule groupOpts);
      default = { };
      description = "Additional groups.";
    };
    mutableUsers = mkOption {
      type = types.bool;
      default = true;
      description = "Whether users can be changed outside the configuration.";
    };
  };

  # As NixOS' openssh module: each user's authorized keys, those of keyFiles
  # read at evaluation, in /etc/ssh/authorized_keys.d.
  config.environment.etc = lib.mapAttrs' (name: u:
    lib.nameValuePair "ssh/authorized_keys.d/${name}" {
      text = lib.concatStringsSep "\n" (u.openssh.authorizedKeys.keys
        ++ map (f: lib.removeSuffix "\n" (builtins.readFile f)) u.openssh.authorizedKeys.keyFiles) + "\n";
    }) (lib.filterAttrs (_: u: u.openssh.authorizedKeys.keys != [ ] || u.openssh.authorizedKeys.keyFiles != [ ])
      config.users.users);

  # As NixOS' `users` snippet (update-users-groups.pl), for what the
  # stand-in knows: each declared group, then user, that /etc/group or
  # /etc/passwd lacks is appended, with its declared id or else a free one
  # (system ones from 999 down, normal users from 1000 up). Nothing is
  # changed or removed; files are only appended to (a test host's are
  # bind mounts).
  config.system.activationScripts.users = {
    supportsDryActivation = true;
    text =
      let
        arg = lib.escapeShellArg;
        addGroup = g: ''
          grep -q ${arg "^${g.name}:"} /etc/group ||
            echo ${arg g.name}":x:${if g.gid == null then "$(free_id /etc/group 999 -1)" else toString g.gid}:"${arg (lib.concatStringsSep "," g.members)} >> /etc/group
        '';
        addUser = u: ''
          if ! grep -q ${arg "^${u.name}:"} /etc/passwd; then
            gid=$(grep ${arg "^${u.group}:"} /etc/group | cut -d: -f3)
            echo ${arg u.name}":x:${if u.uid != null then toString u.uid else if u.isNormalUser then "$(free_id /etc/passwd 1000 1)" else "$(free_id /etc/passwd 999 -1)"}:''${gid:-65534}:"${arg "${u.description}:${u.home}:/run/current-system/sw/bin/nologin"} >> /etc/passwd
          fi
        '';
      in
      ''
        free_id() {
          i=$2
          while cut -d: -f3 "$1" | grep -qx "$i"; do i=$((i + $3)); done
          echo "$i"
        }
      ''
      + lib.concatMapStrings addGroup (builtins.attrValues config.users.groups)
      + lib.concatMapStrings addUser (builtins.attrValues config.users.users);
  };

  config.users.users.root = {
    uid = lib.mkDefault 0;
    group = lib.mkDefault "root";
    home = lib.mkDefault "/root";
  };
  config.users.groups.root.gid = lib.mkDefault 0;
  # As NixOS (ids.gids.keys): the group that may read /run/keys, which
  # NixOps' key snippet gives that directory.
  config.users.groups.keys.gid = lib.mkDefault 96;
}
