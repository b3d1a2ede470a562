# NixOps' non-machine resources (`resources.<type>.<name>`) as modules, with
# NixOps' option names, types and defaults (its nix/resource.nix,
# nix/ssh-keypair.nix and nix/command-output.nix). eval-machine-info.nix
# evaluates each resource with `common`, its type's module (or `unchecked`)
# and its definitions. Uses only nixpkgs' lib.
{
  # Every resource.
  common = { lib, name, ... }: {
    options = {
      # The resource's name, for the modules that refer to it.
      _name = lib.mkOption { default = name; visible = false; description = "Name of the resource."; };
      # For NixOps' dynamic type checks.
      _type = lib.mkOption { default = "unknown"; visible = false; description = "Type of the resource."; };
      deployment.name = lib.mkOption { type = lib.types.str; description = "The name of the NixOps deployment. This is set by NixOps."; };
      deployment.uuid = lib.mkOption { type = lib.types.str; description = "The UUID of the NixOps deployment. This is set by NixOps."; };
      deployment.arguments = lib.mkOption { description = "Attribute set representing the NixOps arguments. This is set by NixOps."; };
    };
  };

  types = {
    # An SSH key pair the tool generates (ed25519) and keeps in state; both
    # halves are what state holds, fed back by the tool.
    sshKeyPairs = { lib, ... }: {
      options = {
        publicKey = lib.mkOption { default = ""; type = lib.types.str; description = "The generated public SSH key."; };
        privateKey = lib.mkOption { default = ""; type = lib.types.str; description = "The generated private key."; };
      };
    };

    # A script run on the deploying machine; its stdout, kept in state, is
    # `value`.
    commandOutput = { lib, name, ... }: {
      options = {
        name = lib.mkOption { default = name; type = lib.types.str; description = "Name of the Command Output."; };
        script = lib.mkOption {
          default = null;
          type = lib.types.nullOr lib.types.str;
          description = "Text of a script which will produce a JSON value. Environment variables: $out is a temp directory available for use.";
        };
        value = lib.mkOption { default = null; type = lib.types.nullOr lib.types.str; description = "Result of running script."; };
      };
      config._type = "commandOutput";
    };
  };

  # The types of NixOps' plugins (ec2KeyPairs, ebsVolumes, ...): their
  # options are theirs, not declared here, so what a network defines is
  # kept as it is.
  unchecked = { lib, ... }: {
    freeformType = lib.types.lazyAttrsOf lib.types.anything;
  };
}
