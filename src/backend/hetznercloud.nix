# targetEnv "hetznercloud": a Hetzner Cloud server that the Hetzner Cloud
# plugin (nixops-hetznercloud) made. Its deployment.hetznerCloud.* options
# with the plugin's names, types and defaults, what its module sets on such
# a machine, and its resource types.
{
  module = { config, lib, name, uuid, ... }:
    let
      inherit (lib) mkOption types;
      cfg = config.deployment.hetznerCloud;
      resource = type: lib.mkOptionType {
        name = "resource of type ‘${type}’";
        check = x: (x._type or "") == type;
        merge = lib.mergeOneOption;
      };
      volume = {
        options = {
          volume = mkOption {
            default = "";
            type = types.either types.str (resource "hetznercloud-volume");
            apply = x: if builtins.isString x then x else "nixops-${uuid}-${x._name}";
            description = "A hetznerCloudVolumes resource, or the name of a volume made elsewhere.";
          };
          mountPoint = mkOption { default = null; type = types.nullOr types.str; description = "Where the volume is mounted."; };
          size = mkOption { default = 10; type = types.nullOr types.int; description = "The volume's size in GB."; };
          fsType = mkOption { default = "ext4"; type = types.nullOr (types.enum [ "ext4" "xfs" ]); description = "The volume's file system."; };
        };
      };
      serverNetwork = {
        options = {
          network = mkOption {
            type = resource "hetznercloud-network";
            apply = x: "nixops-${uuid}-${x._name}";
            description = "A hetznerCloudNetworks resource the server is attached to.";
          };
          privateIpAddress = mkOption { type = types.str; description = "The server's address in that network."; };
          aliasIpAddresses = mkOption { default = [ ]; type = types.listOf types.str; description = "Its further addresses in that network."; };
        };
      };
      fileSystem = { config, ... }: {
        options.hetznerCloud = mkOption {
          default = null;
          type = types.nullOr (types.submodule volume);
          description = "A Hetzner Cloud volume to mount here (an entry of deployment.hetznerCloud.volumes).";
        };
        config = lib.mkAssert (config.hetznerCloud != null || (config.device or null) == null)
          "fileSystems.<name>.device cannot be set on a file system of a Hetzner Cloud volume: it is the volume's"
          { };
      };
    in
    {
      options.deployment.hetznerCloud = {
        apiToken = mkOption { default = ""; type = types.str; description = "The API token of the project (else $HCLOUD_API_TOKEN)."; };
        location = mkOption { default = null; type = types.nullOr (types.enum [ "nbg1" "fsn1" "hel1" "ash" "hil" ]); description = "The location of the server."; };
        serverName = mkOption { default = "nixops-${uuid}-${name}"; type = types.str; description = "The server's name in the project."; };
        serverType = mkOption { default = "cx11"; type = types.str; description = "The server type."; };
        volumes = mkOption { default = [ ]; type = types.listOf (types.submodule volume); description = "The volumes attached to the server."; };
        serverNetworks = mkOption { default = [ ]; type = types.listOf (types.submodule serverNetwork); description = "The networks the server is attached to."; };
        ipAddresses = mkOption {
          default = [ ];
          type = types.listOf (types.either types.str (resource "hetznercloud-floating-ip"));
          apply = map (x: if builtins.isString x then x else "nixops-${uuid}-${x._name}");
          description = "hetznerCloudFloatingIPs resources (or names of floating IPs made elsewhere) bound to the server.";
        };
        labels = mkOption { default = { }; type = types.attrsOf types.str; description = "The server's labels."; };
      };
      options.fileSystems = mkOption { type = types.attrsOf (types.submodule fileSystem); };

      config = lib.mkIf (config.deployment.targetEnv == "hetznercloud") {
        assertions = [{
          assertion = builtins.length cfg.serverNetworks <= 3;
          message = "a Hetzner Cloud server is attached to three networks at most";
        }];
        nixpkgs.system = lib.mkOverride 900 "x86_64-linux";
        services.openssh.enable = true;
        deployment.hetznerCloud.volumes = map
          (fs: {
            inherit (fs) mountPoint;
            inherit (fs.hetznerCloud) volume size;
            fsType = if (fs.fsType or "auto") != "auto" then fs.fsType else fs.hetznerCloud.fsType;
          })
          (builtins.filter (fs: fs.hetznerCloud != null) (builtins.attrValues config.fileSystems));
      };
    };

  # Its options are deployment.hetznerCloud.*, not deployment.hetznercloud.*.
  optionsAttr = "hetznerCloud";
  info = [ "location" "serverType" ];

  resources =
    let
      typed = type: { lib, ... }: {
        freeformType = lib.types.lazyAttrsOf lib.types.anything;
        config._type = type;
      };
    in
    {
      hetznerCloudCertificates = { kind = "hetznercloud-certificate"; module = typed "hetznercloud-certificate"; };
      hetznerCloudFloatingIPs = { kind = "hetznercloud-floating-ip"; module = typed "hetznercloud-floating-ip"; };
      hetznerCloudLoadBalancers = { kind = "hetznercloud-load-balancer"; module = typed "hetznercloud-load-balancer"; };
      hetznerCloudNetworks = { kind = "hetznercloud-network"; module = typed "hetznercloud-network"; };
      hetznerCloudVolumes = { kind = "hetznercloud-volume"; module = typed "hetznercloud-volume"; };
    };
}
